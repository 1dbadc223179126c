"""Low-resolution probes, made once per (set, size) and shared by every model and FaceBN mode of a sweep.

The evaluation's degradation (:func:`insightface_lr.data.degrade.degrade_to_size`: antialiased bicubic
``H -> size``, then bicubic up to the model input) cost as much as a small student's forward pass when it ran
inside every cell (BENCHMARKS.md, section 3). Two changes make it a small part of the sweep:

- **once**: :func:`lr_probes` degrades a set to a probe size as ``uint8`` ``[N, size, size, 3]``, what a camera
  at that resolution would store; each cell only resizes these to its model's input (:func:`to_input_size`;
  a shrink stays 8-bit, an enlargement becomes float);
- **as two matrix products**: both resizes are linear and separable, ``Y = W X W^T`` per channel with a
  ``[size, H]`` weight matrix. :func:`resampling_matrix` reads the weights off torch's own antialiased
  interpolation (it resizes a basis), so the kernel is torch's, not a re-implementation: equal to
  ``F.interpolate`` within float rounding (tests/eval/test_probes.py).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.pixels import denormalize, normalize, normalize_uint8, to_uint8, to_unit
from ..errors import ConfigError

KERNELS = ("bicubic", "bilinear")  # the separable kernels of data.degrade.resize
CHUNK = 512  # faces degraded at once: bounds the float copy of a 112-px set to ~77 MB


@lru_cache(maxsize=64)
def resampling_matrix(source: int, size: int, kernel: str = "bicubic") -> Tensor:
    """``[size, source]`` float32 weights of :func:`insightface_lr.data.degrade.resize` along one axis
    (antialiased when shrinking, as there): row ``i`` holds output pixel ``i``'s weights."""
    if kernel not in KERNELS:
        raise ConfigError(f"resampling kernel: expected one of {KERNELS}, got {kernel!r}")
    if source == size:
        return torch.eye(size)
    # source basis images along the width, 4 rows tall (kept at 4: a 1-pixel axis takes another code path)
    basis = torch.eye(source, dtype=torch.float64).reshape(source, 1, 1, source).expand(source, 1, 4, source)
    out = F.interpolate(basis.contiguous(), size=(4, size), mode=kernel, align_corners=False,
                        antialias=size < source)
    return out[:, 0, 0, :].T.float().contiguous()


def resize_separable(unit: Tensor, size: int, kernel: str = "bicubic") -> Tensor:
    """``data.degrade.resize`` of square float ``[N, C, S, S]`` unit pixels as ``W x W^T`` (bicubic clamped to
    [0, 1], as there)."""
    if unit.shape[-1] == size and unit.shape[-2] == size:
        return unit
    if unit.shape[-1] != unit.shape[-2]:
        raise ConfigError(f"resize_separable: expected square faces, got {tuple(unit.shape[-2:])}")
    weights = resampling_matrix(int(unit.shape[-1]), int(size), kernel).to(unit.device, unit.dtype)
    out = weights @ unit.contiguous() @ weights.T  # one memory layout: the same rounding for every caller
    return out.clamp(0.0, 1.0) if kernel == "bicubic" else out


def lr_probes(images: np.ndarray, size: int) -> np.ndarray:
    """``uint8 [N, H, W, 3]`` faces seen at ``size`` px: ``uint8 [N, size, size, 3]`` (the faces themselves when
    ``size`` is their side)."""
    return lr_probes_at(images, (size,))[int(size)]


