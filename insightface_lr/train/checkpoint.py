"""Atomic checkpoints: nothing half-written is ever left under a checkpoint's name.

A checkpoint is written to a temporary file in the same directory, flushed and fsync'ed, then renamed
over the final name (``os.replace`` is atomic on POSIX), and the directory is fsync'ed so the rename
survives a power cut. A SIGKILL at any point leaves either the previous checkpoint or the new one.
Loading always uses ``torch.load(weights_only=True)``: a checkpoint is data, never code.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_bytes
from ..errors import ModelLoadError


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
