"""The two views of a training batch: HR for the frozen teacher, degraded LR for the student.

Randomness is a function of *what* is drawn, not of the process that draws it: the horizontal flip of a
sample depends on (seed, epoch, sample index), and the degradation generator on (seed, global step,
rank). So a resumed run re-creates exactly the views of an uninterrupted one, and the flip matches the
teacher cache entry (original or flipped) of the same sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.degrade import DegradeConfig, degrade
from ..data.pixels import normalize_uint8
from .teacher_view import TeacherView

HR_SIZE = 112  # InsightFace's aligned crop


@dataclass
class BatchViews:
    hr: Tensor  # [B,3,112,112] float model input (data.pixels): teacher input
    lr: Tensor  # [B,3,S,S] float, normalised: student input (S = student input size)
    flipped: Tensor  # [B] bool: the HR/LR pair was mirrored
    hr_pixels: Tensor  # [B,3,112,112] uint8 RGB: the HR view before normalisation


def flip_mask(indices: Tensor, seed: int, epoch: int) -> Tensor:
    """Per-sample coin from an integer hash of (seed, epoch, index): vectorised, process-independent."""
    x = indices.long() * 0x9E3779B1 + seed * 0x85EBCA77 + epoch * 0xC2B2AE3D
    x = (x ^ (x >> 15)) * 0x2C1B3C6D
    x = x ^ (x >> 12)
    return (x & 0x10) != 0


def degrade_generator(seed: int, step: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 101 + rank)


def make_views(
    images: Tensor, indices: Tensor, degrade_config: DegradeConfig, seed: int, epoch: int, step: int,
    rank: int, view: TeacherView | None = None,
) -> BatchViews:
    """images: uint8 ``[B,3,H,W]`` RGB (any device); indices: ``[B]`` dataset indices. With a ``view`` whose
    LR is fixed per face (``teacher_view = "lr"``), the LR view is that face's own degradation (the pixels the
    teacher cache embedded), not the batch's seeded draw."""
    flipped = flip_mask(indices.cpu(), seed, epoch).to(images.device)
    images = torch.where(flipped[:, None, None, None], images.flip(-1), images)
    if images.shape[-1] != HR_SIZE or images.shape[-2] != HR_SIZE:
        images = F.interpolate(images.float(), size=(HR_SIZE, HR_SIZE), mode="bilinear", antialias=True,
                               align_corners=False).round_().clamp_(0, 255).to(torch.uint8)  # stays uint8
    if view is not None and view.fixed_lr:
        lr = view.student_pixels(images.cpu(), indices.cpu(), flipped.cpu()).to(images.device)
    else:
        lr = degrade(images, degrade_config, degrade_generator(seed, step, rank))
    return BatchViews(hr=normalize_uint8(images), lr=normalize_uint8(lr), flipped=flipped, hr_pixels=images)
