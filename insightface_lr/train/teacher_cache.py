"""Teacher embeddings of the HR training set, computed once into a shared folder and memory-mapped.

The frozen teacher sees the same HR face every epoch, so its forward pass is pure waste after the first
one. We compute ``[N, 2, D]`` embeddings (original and horizontally flipped face, the two HR views the
trainer can draw) once and store them as a ``.npy`` file that every run opens with ``mmap_mode="r"``.

Storage is float16 by default: half the bytes of float32 (MS1MV3 at 512-d: ~10.8 GB instead of ~21.6 GB).
Rounding to float16 changes each value by at most 2^-11 of itself, so the cosine between a stored and an
exact embedding stays above 1 - 1e-6 (measured: ``benchmarks/teacher_cache.py`` and the tests); a run whose
teacher emits values beyond float16's range (65504) is stored as float32 instead, never as ``inf``.

One shared folder (``teacher_cache_dir``) holds one sub-folder per key: (teacher checksum, data fingerprint, input
size, storage dtype, and the teacher's view when it is not the HR face: :mod:`.teacher_view`), so runs of every
method on the same teacher and data read the same cache, and caches of other teachers or data sit side by side
(never deleted by another run). Builders of one key take a lock file (the second one waits, then reuses the
cache), build in a hidden temporary folder and rename it into place when complete, so a kill mid-build leaves no
cache that is read (the next builder removes the leftover and rebuilds).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..data.pixels import normalize_uint8
from ..errors import ConfigError
from ..file_lock import exclusive_lock

CACHE_FORMAT = 1
STORAGE_DTYPES = ("float16", "float32")
FLOAT16_MAX = float(np.finfo(np.float16).max)
PairViews = Callable[[Tensor, Tensor], Tensor]  # (uint8 faces [B,...], dataset indices [B]) -> inputs [2B,...]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/insightface_lr/teacher_cache`` (``~/.cache/...`` without XDG_CACHE_HOME)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "insightface_lr" / "teacher_cache"


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


def cache_key(teacher_checksum: str, data_checksum: str, input_size: int, dtype: str = "float16",
              view: str = "") -> str:
    """``view``: :meth:`~.teacher_view.TeacherView.key_text` ("" for the HR view: the key caches had before)."""
    text = f"v{CACHE_FORMAT}|{teacher_checksum}|{data_checksum}|{input_size}"
    if dtype != "float32":  # float32 keeps the key of the first (float32-only) caches: those are read as they are
        text += f"|{dtype}"
    if view:
        text += f"|{view}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class TeacherCache:
    """Read side: ``lookup(indices, flipped) -> [B, D]`` float32 tensor from the read-only memory map
    (float16 or float32 storage)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.meta = json.loads((directory / "meta.json").read_text())
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
    dtype: str = "float16",
    views: PairViews | None = None,
) -> TeacherCache:
    """The cache for ``key`` under the shared folder ``root``; built (once, atomically, under a lock) if
    missing. Other keys in ``root`` are left alone. ``views(images, indices) -> [2B, ...]``: the teacher's
    inputs of a batch of uint8 faces, originals then mirrors (default: the normalised HR faces)."""
    root = Path(root)
    final = root / key
    if not _complete(final):
        root.mkdir(parents=True, exist_ok=True)
        waiting = f"teacher cache: waiting for another run that is building {final}"
        with exclusive_lock(root / f".{key}.lock", on_wait=lambda: _say(waiting)):
            if not _complete(final):  # a builder we waited for has made it: reuse
                _remove_leftovers(root, key)
                options = (batch_size, num_workers, device, progress, views or hr_pair)
                _build(root, key, dataset, teacher, options, dtype)
    return TeacherCache(final)


def _complete(directory: Path) -> bool:
    return (directory / "meta.json").is_file()


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _remove_leftovers(root: Path, key: str) -> None:
    """Half-built folders of this key left by a killed builder (we hold its lock: nobody is writing them)."""
    for entry in root.glob(f".{key}.*"):
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)


def _build(root: Path, key: str, dataset: Dataset, teacher, options: tuple, dtype: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        try:
            count, stored = _compute(tmp / "embeddings.npy", dataset, teacher, *options, dtype), dtype
        except _Float16Overflow:
            _say("teacher cache: the teacher's values exceed float16's range; storing float32 instead")
            count, stored = _compute(tmp / "embeddings.npy", dataset, teacher, *options, "float32"), "float32"
        meta = {"key": key, "format": CACHE_FORMAT, "num_images": count, "dtype": stored}
        (tmp / "meta.json").write_text(json.dumps(meta))
        os.replace(tmp, root / key)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for name in ("embeddings.npy", "meta.json"):  # runs map it read-only; keep it so
        with suppress(OSError):
            os.chmod(root / key / name, 0o444)


class _Float16Overflow(Exception):
    pass


def hr_pair(images: Tensor, indices: Tensor) -> Tensor:
    """The HR view's two columns: the normalised faces, then their mirrors."""
    x = normalize_uint8(images)
    return torch.cat([x, x.flip(-1)])


@torch.no_grad()
def _compute(path: Path, dataset, teacher, batch_size, num_workers, device, progress, views, dtype: str) -> int:
    from tqdm import tqdm

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    store, offset, bar = None, 0, None
    for images, _labels in loader:
        indices = torch.arange(offset, offset + images.shape[0])  # unshuffled: batch rows are dataset rows
        both = teacher(views(images, indices).to(device)).float().cpu().numpy()
        if dtype == "float16" and np.abs(both).max() > FLOAT16_MAX:
            raise _Float16Overflow
        if store is None:
            store = _open_store(path, (len(dataset), 2, both.shape[1]), dtype)
            bar = tqdm(total=len(loader), desc="teacher cache", disable=not progress, unit="batch")
        n = images.shape[0]
        store[offset:offset + n, 0] = both[:n]
        store[offset:offset + n, 1] = both[n:]
        offset += n
        bar.update(1)
    if store is None:
        raise ValueError("teacher cache: the dataset is empty")
    bar.close()
    store.flush()
    del store
    return offset


def _open_store(path: Path, shape: tuple[int, int, int], dtype: str) -> np.memmap:
    """The ``.npy`` memory map to fill, after saying how large it will be (and refusing a full disk)."""
    need = int(np.prod(shape)) * np.dtype(dtype).itemsize
    free = shutil.disk_usage(path.parent).free
    _say(f"teacher cache: building {path.parent.parent} ({shape[0]} faces x 2 views x {shape[2]} {dtype} = "
         f"{_human(need)}; {_human(free)} free)")
    if need > free:
        raise ConfigError(f"field `teacher_cache_dir` ({path.parent.parent}): the teacher cache needs "
                          f"{_human(need)}, only {_human(free)} are free there")
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def _human(nbytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.2f} {unit}"
    return f"{nbytes} B"
