"""CCFace: classification consistency on the teacher's class centres.

Ebrahimi Saadabadi et al., "CCFace: Classification Consistency for Low-Resolution Face
Recognition", IJCB 2023, arXiv 2308.09230. Project's reading (METHODS.md):

- the LR student feature is classified by the frozen teacher classifier W_t with an additive
  angular margin, ``s * cos(theta_y + m_i)`` for the target, ``s * cos(theta_j)`` for the others;
- adaptive penalty: ``m_i = m * clip(cos(W^_t_y, f^_t_i), 0, 1)`` (teacher confidence on the HR face,
  rule "teacher", default) or AdaFace-style from the student feature norm (rule "norm"):
  ``h_i = clip(h * (||f_s_i|| - mean_B) / (std_B + eps), -1, 1)``, ``m_i = m * (1 + h_i) / 2`` so low-norm
  (hard, very low resolution) faces get a smaller margin; "fixed" gives ``m_i = m``;
- asymmetric cross-resolution term (SimSiam style): ``L_acr = mean_i 2 - 2 cos(h(f_s_i), sg(f_t_i))``
  with a 2-layer BN predictor h;
- total ``lambda_cc * L_cc + lambda_acr * L_acr``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import register_distill_term
from .distiller import DistillDims, DistillInputs, DistillTerm, check_positive, make_adaptor
from .margin import combined_margin

MARGIN_RULES = ("teacher", "norm", "fixed")


def teacher_margin(f_t: Tensor, centres: Tensor, labels: Tensor, m: float) -> Tensor:
    """``m * clip(cos(W^_t_y, f^_t), 0, 1)`` per sample: [B]; label -1 gets margin 0."""
    valid = labels >= 0
    w_y = centres[labels.clamp_min(0)]  # [B, Dt]
    conf = F.cosine_similarity(f_t, w_y, dim=1, eps=1e-12).clamp(0.0, 1.0)
    return torch.where(valid, m * conf, torch.zeros_like(conf))


def norm_margin(f_s: Tensor, m: float, h: float = 0.333, eps: float = 1e-3) -> Tensor:
    """AdaFace-style margin from the feature norm normalised by batch statistics: [B, D] -> [B].

    ``hat = clip(h * (||f|| - mean_B) / (std_B + eps), -1, 1)`` (Kim et al., AdaFace, CVPR 2022, with
    population statistics of the current batch instead of an EMA); ``m_i = m * (1 + hat) / 2``.
    The norms are detached, as in AdaFace: the margin is a per-sample constant. A batch of one gets m/2.
    """
    norms = f_s.detach().norm(dim=1)
    std = norms.std(unbiased=False) if norms.numel() > 1 else norms.new_zeros(())
    hat = (h * (norms - norms.mean()) / (std + eps)).clamp(-1.0, 1.0)
    return m * (1.0 + hat) / 2.0


class Predictor(nn.Module):
    """SimSiam predictor ``Linear -> BN -> ReLU -> Linear`` (dim -> hidden -> dim).

    A batch of one uses the running BN statistics instead of failing like ``nn.BatchNorm1d``.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=False)
        self.bn = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:  # [B, dim] -> [B, dim]
        z = self.fc1(x)
        batch_stats = self.training and z.shape[0] > 1
        bn = self.bn
        z = F.batch_norm(z, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                         batch_stats, bn.momentum, bn.eps)
        return self.fc2(F.relu(z))


def acr_loss(p_s: Tensor, f_t: Tensor) -> Tensor:
    """``mean_i 2 - 2 cos(p_s_i, sg(f_t_i))``: [B, D] x [B, D] -> scalar."""
    return (2.0 - 2.0 * F.cosine_similarity(p_s, f_t.detach(), dim=1, eps=1e-12)).mean()


@dataclass(frozen=True)
class CCFaceConfig:
    s: float = 64.0  # logit scale
    m: float = 0.5  # base additive angular margin
    margin_rule: str = "teacher"  # "teacher" (HR confidence) | "norm" (AdaFace-style) | "fixed"
    norm_h: float = 0.333  # AdaFace concentration h of the "norm" rule
    margin_mode: str = "exact"  # passed to combined_margin
    lambda_cc: float = 1.0  # weight of the classification-consistency term
    lambda_acr: float = 1.0  # weight of the asymmetric cross-resolution term
    predictor_hidden: int = 256  # hidden width of the predictor h

    def __post_init__(self) -> None:
        check_positive("ccface", s=self.s, norm_h=self.norm_h, predictor_hidden=self.predictor_hidden)
        if self.margin_rule not in MARGIN_RULES:
            raise ConfigError(f"distillation term 'ccface' config: margin_rule must be one of {MARGIN_RULES}")
        if self.m < 0:
            raise ConfigError(f"distillation term 'ccface' config: m must be >= 0, got {self.m}")


@register_distill_term("ccface")
class CCFaceLoss(DistillTerm):
    """Classification consistency on W_t + asymmetric cross-resolution term."""

    name = "ccface"
    config_class = CCFaceConfig
    requires_teacher_centres = True
    uses_teacher_centres = True

    def __init__(self, dims: DistillDims, **fields: object) -> None:
        super().__init__(dims, **fields)
        self.adaptor = make_adaptor(dims.student_dim, dims.teacher_dim)
        self.predictor = Predictor(dims.teacher_dim, self.config.predictor_hidden)

    def margins(self, f_s: Tensor, f_t: Tensor, centres: Tensor, labels: Tensor) -> Tensor:
        cfg = self.config
        if cfg.margin_rule == "teacher":
            return teacher_margin(f_t, centres, labels, cfg.m)
        if cfg.margin_rule == "norm":
            return norm_margin(f_s, cfg.m, cfg.norm_h)
        return torch.full_like(f_s[:, 0], cfg.m)

    def forward(self, inputs: DistillInputs) -> dict[str, Tensor]:
        cfg = self.config
        student, teacher = self.pair(inputs)
        centres = self.centres(inputs).to(student.dtype)
        labels = inputs.labels
        f_s = self.adaptor(student)
        m_i = self.margins(student, teacher, centres, labels).detach()
        cosine = F.normalize(f_s, dim=1) @ F.normalize(centres, dim=1).T
        logits = combined_margin(cosine, labels, s=cfg.s, m1=1.0, m2=m_i, m3=0.0, mode=cfg.margin_mode)
        cc = F.cross_entropy(logits, labels, ignore_index=-1)
        acr = acr_loss(self.predictor(f_s), teacher)
        return {
            "loss": cfg.lambda_cc * cc + cfg.lambda_acr * acr,
            "cc": cc,
            "acr": acr,
            "margin_mean": m_i.mean(),
        }
