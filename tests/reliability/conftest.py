"""Fixtures for the reliability suite: tiny synthetic data, a BN-free plugin backbone with fault hooks, a
tiny teacher, and a helper that runs the command line in a fresh process.

The plugin follows tests/train/conftest.py (a BN-free MLP, so runs are bit-reproducible on CPU) under its
own names, so both suites can share one pytest session. Faults are switched on by environment variables
read inside the child process, so the code under test is the real trainer, not a patched copy:

- ``IFLR_DIE_AT_STEP=k`` (+ ``IFLR_DIE_RANK=r``): the student's k-th forward on rank r calls ``os._exit(1)``.
- ``IFLR_KILL_TEACHER_CALL=k``: the teacher's k-th forward (teacher-cache build) SIGKILLs the process.
- ``IFLR_KILL_CACHE_RENAME=1``: just before the finished teacher cache is renamed into place, its
  ``embeddings.npy`` is cut to half and the process SIGKILLed (a build killed mid-write, seen from disk).
- ``IFLR_TEAR_CHECKPOINT=k``: the k-th fsync of a checkpoint temp file first truncates that file to half
  its size, then SIGKILLs the process: exactly what a kill in the middle of ``write`` leaves on disk.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the helper module interrupting.py (--import-mode=importlib)

PLUGIN_MODULE = "rel_plugin_backbone"
NETWORK = "rel_tiny_mlp"

PLUGIN_SOURCE = '''
import os
import re
import signal

import torch
from insightface_lr.registry import register_backbone

_CALLS = {"student": 0, "teacher": 0, "fsync": 0}
_real_fsync = os.fsync
_real_replace = os.replace


def _kill_self():
    os.kill(os.getpid(), signal.SIGKILL)


def _tearing_fsync(fd):
    # a checkpoint temp file is ".stepNNNNNNNN_rankR.pt.XXXX.tmp"
    target = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
    if re.search(r"/\\.step\\d+_rank\\d+\\.pt\\..*\\.tmp$", target):
        _CALLS["fsync"] += 1
        if _CALLS["fsync"] == int(os.environ["IFLR_TEAR_CHECKPOINT"]):
            os.ftruncate(fd, os.fstat(fd).st_size // 2)
            _kill_self()
    return _real_fsync(fd)


def _dying_replace(src, dst, *args, **kwargs):
    src = str(src)
    if os.path.basename(os.path.dirname(src)) == "teacher_cache" and os.path.isdir(src):
        npy = os.path.join(src, "embeddings.npy")
        os.truncate(npy, os.path.getsize(npy) // 2)
        _kill_self()
    return _real_replace(src, dst, *args, **kwargs)


if os.environ.get("IFLR_TEAR_CHECKPOINT"):
    os.fsync = _tearing_fsync
if os.environ.get("IFLR_KILL_CACHE_RENAME"):
    os.replace = _dying_replace


@register_backbone("rel_tiny_mlp")
class RelTinyMLP(torch.nn.Module):
    def __init__(self, embedding_size=16, input_size=16, dropout=0.0, fp16=False):
        super().__init__()
        self.input_size, self.embedding_size = input_size, embedding_size
        self.net = torch.nn.Sequential(
            torch.nn.AvgPool2d(input_size // 8), torch.nn.Flatten(), torch.nn.Linear(3 * 64, 32),
            torch.nn.PReLU(), torch.nn.Linear(32, embedding_size),
        )

    def forward(self, x):
        role = "teacher" if self.input_size == 112 else "student"
        _CALLS[role] += 1
        if role == "student" and _CALLS[role] == int(os.environ.get("IFLR_DIE_AT_STEP", "0")) \\
                and os.environ.get("RANK", "0") == os.environ.get("IFLR_DIE_RANK", "1"):
            os._exit(1)
        if role == "teacher" and _CALLS[role] == int(os.environ.get("IFLR_KILL_TEACHER_CALL", "0")):
            _kill_self()
        return self.net(x)
'''


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rel_plugin")
    (root / f"{PLUGIN_MODULE}.py").write_text(PLUGIN_SOURCE)
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """6 identities x 6 images (.rec/.idx/property) and a 20-pair test.bin."""
    from insightface_lr.data.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("rel_data")
    write_synthetic_dataset(root, train_ids=6, test_ids=4, images_per_identity=6, pairs=20, seed=3)
    return root


def _save_teacher(plugin_dir: Path, path: Path, embedding_size: int) -> Path:
    sys.path.insert(0, str(plugin_dir))
    try:
        import importlib

        import torch

        importlib.import_module(PLUGIN_MODULE)  # registers rel_tiny_mlp (once per session)
        from insightface_lr.models.teacher import save_student
        from insightface_lr.registry import BACKBONES

        torch.manual_seed(5)
        model = BACKBONES.build(NETWORK, embedding_size=embedding_size, input_size=112)
        return save_student(path, model, network=NETWORK)
    finally:
        sys.path.remove(str(plugin_dir))


@pytest.fixture(scope="session")
def tiny_teacher(plugin_dir, tmp_path_factory) -> Path:
    """A random frozen 112-px, 16-d teacher in our student format."""
    return _save_teacher(plugin_dir, tmp_path_factory.mktemp("rel_teacher") / "teacher.pt", 16)


@pytest.fixture(scope="session")
def wide_teacher(plugin_dir, tmp_path_factory) -> Path:
    """A 32-d teacher for a 16-d student: the distiller must adapt the width."""
    return _save_teacher(plugin_dir, tmp_path_factory.mktemp("rel_teacher32") / "teacher32.pt", 32)


def tiny_args(data: Path, output: Path, *extra: str) -> list[str]:
    """``train`` flags of a 16-px, 16-d student on the tiny set (a few ms per step)."""
    return [
        "train", "--rec", str(data), "--output", str(output), "--network", NETWORK,
        "--student-input-size", "16", "--lr-size", "16", "--batch-size", "8", "--lr", "0.05",
        "--set", "embedding_size=16", "--set", "num_workers=0", "--set", f"plugins=['{PLUGIN_MODULE}']",
        "--set", "frequent=1", "--set", "verbose=0", "--set", "margin_list=(1.0, 0.3, 0.0)", "--no-progress",
        *extra,
    ]


@pytest.fixture(scope="session")
def train_args() -> Callable[..., list[str]]:
    return tiny_args


def child_env(plugin_dir: Path, **faults: str) -> dict[str, str]:
    """Single-threaded (bit-reproducible) environment that can import the plugin, plus fault switches."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IFLR_")}
    return dict(env, OMP_NUM_THREADS="1", PYTHONPATH=str(plugin_dir), **faults)


