"""The pixel convention, in one place: images are RGB ``uint8`` in ``[0, 255]``; models take
InsightFace's ``((img / 255) - 0.5) / 0.5``, i.e. ``[-1, 1]``.

Three representations, and the only conversions between them:

- ``uint8`` ``[0, 255]``: what datasets, ``.bin`` files and image files hold;
- *unit* float ``[0, 1]``: what degradation works in (:mod:`insightface_lr.data.degrade`): blur, noise
  and JPEG are defined on pixels, never on normalised values;
- *model input* float ``[-1, 1]``: what every backbone, teacher and exported graph takes (normalise once,
  where the model takes its input).

An ONNX model may normalise differently: it is fed ``(p - mean) / std`` on ``0..255`` pixel values ``p``,
with insightface's default ``mean = std =`` :data:`ONNX_MEAN`, which is this same convention.
"""

from __future__ import annotations

import torch
from torch import Tensor

PIXEL_MAX = 255.0
MEAN = STD = 0.5  # on unit pixels: InsightFace's ((img / 255) - 0.5) / 0.5
ONNX_MEAN = ONNX_STD = PIXEL_MAX * MEAN  # the same convention on 0..255 values: (p - 127.5) / 127.5


def to_unit(images: Tensor) -> Tensor:
    """``uint8`` ``[0, 255]`` -> float ``[0, 1]``."""
    return images.float() / PIXEL_MAX


def to_uint8(unit: Tensor) -> Tensor:
    """float ``[0, 1]`` -> ``uint8`` (rounded to the nearest level, clipped)."""
    return (unit * PIXEL_MAX).round().clamp(0, 255).to(torch.uint8)


def normalize(unit: Tensor) -> Tensor:
    """float ``[0, 1]`` pixels -> model input ``[-1, 1]``."""
    return (unit - MEAN) / STD


def denormalize(x: Tensor) -> Tensor:
    """Model input ``[-1, 1]`` -> float pixels ``[0, 1]`` (clipped)."""
    return (x * STD + MEAN).clamp_(0.0, 1.0)


def normalize_uint8(images: Tensor) -> Tensor:
    """``uint8`` ``[B, 3, H, W]`` RGB -> model input (bit-identical to ``images.float() / 127.5 - 1``)."""
    return normalize(to_unit(images))


def model_input_to_pixel_values(x: Tensor) -> Tensor:
    """Model input ``[-1, 1]`` -> float ``0..255`` values (what an ONNX graph's own normalisation expects)."""
    return x * ONNX_STD + ONNX_MEAN
