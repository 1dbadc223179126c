"""Bridge distillation: two steps from a big HR teacher into a tiny LR student.

Ge, Zhao, Li, Zhang, Li, "Efficient Low-Resolution Face Recognition via Bridge Distillation",
IEEE TIP 2020, arXiv 2409.11786. Project's reading (METHODS.md):

Step 1, cross-dataset adaptation (term ``"bridge_adapt"``). The trainer's student is the compact
bridge network ``g`` (a separate small network, MobileFaceNet in the recipes, on HR faces: Db-dim
embeddings), trained on public HR identities with its margin head plus
``||g(x_h) - A(F_t(x_h))||^2`` where ``A = fixed_projection(Dt, Db, seed)``
has orthonormal rows (a fixed projection onto a Db-dim subspace, no scale distortion): the compact
bridge embedding stays close to the teacher's knowledge while the margin loss adapts it to the new
identities.
Here ``inputs.student = g(x_h)`` [B, Db] and ``inputs.teacher = F_t(x_h)`` [B, Dt].

Step 2, resolution-adapted multi-task (term ``"bridge"``). The tiny student on synthetic LR faces
learns ``L_margin + lambda * ||F_s(x_l) - g(x_h)||^2``; the trainer feeds the bridge embedding
``g(x_h)`` as ``inputs.teacher`` (a teacher cache of g works as for any teacher).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..registry import register_distill_term
from .distiller import DistillDims, DistillInputs, DistillTerm, make_adaptor


def fixed_projection(dt: int, db: int, seed: int = 0) -> Tensor:
    """Seeded ``A`` [db, dt] with orthonormal rows (``A @ A.T = I_db``); needs ``db <= dt``."""
    if not 0 < db <= dt:
        raise ConfigError(f"bridge projection: need 0 < bridge dim ({db}) <= teacher dim ({dt})")
    gen = torch.Generator().manual_seed(seed)
    gauss = torch.randn(dt, db, generator=gen, dtype=torch.float64)
    q, r = torch.linalg.qr(gauss)  # q: [dt, db] orthonormal columns
    q = q * torch.sign(torch.diagonal(r))  # unique QR: the same A for a seed on every platform
    return q.T.contiguous().float()


def bridge_adaptation_loss(g_h: Tensor, a_t: Tensor) -> Tensor:
    """Step 1: ``mean_i ||g_h_i - a_t_i||^2``; [B, Db] x [B, Db] -> scalar."""
    return (g_h - a_t).pow(2).sum(dim=1).mean()


@dataclass(frozen=True)
class BridgeAdaptConfig:
    weight: float = 1.0  # weight of ||g - A F_t||^2 next to the margin loss
    seed: int = 0  # seed of the fixed projection A


@register_distill_term("bridge_adapt")
class BridgeAdaptLoss(DistillTerm):
    """Step 1: ``weight * ||student - A(teacher)||^2`` with the fixed projection A (a buffer)."""

    name = "bridge_adapt"
    config_class = BridgeAdaptConfig

    def __init__(self, dims: DistillDims, **fields: object) -> None:
        super().__init__(dims, **fields)
        projection = fixed_projection(dims.teacher_dim, dims.student_dim, self.config.seed)
        self.register_buffer("projection", projection)  # [Db, Dt], fixed: saved but never optimised

    def forward(self, inputs: DistillInputs) -> dict[str, Tensor]:
        g_h, f_t = self.pair(inputs)
        adapt = bridge_adaptation_loss(g_h, f_t @ self.projection.to(f_t.dtype).T)
        return {"loss": self.config.weight * adapt, "adapt": adapt}


@dataclass(frozen=True)
class BridgeConfig:
    lambda_l2: float = 1.0  # lambda of step 2
    normalize: bool = False  # compare unit vectors instead of raw embeddings


@register_distill_term("bridge")
class BridgeLoss(DistillTerm):
    """Step 2: ``lambda * mean_i ||F_s(x_l)_i - g(x_h)_i||^2``; adaptor when Ds != Db."""

    name = "bridge"
    config_class = BridgeConfig

    def __init__(self, dims: DistillDims, **fields: object) -> None:
        super().__init__(dims, **fields)
        self.adaptor = make_adaptor(dims.student_dim, dims.teacher_dim)

    def forward(self, inputs: DistillInputs) -> dict[str, Tensor]:
        student, target = self.pair(inputs)
        f_s = self.adaptor(student)
        if self.config.normalize:
            f_s, target = F.normalize(f_s, dim=1), F.normalize(target, dim=1)
        l2 = bridge_adaptation_loss(f_s, target)
        return {"loss": self.config.lambda_l2 * l2, "l2": l2}
