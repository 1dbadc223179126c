"""Helpers of the interrupt tests (test_interrupts.py, test_hostile_cli.py): what a stopped command must show."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

SIGNALS = pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
STOP_WITHIN_S = 5.0  # a scheduler SIGKILLs 10-30 s after its SIGTERM


def assert_stopped(result: tuple[int, str, float], line: str) -> None:
    """``result`` of the ``interrupt_cli`` fixture: exit code 130 within :data:`STOP_WITHIN_S` of the signal,
    ``line`` as the last line of stderr, no traceback or warning (a worker's, the resource tracker's)."""
    code, err, seconds = result
    lines = err.strip().splitlines()
    assert code == 130 and "Traceback" not in err and lines[-1:] == [line], err[-2000:]
    assert not [x for x in lines[:-1] if "interrupted" in x or "Warning" in x], err[-2000:]
    assert seconds < STOP_WITHIN_S, f"exit {seconds:.1f} s after the signal"


def no_temporaries(folder: Path) -> None:
    """No unfinished atomic write (``atomic.py``'s ``.<name>.<pid>.<token>.tmp``) is left under ``folder``."""
    assert not list(folder.rglob(".*.tmp")), list(folder.rglob(".*.tmp"))


def cli_ok(argv: list[str], env: dict[str, str], python: tuple[str, ...] = ("-m", "insightface_lr")):
    """The command run to its end in a fresh process (exit code 0 asserted); the CompletedProcess."""
    result = subprocess.run([sys.executable, *python, *argv], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return result
