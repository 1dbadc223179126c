"""The demo's *shifted* test set: the same faces and pairs, seen through another camera than training.

Training faces are clean HR renders degraded only by bicubic down-sampling. The shifted set bakes into the
HR faces what training never showed, in a camera's order: illumination (gamma, a warm colour cast,
lower contrast), optical blur, sensor noise, then strong JPEG. Each face draws its own strengths around
one shared domain offset (a consistent shift is what test-time BatchNorm adaptation, FaceBN, can undo;
per-face spread keeps it realistic). Vectorised over the batch and seeded: same seed -> same bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.degrade import gaussian_blur, jpeg_simulate
from ..data.pixels import to_uint8, to_unit


@dataclass(frozen=True)
class ShiftConfig:
    """Per-face strengths are drawn uniformly from each ``(low, high)`` range."""

    gamma: tuple[float, float] = (1.5, 2.0)  # x ** gamma: darker mid-tones (training: gamma 1)
    cast: tuple[float, float, float] = (1.08, 0.95, 0.70)  # RGB gains of a warm (tungsten-like) light
    cast_jitter: float = 0.05  # per-face, per-channel spread of the gains
    contrast: tuple[float, float] = (0.55, 0.75)  # about mid-grey (training: 0.82 .. 1.18)
    blur_sigma: tuple[float, float] = (0.8, 1.6)  # HR pixels
    noise_std: tuple[float, float] = (0.02, 0.05)  # [0, 1] pixel units, at HR
    jpeg_quality: tuple[int, int] = (15, 35)
    seed: int = 0


def _uniform(gen: torch.Generator, n: int, bounds: tuple[float, float]) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(n, generator=gen)


def apply_shift(images: np.ndarray, config: ShiftConfig | None = None) -> np.ndarray:
    """Shift uint8 RGB faces ``[N, H, W, 3]`` -> uint8 ``[N, H, W, 3]`` (one batched pass, seeded)."""
    c = config or ShiftConfig()
    n = images.shape[0]
    gen = torch.Generator().manual_seed(c.seed)
    x = to_unit(torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2))  # [N, 3, H, W]
    gamma = _uniform(gen, n, c.gamma).view(n, 1, 1, 1)
    gains = torch.tensor(c.cast).view(1, 3) * (1 + c.cast_jitter * (2 * torch.rand(n, 3, generator=gen) - 1))
    contrast = _uniform(gen, n, c.contrast).view(n, 1, 1, 1)
    x = x.clamp_min(1e-6).pow(gamma) * gains.view(n, 3, 1, 1)
    x = ((x - 0.5) * contrast + 0.5).clamp(0.0, 1.0)
    x = gaussian_blur(x, _uniform(gen, n, c.blur_sigma))
    noise = torch.randn(x.shape, generator=gen) * _uniform(gen, n, c.noise_std).view(n, 1, 1, 1)
    x = (x + noise).clamp(0.0, 1.0)
    quality = _uniform(gen, n, (float(c.jpeg_quality[0]), float(c.jpeg_quality[1]))).round().long()
    x = jpeg_simulate(x, quality)
    return to_uint8(x).permute(0, 2, 3, 1).numpy()


def write_shifted_bin(test_bin: str | os.PathLike, out: str | os.PathLike, config: ShiftConfig | None = None,
                      chunk: int = 256) -> Path:
    """Read ``test_bin``, shift every face, write the same pairs (same order and labels) to ``out``.

    Chunks bound memory; each chunk gets its own seed derived from ``config.seed`` and its position, so the
    result does not depend on anything but the config and the input.
    """
    from dataclasses import replace

    from ..data.image_codec import encode_jpeg
    from ..data.verification_bin import load_bin_images, write_bin

    c = config or ShiftConfig()
    images, issame = load_bin_images(test_bin)
    encoded: list[bytes] = []
    for start in range(0, len(images), chunk):
        part = apply_shift(images[start:start + chunk], replace(c, seed=c.seed * 1_000_003 + start))
        encoded += [encode_jpeg(im) for im in part]  # quality 95 on top of the simulated low-quality JPEG
    return Path(write_bin(out, encoded, [bool(s) for s in issame]))
