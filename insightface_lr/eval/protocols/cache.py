"""A resumable, atomic on-disk cache of one face set's embeddings for one (model, protocol, size, FaceBN) cell.

Layout: ``<root>/<protocol>/<model>-<model digest>/<set>-<size>-facebn_<mode>-<key digest>/`` holding
``key.json`` (everything the embeddings depend on: model file checksum, image list, preprocessing), then
``chunk_<i>.npy`` files of ``chunk`` rows each while the set is being embedded, and finally ``embeddings.npy``
(all rows, float32 [N, D]) once complete, when the chunks are removed. Every file is written through
:mod:`insightface_lr.atomic`, so a run killed at any point leaves only whole files: the next run loads them
and embeds the missing chunks only. Two different keys never share a folder (the key digest is in its name),
so no run overwrites another's embeddings. Files are read with ``np.load(allow_pickle=False)``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ...atomic import atomic_output, atomic_write_bytes
from ..plots import safe_stem


def digest(value: Any) -> str:
    """Stable hex digest of a JSON-able value (sorted keys)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


class EmbeddingCache:
    """The chunked embeddings of one face set for one cell (see the module docstring)."""

    def __init__(self, root: str | Path, protocol: str, model: str, model_digest: str, set_name: str,
                 cell: str, key: dict[str, Any], rows: int, chunk: int) -> None:
        self.rows, self.chunk = int(rows), int(chunk)
        full_key = {**key, "rows": self.rows, "chunk": self.chunk}
        self.folder = (Path(root) / safe_stem(protocol) / f"{safe_stem(model)}-{model_digest[:12]}"
                       / f"{safe_stem(set_name)}-{safe_stem(cell)}-{digest(full_key)[:16]}")
        self.key = full_key

    @property
    def final(self) -> Path:
        return self.folder / "embeddings.npy"

    def chunk_path(self, index: int) -> Path:
        return self.folder / f"chunk_{index:06d}.npy"

    @property
    def n_chunks(self) -> int:
        return -(-self.rows // self.chunk)

    def chunk_rows(self, index: int) -> int:
        return min(self.chunk, self.rows - index * self.chunk)

    def load_final(self) -> np.ndarray | None:
        """The complete embeddings, or None when the set is not (or not validly) embedded yet."""
        return self._load(self.final, self.rows)

    def done_chunks(self) -> dict[int, np.ndarray]:
        """The chunks already written (a file of the wrong shape is ignored and recomputed)."""
        out = {}
        for index in range(self.n_chunks):
            array = self._load(self.chunk_path(index), self.chunk_rows(index))
            if array is not None:
                out[index] = array
        return out

    def write_chunk(self, index: int, array: np.ndarray) -> None:
        self._prepare()
        _save(self.chunk_path(index), array)

    def finish(self, array: np.ndarray) -> np.ndarray:
        """Write the whole set atomically, then drop the chunks it replaces."""
        self._prepare()
        _save(self.final, array)
        for index in range(self.n_chunks):
            self.chunk_path(index).unlink(missing_ok=True)
        return array

    def clear_chunks(self) -> None:
        for index in range(self.n_chunks):
            self.chunk_path(index).unlink(missing_ok=True)

    def _prepare(self) -> None:
        key_file = self.folder / "key.json"
        if not key_file.is_file():
            atomic_write_bytes(key_file, json.dumps(self.key, indent=1, sort_keys=True, default=str).encode())

    @staticmethod
    def _load(path: Path, rows: int) -> np.ndarray | None:
        if not path.is_file():
            return None
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError):
            return None
        return array if array.ndim == 2 and array.shape[0] == rows and array.dtype == np.float32 else None


def _save(path: Path, array: np.ndarray) -> None:
    with atomic_output(path, "wb") as handle:
        np.save(handle, np.ascontiguousarray(array, dtype=np.float32))
