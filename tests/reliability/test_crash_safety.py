"""SIGKILL during training, then ``--resume``: no checkpoint is ever corrupt and the final weights equal an
uninterrupted run's bit for bit.

Deterministic kill points come from the plugin's fault switches (conftest.py): at the end of the
teacher-cache build (its file cut in half, as a kill mid-write leaves it) and in the middle of a checkpoint
write. The slow test kills at random times, over and over, until the run completes.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

STEPS, EVERY = 12, 2


def _run_args(train_args, data: Path, out: Path, teacher: Path, *extra: str) -> list[str]:
    # each run its own cache folder: the killed run must build (and be killed building) its own
    return train_args(data, out, "--distill", "aird", "--teacher", str(teacher), "--max-steps", str(STEPS),
                      "--set", f"checkpoint_every={EVERY}", "--set", f"teacher_cache_dir={out / 'teacher_cache'}",
                      *extra)


@pytest.fixture(scope="module")
def straight(run_cli, train_args, tiny_data, tiny_teacher, tmp_path_factory) -> Path:
    """The uninterrupted run every killed run must match."""
    out = tmp_path_factory.mktemp("straight") / "run"
    result = run_cli(_run_args(train_args, tiny_data, out, tiny_teacher))
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def assert_same_student(a: Path, b: Path) -> None:
    wa = torch.load(a / "student.pt", weights_only=True)["state_dict"]
    wb = torch.load(b / "student.pt", weights_only=True)["state_dict"]
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def _cache_dirs(out: Path) -> tuple[list[Path], list[Path]]:
    folder = out / "teacher_cache"
    entries = sorted(e for e in folder.iterdir() if e.is_dir()) if folder.is_dir() else []  # not the lock file
    return [e for e in entries if not e.name.startswith(".")], [e for e in entries if e.name.startswith(".")]


def test_kills_in_cache_build_and_checkpoint_write_then_resume(
        run_cli, train_args, tiny_data, tiny_teacher, straight, checkpoints_of, tmp_path) -> None:
    out = tmp_path / "killed"
    args = _run_args(train_args, tiny_data, out, tiny_teacher, "--resume")

    # 1. killed while the teacher cache is being finished: only a hidden, half-written build is left
    first = run_cli(args, IFLR_KILL_CACHE_RENAME="1")
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    finished, partial = _cache_dirs(out)
    assert finished == [] and len(partial) == 1
    npy = partial[0] / "embeddings.npy"
    with pytest.raises(ValueError):  # truly torn: numpy cannot map it
        np.load(npy, mmap_mode="r")

    # 2. resumed, then killed in the middle of the 3rd checkpoint write (step 6): a torn temp file
    second = run_cli(args, IFLR_TEAR_CHECKPOINT="3")
    assert second.returncode == -signal.SIGKILL, second.stderr[-2000:]
    steps, torn = checkpoints_of(out)
    assert steps == [2, 4] and len(torn) == 1 and torn[0].name.startswith(".step00000006_rank0.pt.")
    finished, partial = _cache_dirs(out)
    assert len(finished) == 1 and partial == []  # the torn build was discarded and rebuilt, never read
    rebuilt = np.load(finished[0] / "embeddings.npy")
    reference = np.load(_cache_dirs(straight)[0][0] / "embeddings.npy")
    assert np.array_equal(rebuilt, reference)

    # 3. resumed to the end: same weights as the uninterrupted run, and no torn file left behind
    third = run_cli(args)
    assert third.returncode == 0, third.stderr[-3000:]
    steps, torn = checkpoints_of(out)
    assert steps == [STEPS - EVERY, STEPS] and torn == []
    assert_same_student(straight, out)


@pytest.mark.slow
def test_random_sigkills_until_done(start_cli, train_args, tiny_data, tiny_teacher, checkpoints_of,
                                    run_cli, tmp_path) -> None:
    """Launch, kill at a random moment of the run (start-up, cache build, steps, checkpoint writes: a
    checkpoint every step), resume, repeat; every state on disk loads and the end result matches."""
    extra = ("--max-steps", "150", "--set", "checkpoint_every=1")
    reference = tmp_path / "reference"
    started = time.monotonic()
    assert run_cli(_run_args(train_args, tiny_data, reference, tiny_teacher, *extra)).returncode == 0
    duration = time.monotonic() - started
    out, rng, kills = tmp_path / "killed", random.Random(9), 0
    for _attempt in range(40):
        proc = start_cli(_run_args(train_args, tiny_data, out, tiny_teacher, *extra, "--resume"))
        time.sleep(rng.uniform(0.5, duration))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        checkpoints_of(out)  # raises if any checkpoint under its name is corrupt
        if (out / "student.pt").exists():
            break
    assert (out / "student.pt").exists(), f"not finished after {kills} kills"
    assert kills >= 3
    assert_same_student(reference, out)