@pytest.fixture(scope="session")
def run_cli(plugin_dir) -> Callable[..., subprocess.CompletedProcess]:
    """``run_cli(args, module=("-m", "insightface_lr"), timeout=..., **faults)`` in a fresh process."""

    def run(args: list[str], module: tuple[str, ...] = ("-m", "insightface_lr"), timeout: float = 240,
            **faults: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *module, *args], env=child_env(plugin_dir, **faults),
                              capture_output=True, text=True, timeout=timeout)

    return run


@pytest.fixture(scope="session")
def start_cli(plugin_dir) -> Callable[..., subprocess.Popen]:
    """``start_cli(args, **faults)``: the command line started in the background (for kill tests)."""

    def start(args: list[str], module: tuple[str, ...] = ("-m", "insightface_lr"), **faults: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, *module, *args], env=child_env(plugin_dir, **faults),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    return start


def checkpoint_report(output: Path) -> tuple[list[int], list[Path]]:
    """``(steps of the checkpoints that load, torn temp files)`` under ``output/checkpoints``; raises
    AssertionError if a file under a checkpoint name does not load (weights_only=True)."""
    from insightface_lr.train.checkpoint import load_checkpoint

    folder = output / "checkpoints"
    steps, torn = [], []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.name.startswith("."):
            torn.append(path)
            continue
        state = load_checkpoint(path)  # ModelLoadError would mean a corrupt checkpoint under its name
        assert path.name == f"step{state['step']:08d}_rank0.pt", path
        steps.append(int(state["step"]))
    return steps, torn


@pytest.fixture(scope="session")
def checkpoints_of() -> Callable[[Path], tuple[list[int], list[Path]]]:
    return checkpoint_report


@pytest.fixture(scope="session")
def cli_env(plugin_dir) -> dict[str, str]:
    """:func:`child_env` without faults, for tests that start the console script themselves."""
    return child_env(plugin_dir)


@pytest.fixture(scope="session")
def student16(tmp_path_factory) -> Path:
    """A built-in 16-px student (eval and export need no plugin for it)."""
    import torch

    from insightface_lr.models.teacher import save_student
    from insightface_lr.registry import BACKBONES

    torch.manual_seed(0)
    model = BACKBONES.build("bridge_student", embedding_size=16, input_size=16)
    return save_student(tmp_path_factory.mktemp("hostile_student") / "s16.pt", model.eval(), network="bridge_student")


@pytest.fixture(scope="session")
def pause_dir(tmp_path_factory) -> Path:
    """A folder whose ``sitecustomize.py`` is :mod:`stage_pause` (every child process started with it on
    PYTHONPATH, the demo's spawned workers too, can be held inside a stage; see that module)."""
    root = tmp_path_factory.mktemp("stage_pause")
    (root / "sitecustomize.py").write_text((Path(__file__).parent / "stage_pause.py").read_text())
    return root


def _runner_dispositions() -> None:
    """In the child before exec: SIGINT ignored, as a process started with `&` by a non-interactive shell
    inherits it (how a CI runner may start the suite); the command must stop on SIGINT all the same."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.fixture(scope="session")
def interrupt_cli(plugin_dir, pause_dir) -> Callable[..., tuple[int, str, float]]:
    """``interrupt_cli(argv, pause, sig, marker, python=(...))`` -> ``(exit code, stderr, seconds from the signal
    to the exit)``: the command started with SIGINT ignored (whatever this runner's dispositions are), held by
    ``pause`` (``IFLR_PAUSE``, :mod:`stage_pause`) inside a stage, signalled there, then let go."""
    import time

    def run(argv: list[str], pause: str, sig: int, marker: Path, python: tuple[str, ...] = ("-m", "insightface_lr"),
            timeout: float = 240) -> tuple[int, str, float]:
        env = dict(child_env(plugin_dir), PYTHONPATH=f"{plugin_dir}{os.pathsep}{pause_dir}", IFLR_PAUSE=pause,
                   IFLR_PAUSE_FILE=str(marker))
        process = subprocess.Popen([sys.executable, *python, *argv], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True, preexec_fn=_runner_dispositions)
        deadline = time.monotonic() + timeout
        while not marker.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"never reached the pause {pause}: {process.communicate()[1][-2000:]}")
            time.sleep(0.02)
        process.send_signal(sig)
        sent = time.monotonic()
        marker.unlink()  # let the held call go on: a command that stops after its current step can do so
        _, err = process.communicate(timeout=120)
        return process.returncode, err, time.monotonic() - sent

    return run
