"""Which view of a training face the frozen teacher embeds: the HR face (``"hr"``) or its LR view (``"lr"``).

``"hr"`` (the default) is classic distillation: the teacher sees the 112-px face, the student its degraded copy.

``"lr"`` is for a teacher that already reads low-resolution faces (a low-resolution fine-tune of a pretrained
model, the *bridge* of bridge distillation's second step): the teacher sees the face degraded to the student's
LR size and enlarged back to its own input, as evaluation shows an LR probe to a 112-px model, and the student
sees the same LR pixels at its own input size. The target is then the teacher's embedding of exactly the face
the student sees, which a frozen teacher can give without any guessing about the lost detail.

To make that cacheable, the degradation of a face is drawn from (face index, flip) only, never from the run's
seed, epoch or step: each of a face's two views (original, mirrored) has one LR version, embedded once into the
teacher cache under a key that names the view and the degradation (:meth:`TeacherView.key_text`), so every run
on the same bridge, data and degradation (any seed, any epochs) reads the same cache. A purely deterministic
degradation (one size, one kernel, no blur/noise/JPEG: the recipes' bicubic) gives the same pixels as the run's
usual per-batch draw, so the student trains on what it trained on before; a random one is fixed per face
(the mirror still alternates), trading augmentation for exact targets.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import torch
from torch import Tensor

from ..data.degrade import DegradeConfig, degrade
from ..data.pixels import normalize_uint8
from ..errors import ConfigError

TEACHER_VIEWS = ("hr", "lr")
FACE_SEED_OFFSET = 0x5EED  # per-face generators: seed = offset + 2 * index + flip (fixed: the cache depends on it)


def face_seeds(indices: Tensor, flipped: Tensor) -> list[int]:
    """One generator seed per (face index, flip): the same face and mirror always draw the same degradation."""
    return (FACE_SEED_OFFSET + 2 * indices.long().cpu() + flipped.long().cpu()).tolist()


def is_deterministic(config: DegradeConfig) -> bool:
    """True when every draw of ``config`` gives the same pixels (one size, one kernel, no blur/noise/JPEG)."""
    quiet = lambda low_high, prob: max(low_high) == 0 or prob == 0  # noqa: E731
    return (len(config.candidate_sizes()) == 1 and config.down_kernel != "random"
            and quiet(config.blur_sigma, config.blur_prob) and quiet(config.noise_std, config.noise_prob)
            and (config.jpeg_quality is None or config.jpeg_prob == 0))


def face_degrade(pixels: Tensor, indices: Tensor, flipped: Tensor, config: DegradeConfig) -> Tensor:
    """``degrade`` with each face's own generator (:func:`face_seeds`): a face's result never depends on the
    batch it is in. ``pixels`` uint8 ``[B, 3, H, W]`` (already mirrored where ``flipped``)."""
    if is_deterministic(config):  # the draws cannot change anything: one batched call
        return degrade(pixels, config, 0)
    seeds = face_seeds(indices, flipped)
    return torch.cat([degrade(pixels[i:i + 1], config, seed) for i, seed in enumerate(seeds)])


@dataclass(frozen=True)
class TeacherView:
    """The view (``name``), the student's degradation (``degrade``, used by ``"lr"``) and the teacher's input."""

    name: str = "hr"
    degrade: DegradeConfig | None = None
    teacher_input_size: int = 112

    @property
    def fixed_lr(self) -> bool:
        """The student's LR view must be the per-face one the teacher saw."""
        return self.name == "lr"

    def key_text(self) -> str:
        """What the teacher cache key adds for this view: nothing for ``"hr"`` (the caches made before views
        existed keep their key); for ``"lr"`` the degradation's fields, less the run's seed and output size."""
        if self.name == "hr":
            return ""
        fields = {f.name: getattr(self.degrade, f.name) for f in dataclasses.fields(DegradeConfig)
                  if f.name not in ("seed", "output_size")}
        return "lr:" + json.dumps(fields, sort_keys=True)

    def teacher_input(self, pixels: Tensor, indices: Tensor, flipped: Tensor) -> Tensor:
        """The teacher's normalised input ``[B, 3, T, T]`` for uint8 ``pixels`` (already mirrored)."""
        if self.name == "hr":
            return normalize_uint8(pixels)
        config = dataclasses.replace(self.degrade, output_size=self.teacher_input_size)
        return normalize_uint8(face_degrade(pixels, indices, flipped, config))

    def student_pixels(self, pixels: Tensor, indices: Tensor, flipped: Tensor) -> Tensor:
        """The student's uint8 LR view (``"lr"`` only): the same per-face degradation at the student's size."""
        return face_degrade(pixels, indices, flipped, self.degrade)

    def cache_pair(self, images: Tensor, indices: Tensor) -> Tensor:
        """``[2B, ...]`` teacher inputs of a batch, original faces then mirrored: the cache's two columns."""
        no = torch.zeros(len(indices), dtype=torch.bool)
        return torch.cat([self.teacher_input(images, indices, no), self.teacher_input(images.flip(-1), indices, ~no)])


def build_teacher_view(name: str, degrade_config: DegradeConfig, teacher_input_size: int = 112) -> TeacherView:
    """The run's view; ``"lr"`` needs a single LR size (one cached LR version per face)."""
    if name not in TEACHER_VIEWS:
        raise ConfigError(f"field `teacher_view`: expected one of {TEACHER_VIEWS}, got {name!r}")
    if name == "lr" and len(degrade_config.candidate_sizes()) != 1:
        raise ConfigError(f"field `teacher_view`: 'lr' needs one LR size (field `lr_sizes`), got "
                          f"{degrade_config.candidate_sizes()}")
    return TeacherView(name, degrade_config if name == "lr" else None, teacher_input_size)
