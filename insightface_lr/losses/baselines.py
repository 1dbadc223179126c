"""Baseline distillation terms for honest comparison: Hinton KD, feature KD, RKD.

- ``"kd"``: Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network" (2015):
  ``tau^2 * mean_i KL(softmax(z_t/tau) || softmax(z_s/tau))``, tau = 4. Teacher logits are the
  cosine logits of the teacher classifier ``z_t = s * f^_t W^_t.T``; student logits are, with
  ``logits="teacher"`` (default), the teacher classifier applied to the adapted student feature, or with
  ``logits="student"`` (Hinton's form) ``s * student_logits``, the student's own margin-head cosines, which
  the training step fills for a term that asks for them (same identities as the teacher centres).
- ``"feat"``: feature KD (FitNets-like) ``mean_i 1 - cos(f_s, f_t)`` (default) or element-mean MSE.
- ``"rkd"``: Park, Kim, Lu, Cho, "Relational Knowledge Distillation", CVPR 2019: Smooth-L1
  (beta = 1) between student and teacher pairwise distances (each normalised by its batch mean
  off-diagonal distance), weight 1, and between triplet angles ``<e_ij, e_ik>``, weight 2.
  Relations are width-free, so no adaptor. The angle term builds [B, B, D] differences and a
  [B, B, B] angle tensor: O(B^2 D + B^3) memory, about 200 MB in fp32 at B = 256, D = 512; fine up
  to B = 256 per GPU, larger batches should lower the batch or drop the angle weight to 0.

``"none"`` (no distillation) is handled by :func:`build_distiller`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..registry import register_distill_term
from .aird import cosine_distance, cosine_logits, soft_kl
from .distiller import DistillDims, DistillInputs, DistillTerm, check_positive, make_adaptor


@dataclass(frozen=True)
class KDConfig:
    alpha: float = 1.0  # weight
    tau: float = 4.0  # temperature
    scale: float = 64.0  # s of the cosine logits
    logits: str = "teacher"  # z_s from: "teacher" classifier on the adapted feature | the "student"'s own head

    def __post_init__(self) -> None:
        check_positive("kd", tau=self.tau, scale=self.scale)
        if self.logits not in ("teacher", "student"):
            raise ConfigError(f"distill config for 'kd': field logits must be 'teacher' or 'student', "
                              f"got {self.logits!r}")


@register_distill_term("kd")
class HintonKDLoss(DistillTerm):
    """``alpha * tau^2 * KL(softmax(z_t/tau) || softmax(z_s/tau))``; needs teacher_centres."""

    name = "kd"
    config_class = KDConfig
    requires_teacher_centres = True
    uses_teacher_centres = True

    def __init__(self, dims: DistillDims, **fields: object) -> None:
        super().__init__(dims, **fields)
        self.adaptor = make_adaptor(dims.student_dim, dims.teacher_dim)

    @property
    def uses_student_logits(self) -> bool:  # the training step computes them only for a term that asks
        return self.config.logits == "student"

    def forward(self, inputs: DistillInputs) -> dict[str, Tensor]:
        cfg = self.config
        student, teacher = self.pair(inputs)
        centres = self.centres(inputs).to(teacher.dtype)
        z_t = cosine_logits(teacher, centres, cfg.scale)
        if cfg.logits == "student":
            if inputs.student_logits is None:
                raise ConfigError("distill term 'kd' with logits='student' needs the student's classifier logits "
                                  "(DistillInputs.student_logits), which the trainer fills for such a term")
            if inputs.student_logits.shape != z_t.shape:
                raise ConfigError(
                    f"distillation term 'kd': student_logits {tuple(inputs.student_logits.shape)} and teacher "
                    f"logits {tuple(z_t.shape)} differ: the student head must cover the teacher's identities"
                )
            z_s = cfg.scale * inputs.student_logits.to(z_t.dtype)
        else:
            z_s = cosine_logits(self.adaptor(student), centres, cfg.scale)
        kd = soft_kl(z_s, z_t, cfg.tau)
        return {"loss": cfg.alpha * kd, "kd": kd}


@dataclass(frozen=True)
class FeatConfig:
    alpha: float = 1.0  # weight
    metric: str = "cosine"  # "cosine": mean 1 - cos | "mse": element-mean squared error

    def __post_init__(self) -> None:
        if self.metric not in ("cosine", "mse"):
            raise ConfigError(f"'feat' config: metric must be 'cosine' or 'mse', got {self.metric!r}")


@register_distill_term("feat")
class FeatureKDLoss(DistillTerm):
    """``alpha * (1 - cos)`` or ``alpha * MSE`` between adapted student and teacher embeddings."""

    name = "feat"
    config_class = FeatConfig

    def __init__(self, dims: DistillDims, **fields: object) -> None:
        super().__init__(dims, **fields)
        self.adaptor = make_adaptor(dims.student_dim, dims.teacher_dim)

    def forward(self, inputs: DistillInputs) -> dict[str, Tensor]:
        student, teacher = self.pair(inputs)
        f_s = self.adaptor(student)
        feat = cosine_distance(f_s, teacher) if self.config.metric == "cosine" else F.mse_loss(f_s, teacher)
        return {"loss": self.config.alpha * feat, "feat": feat}


def pairwise_distance(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Euclidean distances [B, D] -> [B, B] with an exact-zero diagonal (no sqrt(0) gradient)."""
    sq = x.pow(2).sum(dim=1)
    d = (sq[:, None] + sq[None, :] - 2.0 * x @ x.T).clamp_min(eps).sqrt()
    return d * (1.0 - torch.eye(x.shape[0], dtype=x.dtype, device=x.device))


