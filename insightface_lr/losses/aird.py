"""AIRD: instance-level and relation-level distillation.

Shi, Guo, Ge, "Low-Resolution Face Recognition via Adaptable Instance-Relation Distillation",
arXiv 2409.02049. The forms are the project's reading (see METHODS.md):

- instance: ``lambda_f * mean_i(1 - cos(f_s_i, f_t_i)) + lambda_p * tau^2 * KL(softmax(z_t/tau) ||
  softmax(z_s/tau))``: the embedding of each LR face pulled to its own HR face's teacher embedding, and its
  prediction to the teacher's, on the cosine logits ``z = s * f^ @ W^_t.T`` of the teacher head C_t (for a
  recogniser without its head, the teacher's class centres on the training identities, as ``kd`` uses them).
  Both parts are on by default: the seed's overview figure (Figure 2) defines the features f_t, f_s *and*
  the predictions p_t, p_s of the instance level. Without centres the prediction part is 0;
- relation: ``r_t(i,j) = softmax_j(f^_t_i . f^_t_j / tau_r)``,
  ``r_ts(i,j) = softmax_j(f^_s_i . f^_t_j / tau_r)``,
  ``L = mean_i KL(r_t(i,.) || r_ts(i,.))``; the cross relation keeps the (i, i) positive pair.
- total ``alpha * L_instance + beta * L_relation``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import register_distill_term
from .distiller import DistillDims, DistillInputs, DistillTerm, as_float, check_positive, make_adaptor
from .scale import FirstValueScale


def cosine_distance(f_s: Tensor, f_t: Tensor) -> Tensor:
    """``mean_i (1 - cos(f_s_i, f_t_i))`` for [B, D] x [B, D] -> scalar."""
    return (1.0 - F.cosine_similarity(f_s, f_t, dim=1, eps=1e-12)).mean()


def row_kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """``mean_i KL(p_i || q_i)`` from row-wise log-probabilities [B, K] -> scalar (0 for B = 0 rows)."""
    return (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()


def soft_kl(z_s: Tensor, z_t: Tensor, tau: float = 4.0) -> Tensor:
    """Hinton KD ``tau^2 * mean_i KL(softmax(z_t_i/tau) || softmax(z_s_i/tau))``; z: [B, C] -> scalar.

    The tau^2 keeps the gradient scale independent of tau (Hinton et al. 2015).
    """
    return tau**2 * row_kl(F.log_softmax(z_t / tau, dim=1), F.log_softmax(z_s / tau, dim=1))


def cosine_logits(f: Tensor, centres: Tensor, scale: float) -> Tensor:
    """``s * f^ @ W^.T``: [B, D] x [C, D] -> [B, C]."""
    return scale * F.normalize(f, dim=1) @ F.normalize(centres, dim=1).T


def instance_distillation(
    f_s: Tensor,
    f_t: Tensor,
    z_s: Tensor | None = None,
    z_t: Tensor | None = None,
    lambda_f: float = 1.0,
    lambda_p: float = 1.0,
    tau: float = 4.0,
) -> Tensor:
    """AIRD instance level: embedding cosine + (if both logits given) prediction KL.

    f_s, f_t: [B, D] (same width); z_s, z_t: [B, C] logits or None. Returns a scalar.
    """
    loss = lambda_f * cosine_distance(f_s, f_t)
    if z_s is not None and z_t is not None and lambda_p != 0:
        loss = loss + lambda_p * soft_kl(z_s, z_t, tau)
    return loss


def relation_target(f_t: Tensor, tau_r: float, labels: Tensor | None, identity_aware: bool,
                    bank: Tensor | None = None, bank_labels: Tensor | None = None) -> Tensor:
    """Log of the teacher relation ``r_t`` [B, N] of the B rows ``f_t`` over the N faces of ``bank``
    (default: ``f_t`` itself, N = B); identity-aware: same-label entries share their mass.

    Identity-aware rows spread the total mass of the same-label pairs (the sample itself included)
    evenly over them, so the student is not asked to rank two faces of one person.
    """
    t = F.normalize(f_t, dim=1)
    columns = t if bank is None else F.normalize(bank, dim=1)
    log_r = F.log_softmax(t @ columns.T / tau_r, dim=1)
    if not identity_aware:
        return log_r
    if labels is None or (bank is not None and bank_labels is None):
        raise ConfigError("AIRD relation: identity_aware=True needs labels (and the bank's labels)")
    column_labels = labels if bank is None else bank_labels
    same = (labels[:, None] == column_labels[None, :]).to(log_r.dtype)
    r = log_r.exp()
    shared = (r * same).sum(dim=1, keepdim=True) / same.sum(dim=1, keepdim=True)
    target = torch.where(same > 0, shared, r)
    return target.clamp_min(torch.finfo(target.dtype).tiny).log()


def relation_distillation(
    f_s: Tensor,
    f_t: Tensor,
    tau_r: float = 0.1,
    labels: Tensor | None = None,
    identity_aware: bool = False,
    bank: Tensor | None = None,
    bank_labels: Tensor | None = None,
) -> Tensor:
    """AIRD relation level ``mean_i KL(r_t(i,.) || r_ts(i,.))``; f_s, f_t: [B, D] -> scalar.

    The relations run over the N teacher faces of ``bank`` [N, D] (the global batch under DDP, which
    holds the B rows of ``f_t``; default ``f_t``): rows are this rank's faces, so the mean over all ranks'
    rows (DDP's gradient average) is the one-process loss. One [B, N] matrix product per relation, no
    loops. B = N = 1 gives exactly 0 (one-entry softmax).
    """
    columns = f_t if bank is None else bank
    cross = F.normalize(f_s, dim=1) @ F.normalize(columns, dim=1).T / tau_r
    target = relation_target(f_t, tau_r, labels, identity_aware, bank, bank_labels)
    return row_kl(target, F.log_softmax(cross, dim=1))


@dataclass(frozen=True)
class AIRDConfig:
    alpha: float = 1.0  # weight of the instance level
    beta: float = 1.0  # weight of the relation level
    lambda_f: float = 1.0  # embedding cosine part of the instance level
    lambda_p: float = 1.0  # prediction KL part (reads the teacher centres); 0 drops it
    tau: float = 4.0  # KD temperature of the prediction part
    tau_r: float = 0.1  # relation softmax temperature
    scale: float = 64.0  # s of the cosine logits z = s * f^ W^_t.T
    identity_aware: bool = False  # same-label pairs share the relation target mass
    # each part (feature, prediction, relation) in units of its first-step value (losses/scale.py), so that the
    # lambdas and beta weigh parts of comparable size: from a pretrained start the prediction KL is ~100x the rest
    balance: bool = False

    def __post_init__(self) -> None:
        check_positive("aird", tau=self.tau, tau_r=self.tau_r, scale=self.scale)


@register_distill_term("aird")
class AIRDLoss(DistillTerm):
    """``alpha * L_instance + beta * L_relation``; owns a linear adaptor when Ds != Dt."""

    name = "aird"
    config_class = AIRDConfig
    uses_teacher_bank = True

    def __init__(self, dims: DistillDims, **fields: object) -> None:
        super().__init__(dims, **fields)
        self.adaptor = make_adaptor(dims.student_dim, dims.teacher_dim)
        parts = ("feat", "pred", "relation") if self.config.balance else ()
        self.part_scales = nn.ModuleDict({part: FirstValueScale() for part in parts})

    @property
    def uses_teacher_centres(self) -> bool:  # only the optional prediction part reads W_t
        return self.config.lambda_p != 0

    def forward(self, inputs: DistillInputs) -> dict[str, Tensor]:
        cfg = self.config
        student, teacher = self.pair(inputs)
        f_s = self.adaptor(student)
        feat = cosine_distance(f_s, teacher)
        pred = torch.zeros((), dtype=f_s.dtype, device=f_s.device)
        centres = self.centres(inputs, required=False) if cfg.lambda_p != 0 else None
        if centres is not None:
            z_s, z_t = cosine_logits(f_s, centres, cfg.scale), cosine_logits(teacher, centres, cfg.scale)
            pred = soft_kl(z_s, z_t, cfg.tau)
        bank = None if inputs.teacher_bank is None else as_float(inputs.teacher_bank).detach()
        relation = relation_distillation(f_s, teacher, cfg.tau_r, inputs.labels, cfg.identity_aware, bank,
                                         inputs.labels_bank)
        if cfg.balance:
            feat, pred, relation = (self.part_scales[k](v) for k, v in
                                    (("feat", feat), ("pred", pred), ("relation", relation)))
        instance = cfg.lambda_f * feat + cfg.lambda_p * pred  # = instance_distillation(f_s, teacher, z_s, z_t)
        return {
            "loss": cfg.alpha * instance + cfg.beta * relation,
            "instance": instance,
            "relation": relation,
            "instance_feat": feat,
            "instance_pred": pred,
        }
