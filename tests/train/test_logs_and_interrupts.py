"""Logs are always written (``--no-progress`` only drops the bar) and flushed as training goes; after a
SIGKILL, SIGINT or SIGTERM and ``--resume`` every step is in ``metrics.jsonl`` exactly once; an interrupt
is one line and exit code 130 with the checkpoints intact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers_train import run_cli, tiny_args

from insightface_lr.train.checkpoint import load_checkpoint

STEPS = 40
RUN = ("--max-steps", str(STEPS), "--set", "checkpoint_every=3", "--no-progress")


def logged_steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def start(tiny_data, plugin_dir, out: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(plugin_dir))
    return subprocess.Popen([sys.executable, "-m", "insightface_lr", *tiny_args(tiny_data, out, *RUN)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint_and_lines(proc: subprocess.Popen, out: Path, timeout: float = 120.0) -> None:
    """Until a checkpoint exists and metrics.jsonl already shows the steps after it (flushed per step)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        checkpoints = sorted((out / "checkpoints").glob("step*_rank0.pt")) if (out / "checkpoints").is_dir() else []
        if checkpoints and (out / "metrics.jsonl").is_file():
            if len((out / "metrics.jsonl").read_text().splitlines()) >= 4:
                return
        if proc.poll() is not None:
            raise AssertionError(f"trainer ended early: {proc.stderr.read()[-2000:]}")
        time.sleep(0.01)
    raise AssertionError("no checkpoint and metrics lines in time")


def test_no_progress_still_writes_every_log(tiny_data, plugin_dir, tmp_path) -> None:
    out = tmp_path / "quiet"
    result = run_cli(tiny_args(tiny_data, out, "--max-steps", "3", "--no-progress", "--set", "val_targets=['test']",
                               "--set", "verbose=2"), plugin_dir)
    assert result.returncode == 0, result.stderr
    assert logged_steps(out) == [1, 2, 3]
    log = (out / "training.log").read_text()
    assert '"lr": 0.05' in log.splitlines()[0] and '"network": "tiny_mlp_test"' in log.splitlines()[0]
    assert "step 3 lr" in log and "val/test@16px" in log
    assert any((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert "step 3 lr" in result.stdout and "val/test@16px" in result.stdout  # visible without the bar


def test_sigkill_then_resume_logs_every_step_once(tiny_data, plugin_dir, tmp_path) -> None:
    out = tmp_path / "killed"
    proc = start(tiny_data, plugin_dir, out)
    wait_for_checkpoint_and_lines(proc, out)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "student.pt").exists(), "the run finished before it could be killed"
    assert logged_steps(out), "metrics.jsonl is flushed as steps are logged"
    resumed = run_cli(tiny_args(tiny_data, out, *RUN, "--resume"), plugin_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert logged_steps(out) == list(range(1, STEPS + 1))
    assert "resumed at step" in (out / "training.log").read_text()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_is_one_line_exit_130_and_resumes_with_each_step_once(tiny_data, plugin_dir, tmp_path,
                                                                        signum) -> None:
    out = tmp_path / "interrupted"
    proc = start(tiny_data, plugin_dir, out)
    wait_for_checkpoint_and_lines(proc, out)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("insightface-lr train: interrupted; last checkpoint: step ")
    assert lines[0].endswith("; continue with --resume")
    step = int(lines[0].split("last checkpoint: step ")[1].split(" ")[0])
    assert 1 <= step < STEPS
    newest = max((out / "checkpoints").glob("step*_rank0.pt"))  # the checkpoint named is intact
    assert load_checkpoint(newest)["step"] == step
    resumed = run_cli(tiny_args(tiny_data, out, *RUN, "--resume"), plugin_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert logged_steps(out) == list(range(1, STEPS + 1))


def test_resume_without_checkpoint_says_so_then_trains(tiny_data, plugin_dir, tmp_path) -> None:
    out = tmp_path / "fresh"
    result = run_cli(tiny_args(tiny_data, out, "--max-steps", "2", "--no-progress", "--resume"), plugin_dir)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--resume: no checkpoint in" in lines[0] and "starting from step 0" in lines[0]
    assert logged_steps(out) == [1, 2]