def _mean_normalised(d: Tensor) -> Tensor:
    n = d.shape[0]
    return d / (d.sum() / (n * (n - 1))).clamp_min(1e-12)


def rkd_distance(f_s: Tensor, f_t: Tensor) -> Tensor:
    """Smooth-L1 between batch-mean-normalised distance matrices; 0 for B < 2."""
    if f_s.shape[0] < 2:
        return f_s.sum() * 0.0
    d_s, d_t = pairwise_distance(f_s), pairwise_distance(f_t)
    return F.smooth_l1_loss(_mean_normalised(d_s), _mean_normalised(d_t))


def triplet_angles(x: Tensor) -> Tensor:
    """``a[i, j, k] = <e_ij, e_ik>`` with ``e_ij = (x_j - x_i) / ||x_j - x_i||``: [B, D] -> [B, B, B]."""
    e = F.normalize(x[None, :, :] - x[:, None, :], dim=2)  # e[i, j] = unit(x_j - x_i); e[i, i] = 0
    return e @ e.transpose(1, 2)


def rkd_angle(f_s: Tensor, f_t: Tensor) -> Tensor:
    """Smooth-L1 between triplet angle tensors [B, B, B] -> scalar.

    For B < 3 every triplet is degenerate (``e_ii = 0``, ``a[i, j, j] = 1``) and equal for both, so the
    loss is 0. The zero vectors ``e_ii`` get a 0 gradient because their angles match exactly.
    """
    return F.smooth_l1_loss(triplet_angles(f_s), triplet_angles(f_t))


@dataclass(frozen=True)
class RKDConfig:
    distance_weight: float = 1.0
    angle_weight: float = 2.0


@register_distill_term("rkd")
class RKDLoss(DistillTerm):
    """``distance_weight * L_dist + angle_weight * L_angle`` on raw embeddings (widths may differ)."""

    name = "rkd"
    config_class = RKDConfig

    def forward(self, inputs: DistillInputs) -> dict[str, Tensor]:
        student, teacher = self.pair(inputs)
        dist, angle = rkd_distance(student, teacher), rkd_angle(student, teacher)
        cfg = self.config
        loss = cfg.distance_weight * dist + cfg.angle_weight * angle
        return {"loss": loss, "distance": dist, "angle": angle}
