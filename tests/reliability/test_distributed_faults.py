"""A rank that dies under ``torchrun`` stops the whole job with an error naming it, within a timeout (no
hang in a collective), and the job restarted with ``--resume`` finishes from the last complete checkpoint."""

from __future__ import annotations

import socket
import time

import pytest
import torch

from insightface_lr.train.checkpoint import load_checkpoint

STEPS, EVERY, DIE_AT = 8, 2, 3
JOB_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun() -> tuple[str, ...]:
    return ("-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
            "-m", "insightface_lr.train")


@pytest.mark.slow
def test_dead_rank_stops_job_then_resume_finishes(run_cli, train_args, tiny_data, tiny_teacher, tmp_path) -> None:
    out = tmp_path / "ddp"
    args = train_args(tiny_data, out, "--distill", "feat", "--teacher", str(tiny_teacher), "--batch-size", "4",
                      "--max-steps", str(STEPS), "--set", f"checkpoint_every={EVERY}", "--resume")[1:]
    started = time.monotonic()
    # rank 1's student forward of step 3 calls os._exit(1); rank 0 is then inside (or next enters) a collective
    dead = run_cli(args, module=_torchrun(), timeout=JOB_TIMEOUT_S + 60, IFLR_DIE_AT_STEP=str(DIE_AT),
                   IFLR_DIE_RANK="1")
    elapsed = time.monotonic() - started
    assert dead.returncode != 0, dead.stderr[-3000:]
    assert elapsed < JOB_TIMEOUT_S, f"job took {elapsed:.0f} s to notice the dead rank"
    assert "insightface_lr.train FAILED" in dead.stderr or "ChildFailedError" in dead.stderr, dead.stderr[-3000:]
    assert "exitcode  : 1" in dead.stderr and "rank      : 1" in dead.stderr, dead.stderr[-3000:]
    assert not (out / "student.pt").exists()
    saved = sorted(p.name for p in (out / "checkpoints").glob("step*_rank*.pt"))
    assert saved == ["step00000002_rank0.pt", "step00000002_rank1.pt"], saved

    resumed = run_cli(args, module=_torchrun(), timeout=JOB_TIMEOUT_S + 60)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for rank in (0, 1):
        state = load_checkpoint(out / "checkpoints" / f"step{STEPS:08d}_rank{rank}.pt")
        assert state["step"] == STEPS and state["world_size"] == 2
    assert torch.load(out / "student.pt", weights_only=True)["meta"]["steps"] == STEPS
