"""Teacher embeddings of the HR training set, computed once and memory-mapped.

The frozen teacher sees the same HR face every epoch, so its forward pass is pure waste after the first
one. We compute ``[N, 2, D]`` embeddings (original and horizontally flipped face, the two HR views the
trainer can draw) once, store them as a ``.npy`` file opened with ``mmap_mode="r"``, and key the cache by
the teacher checksum and a checksum of the data, so a new teacher or a changed ``.rec`` rebuilds it.

Crash safety: the cache is built in a temporary directory and renamed into place only when complete, so a
kill during the build leaves no cache (the next run rebuilds it), never a half-written one that is read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data.pixels import normalize_uint8

CACHE_FORMAT = 1


def file_fingerprint(path: str | Path, sample_bytes: int = 1 << 20) -> str:
    """Cheap content fingerprint of a (possibly huge) file: size + first and last MiB."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(sample_bytes))
        if size > sample_bytes:
            handle.seek(max(sample_bytes, size - sample_bytes))
            digest.update(handle.read(sample_bytes))
    return digest.hexdigest()


def cache_key(teacher_checksum: str, data_checksum: str, input_size: int) -> str:
    text = f"v{CACHE_FORMAT}|{teacher_checksum}|{data_checksum}|{input_size}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class TeacherCache:
    """Read side: ``lookup(indices, flipped) -> [B, D]`` float32 tensor from the memory map."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        meta = json.loads((directory / "meta.json").read_text())
        self.meta = meta
        self.embeddings = np.load(directory / "embeddings.npy", mmap_mode="r")

    def lookup(self, indices: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
        rows = self.embeddings[indices.numpy(), flipped.long().numpy()]
        return torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))

    def __len__(self) -> int:
        return self.embeddings.shape[0]


def open_or_build_cache(
    root: str | Path,
    key: str,
    dataset: Dataset,
    teacher: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 256,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> TeacherCache:
    """The cache for ``key`` under ``root``; built (atomically) if missing or stale."""
    root = Path(root)
    final = root / key
    if (final / "meta.json").is_file():
        return TeacherCache(final)
    _remove_stale(root, keep=key)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        count = _compute(tmp / "embeddings.npy", dataset, teacher, batch_size, num_workers, device, progress)
        (tmp / "meta.json").write_text(json.dumps({"key": key, "format": CACHE_FORMAT, "num_images": count}))
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return TeacherCache(final)


def _remove_stale(root: Path, keep: str) -> None:
    """Older caches (other teacher or data) and half-built ones left by a killed run."""
    if not root.is_dir():
        return
    for entry in root.iterdir():
        if entry.is_dir() and entry.name != keep:
            shutil.rmtree(entry, ignore_errors=True)


@torch.no_grad()
def _compute(path, dataset, teacher, batch_size, num_workers, device, progress) -> int:
    from tqdm import tqdm

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    store = None
    offset = 0
    for images, _labels in tqdm(loader, desc="teacher cache", disable=not progress, unit="batch"):
        x = normalize_uint8(images.to(device))
        both = teacher(torch.cat([x, x.flip(-1)])).float().cpu().numpy()
        n = x.shape[0]
        if store is None:
            store = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                              shape=(len(dataset), 2, both.shape[1]))
        store[offset:offset + n, 0] = both[:n]
        store[offset:offset + n, 1] = both[n:]
        offset += n
    if store is None:
        raise ValueError("teacher cache: the dataset is empty")
    store.flush()
    del store
    return offset