def lr_probes_at(images: np.ndarray, sizes: tuple[int, ...]) -> dict[int, np.ndarray]:
    """:func:`lr_probes` at several sizes in one pass over the faces: each chunk is converted to float once (on
    this box the conversion costs as much as a size's matrix products) and resized to every size."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ConfigError(f"lr_probes: expected uint8 faces [N, H, W, 3], got {images.dtype} {images.shape}")
    out = {int(s): images for s in sizes if images.shape[1] == s and images.shape[2] == s}
    todo = [int(s) for s in dict.fromkeys(sizes) if int(s) not in out]
    out |= {s: np.empty((len(images), s, s, 3), dtype=np.uint8) for s in todo}
    for start in range(0, len(images) if todo else 0, CHUNK):  # chunks of faces: batched matrix products
        x = to_unit(torch.from_numpy(np.ascontiguousarray(images[start:start + CHUNK])))
        for s in todo:
            out[s][start:start + CHUNK] = to_uint8(_resize_nhwc(x, s)).numpy()
    return out


def _resize_nhwc(unit: Tensor, size: int) -> Tensor:
    """:func:`resize_separable` (bicubic) of channels-last ``[N, S, S, C]`` pixels, kept channels-last: both
    products contract a middle axis of a contiguous tensor, so no transposed copy is made (a copy to channels-
    first and back cost 5x the products)."""
    n, side, _, channels = unit.shape
    weights = resampling_matrix(int(side), int(size)).to(unit.device, unit.dtype)
    rows = weights @ unit.reshape(n, side, side * channels)  # [N, size, S*C]: along the height
    cols = weights @ rows.reshape(n * size, side, channels)  # [N*size, size, C]: along the width
    return cols.reshape(n, size, size, channels).clamp(0.0, 1.0)


def model_probes(images: np.ndarray, size: int, input_size: int) -> np.ndarray:
    """uint8 probes at ``size`` px (:func:`lr_probes`) as a model of ``input_size`` takes them: shrunk to the input
    (8-bit again) when it is smaller, else as they are (an enlargement is float, per batch: :func:`to_input_size`)."""
    low = lr_probes(images, size)
    return lr_probes(low, input_size) if input_size < low.shape[1] else low


def to_input_size(x: Tensor, input_size: int) -> Tensor:
    """Normalised 8-bit probes ``[B, 3, s, s]`` (made from uint8 faces) resized (bicubic) to the model's
    ``input_size``. Shrinking keeps them 8-bit, as any image library's resize of a uint8 image does, so a
    112-px face shrunk to a 16-px input is exactly its 16-px probe (:func:`..lowres.probe_chain`)."""
    side = x.shape[-1]
    if side == input_size:  # contiguous as every resized batch is: the model's kernels, and rounding, then agree
        return x.contiguous()
    if input_size > side:  # up-sampling: the model takes floats
        return normalize(resize_separable(denormalize(x), input_size))
    faces = to_unit(to_uint8(denormalize(x)))  # the 8-bit values back exactly (x came from uint8)
    return normalize_uint8(to_uint8(resize_separable(faces, input_size)))


def distinct_faces(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first, inverse)``: the index of each distinct face (first occurrence, ascending) and, for every face,
    the position of its copy among them (``images[first][inverse] == images``). Verification sets repeat faces
    (a face in several pairs: dev.bin's 2,400 slots hold 711 faces), and a per-face model embeds each once."""
    flat = np.ascontiguousarray(np.asarray(images).reshape(len(images), -1))
    keys = flat.view(np.dtype((np.void, flat.shape[1])))[:, 0]  # one opaque byte string per face: no loop
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return first[order], rank[np.asarray(inverse).reshape(-1)]


class ProbeSets:
    """:func:`model_probes` of one set for each (probe size, model input) asked for, computed on first use and
    kept (a sweep keeps one per ``.bin`` while that ``.bin`` is evaluated): every model and FaceBN mode of the
    sweep reads the same degraded faces, and a cell only normalises (or enlarges) them."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images
        self._by_size: dict[tuple[int, int], np.ndarray] = {}
        self.distinct = distinct_faces(images)  # (first, inverse): each repeated face embedded once

    def prepare(self, sizes: tuple[int, ...]) -> None:
        """Make the probes of every size in ``sizes`` in one pass over the faces (:func:`lr_probes_at`)."""
        missing = tuple(int(s) for s in sizes if (int(s), int(s)) not in self._by_size)
        for size, probes in (lr_probes_at(self.images, missing) if missing else {}).items():
            self._by_size[(size, size)] = probes

    def at(self, size: int, input_size: int | None = None) -> np.ndarray:
        """The probes at ``size`` px, shrunk to ``input_size`` when that is smaller."""
        size = int(size)
        target = size if input_size is None else min(int(input_size), size)
        if (size, target) not in self._by_size:  # a shrink starts from the kept probes, not from the faces again
            source = self.at(size) if target < size else self.images
            self._by_size[(size, target)] = lr_probes(source, target)
        return self._by_size[(size, target)]


__all__ = ["ProbeSets", "distinct_faces", "lr_probes", "lr_probes_at", "model_probes", "resampling_matrix",
           "resize_separable", "to_input_size"]
