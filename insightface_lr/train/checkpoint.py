"""Checkpoints: atomic files, and the run's folder of them (naming, rotation, torn-file cleanup).

Nothing half-written is ever left under a checkpoint's name: a checkpoint is written to a temporary file in
the same directory, flushed and fsync'ed, then renamed over the final name (``os.replace`` is atomic on
POSIX), and the directory is fsync'ed so the rename survives a power cut. A SIGKILL at any point leaves
either the previous checkpoint or the new one. Loading always uses ``torch.load(weights_only=True)``: a
checkpoint is data, never code.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_bytes
from ..errors import ConfigError, ModelLoadError
from .distributed import DistContext, barrier

CHECKPOINT_NAME = re.compile(r"step(\d+)_rank(\d+)\.pt$")
KEEP_STEPS = 2  # complete steps kept on disk: the newest, and one more in case the newest is unreadable


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` ``state`` to ``path`` atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt zip, pickle with forbidden globals, ...
        raise ModelLoadError(f"checkpoint {path} cannot be loaded safely: {exc}") from exc
    if not isinstance(state, dict):
        raise ModelLoadError(f"checkpoint {path}: expected a dict, got {type(state).__name__}")
    return state


class CheckpointFolder:
    """``<output>/checkpoints/step{step:08d}_rank{rank}.pt``: one file per rank and saved step.

    A step is *complete* when every rank of the run wrote its file; only complete steps are resumed from
    and counted when old steps are deleted.
    """

    def __init__(self, root: Path, ctx: DistContext) -> None:
        self.root, self.ctx = Path(root), ctx
        self.rank, self.world_size = ctx.rank, ctx.world_size

    def path(self, step: int, rank: int | None = None) -> Path:
        return self.root / f"step{step:08d}_rank{self.rank if rank is None else rank}.pt"

    def save(self, step: int, state: dict[str, Any]) -> None:
        """This rank's file for ``step``; then, once every rank has written its own, rank 0 rotates."""
        save_checkpoint(self.path(step), state)
        barrier(self.ctx)
        if self.ctx.is_main:
            self.rotate(step)

    def load_latest(self, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
        """This rank's state of the newest complete step (None: nothing saved yet); refuses a checkpoint
        written by another number of processes (its shards and sampler positions would not fit)."""
        path = self.latest()
        if path is None:
            return None
        state = load_checkpoint(path, map_location=map_location)
        if state["world_size"] != self.world_size:
            raise ConfigError(f"--resume: checkpoint was written by {state['world_size']} processes, "
                              f"this run has {self.world_size}")
        return state

    def rotate(self, newest: int) -> None:
        """Delete all but the :data:`KEEP_STEPS` newest complete steps up to ``newest`` (every rank's file of
        each); a later step is never this run's past, so it is never deleted (the folder check in
        :mod:`~insightface_lr.train.run_record` keeps other runs out of the folder in the first place)."""
        for step in sorted(s for s in self.complete_steps() if s <= newest)[:-KEEP_STEPS]:
            for rank in range(self.world_size):
                self.path(step, rank).unlink(missing_ok=True)

    def complete_steps(self) -> set[int]:
        found: dict[int, set[int]] = {}
        for path in self.root.glob("step*_rank*.pt"):
            match = CHECKPOINT_NAME.search(path.name)
            if match:
                found.setdefault(int(match[1]), set()).add(int(match[2]))
        return {s for s, ranks in found.items() if ranks >= set(range(self.world_size))}

    def latest(self) -> Path | None:
        """This rank's file of the newest complete step, or None when nothing complete was saved."""
        steps = self.complete_steps()
        return self.path(max(steps)) if steps else None

    def remove_torn(self) -> None:
        """Delete this rank's temp files left by a process killed inside ``save_checkpoint``: they are
        never read (not under a checkpoint name) but each is a full-size checkpoint's worth of disk."""
        for path in self.root.glob(f".step*_rank{self.rank}.pt.*.tmp"):
            path.unlink(missing_ok=True)
