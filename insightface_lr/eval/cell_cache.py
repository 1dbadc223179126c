"""Finished evaluation cells kept on disk, so an interrupted ``eval`` re-run continues instead of starting over.

A cell (one model, set, probe size and FaceBN mode) can take minutes on a large set; each one is written, as
it finishes, to ``folder/<key>.json`` (atomically: a kill leaves the previous state or the whole cell). The
key is a hash of everything the numbers depend on: the model's weights checksum, the faces and labels as
decoded, the cell's settings, the device and torch thread count (float reduction order) and the package and
torch versions. A re-run with the same inputs finds the cell; any change misses it and recomputes. The
folder only lives while a command is unfinished: :meth:`CellCache.clear` removes it once the reports are
written, so a finished run never feeds stale numbers to a later one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_write_bytes


def array_digest(*arrays: np.ndarray) -> str:
    """sha256 of the arrays' dtypes, shapes and bytes (the faces a cell sees, independent of the file)."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def cell_key(kind: str, model: Any, faces: str | None, config: Any) -> dict[str, Any] | None:
    """What every cell of ``model`` (an :class:`~insightface_lr.eval.model_loading.EvalModel`) on one face set
    depends on besides its size and FaceBN mode: the weights checksum, the faces' digest and the settings of
    the dataclass ``config``. None when the model has no checksum or no faces digest: such cells are not kept."""
    checksum = getattr(model.fn, "checksum", None)
    if faces is None or checksum is None:
        return None
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("sizes", "facebn_modes")}
    return {"kind": kind, "model": checksum, "faces": faces, "settings": settings}


class CellCache:
    """``get(fields)`` / ``put(fields, record)`` of finished cells under ``folder``; ``hits`` counts reuses."""

    def __init__(self, folder: str | Path, device: str | torch.device = "cpu") -> None:
        from .. import __version__

        self.folder = Path(folder)
        self.hits = 0
        self._context = {"insightface_lr": __version__, "torch": torch.__version__, "device": str(device),
                         "threads": torch.get_num_threads()}

    def _path(self, fields: Mapping[str, Any]) -> Path:
        text = json.dumps({**self._context, **fields}, sort_keys=True, default=str)
        return self.folder / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.json"

    def get(self, fields: Mapping[str, Any]) -> dict[str, Any] | None:
        """The record stored for ``fields``, or None (never stored, or unreadable: then it is recomputed)."""
        try:
            record = json.loads(self._path(fields).read_text())
        except (OSError, ValueError):
            return None
        self.hits += 1
        return record

    def put(self, fields: Mapping[str, Any], record: Mapping[str, Any]) -> None:
        atomic_write_bytes(self._path(fields), json.dumps(record, allow_nan=False).encode())

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
