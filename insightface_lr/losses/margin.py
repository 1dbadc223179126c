"""Additive-angular / cosine margin heads: ArcFace, CosFace and the combined margin of arcface_torch.

For cosine ``c = cos(theta)`` between a face embedding and a class centre, the target class gets
``s * (cos(m1 * theta + m2) - m3)`` and every other class ``s * cos(theta)``:

- SphereFace: m1 (Liu et al., "SphereFace", CVPR 2017),
- ArcFace: m2 (Deng et al., "ArcFace: Additive Angular Margin Loss", CVPR 2019, arXiv 1801.07698),
- CosFace: m3 (Wang et al., "CosFace: Large Margin Cosine Loss", CVPR 2018, arXiv 1801.09414).

Labels are *local* class indices; ``-1`` marks a row whose class lives on another PartialFC shard,
so that row gets no margin here (its target logit is added on the owning rank).

Two gradient modes:

- ``"exact"``: autograd through ``cos(m1 * acos(c) + m2)``. Past ``m1 * theta + m2 > pi`` the cosine
  would turn back up (a *worse* face would get a *larger* logit), so the target logit continues
  linearly in ``c`` instead: ``c - m2 * sin(m2)`` for m1 = 1 (the fallback of insightface's ArcFace),
  ``c - 1 - cos(theta0)`` with ``theta0 = (pi - m2) / m1`` otherwise (continuous at theta0).
- ``"insightface"``: what arcface_torch's ``CombinedMarginLoss`` does: the angular margin is written
  into the logits under ``torch.no_grad()``, so ``d logit / d c = s`` as if no margin were applied
  (a straight-through estimator), with no fallback past pi (the reference has none); the CosFace
  part ``- m3`` is applied with gradient, as there. Unlike the reference, m2 and m3 may both be set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import register_head

MODES = ("exact", "insightface")
Margin = float | Tensor

__all__ = [
    "MODES",
    "ArcFaceHead",
    "CombinedMarginHead",
    "CosFaceHead",
    "MarginHead",
    "build_head_from_margin_list",
    "combined_margin",
]


def combined_margin(
    cosine: Tensor,
    labels: Tensor,
    s: float = 64.0,
    m1: float = 1.0,
    m2: Margin = 0.5,
    m3: Margin = 0.0,
    mode: str = "exact",
    easy_margin: bool = False,
    eps: float = 1e-7,
) -> Tensor:
    """Scaled margin logits ``[B, C]`` from cosines ``[B, C]`` and labels ``[B]`` (int64, -1 = no margin).

    ``m2`` and ``m3`` are floats or tensors ``[B]`` (per-sample margins, e.g. CCFace's adaptive
    penalty). ``easy_margin`` keeps ``c`` as the target logit wherever ``c <= 0``. The margin is
    computed in float32 (float64 kept) and the result cast back to ``cosine.dtype``. In ``exact`` mode
    the gradient goes through ``acos`` of the cosine clamped to ``[-1 + eps, 1 - eps]``, so it stays
    finite at theta = 0 and pi (zero within eps of +-1); the value uses the unclamped angle.
    """
    if mode not in MODES:
        raise ConfigError(f"margin mode must be one of {MODES}, got {mode!r}")
    if cosine.dim() != 2 or labels.shape != cosine.shape[:1]:
        raise ValueError(f"expected cosine [B, C] and labels [B], got {tuple(cosine.shape)} and "
                         f"{tuple(labels.shape)}")
    work = cosine if cosine.dtype == torch.float64 else cosine.float()
    valid = labels != -1
    index = labels.long().clamp(min=0).unsqueeze(1)  # [B, 1]; -1 rows read column 0, then write it back
    c_t = work.gather(1, index).squeeze(1)  # [B] target cosines
    m2_t, m3_t = _per_row(m2, work, "m2"), _per_row(m3, work, "m3")
    if mode == "exact":
        target = _angular(c_t, m1, m2_t, eps, fallback=True) - m3_t
    else:
        with torch.no_grad():  # no gradient through acos here, so no eps is needed (the reference has none)
            angular = _angular(c_t, m1, m2_t, 0.0, fallback=False)
        # straight-through: the value is the margin logit, the gradient w.r.t. c is the identity
        target = c_t + (angular - c_t).detach() - m3_t
    if easy_margin:
        target = torch.where(c_t > 0, target, c_t)
    target = torch.where(valid, target, c_t)
    logits = work.scatter(1, index, target.unsqueeze(1))
    return (logits * s).to(cosine.dtype)


def _per_row(m: Margin, like: Tensor, name: str) -> Tensor:
    """A margin as a tensor broadcastable to ``[B]`` on ``like``'s device and dtype."""
    t = torch.as_tensor(m, dtype=like.dtype, device=like.device)
    if t.dim() > 1 or (t.dim() == 1 and t.shape[0] != like.shape[0]):
        raise ValueError(f"{name} must be a float or a tensor [B={like.shape[0]}], got {tuple(t.shape)}")
    return t


def _angular(c: Tensor, m1: float, m2: Tensor, eps: float, fallback: bool) -> Tensor:
    """``cos(m1 * acos(c) + m2)`` ``[B]``, continued monotonically past pi when ``fallback``."""
    # value from the exact angle, gradient from the eps-clamped one (d acos / dc is infinite at +-1)
    theta = torch.acos(c.clamp(-1.0 + eps, 1.0 - eps))
    if eps > 0:
        theta = theta + (torch.acos(c.detach().clamp(-1.0, 1.0)) - theta.detach())
    phi = torch.cos(m1 * theta + m2)
    if not fallback:
        return phi
    if m1 == 1.0:
        offset = m2 * torch.sin(m2)  # insightface's ArcFace: c - sin(pi - m) * m
    else:
        theta0 = ((math.pi - m2) / m1).clamp(max=math.pi)
        offset = 1.0 + torch.cos(theta0)  # equals -1 at theta0: continuous, then falls with c
    # both branches are finite (clamped acos), so torch.where cannot leak a NaN gradient
    return torch.where(m1 * theta + m2 > math.pi, c - offset, phi)


class MarginHead(nn.Module):
    """``forward(cosine [B, C], labels [B]) -> s * margin logits [B, C]``; holds no parameters."""

    def __init__(
        self,
        s: float = 64.0,
        m1: float = 1.0,
        m2: float = 0.5,
        m3: float = 0.0,
        mode: str = "exact",
        easy_margin: bool = False,
    ) -> None:
        super().__init__()
        _validate(s, (m1, m2, m3), mode)
        self.s, self.m1, self.m2, self.m3 = float(s), float(m1), float(m2), float(m3)
        self.mode, self.easy_margin = mode, bool(easy_margin)

    def forward(self, cosine: Tensor, labels: Tensor) -> Tensor:
        return combined_margin(cosine, labels, self.s, self.m1, self.m2, self.m3, self.mode, self.easy_margin)

    @property
    def margin_list(self) -> tuple[float, float, float]:
        return (self.m1, self.m2, self.m3)

    def extra_repr(self) -> str:
        return (f"s={self.s}, margin_list={self.margin_list}, mode={self.mode!r}"
                f", easy_margin={self.easy_margin}")


@register_head("arcface")
class ArcFaceHead(MarginHead):
    """ArcFace: target ``s * cos(theta + m)``, defaults s = 64, m = 0.5."""

    def __init__(
        self, s: float = 64.0, m: float = 0.5, mode: str = "exact", easy_margin: bool = False
    ) -> None:
        super().__init__(s, 1.0, m, 0.0, mode, easy_margin)


@register_head("cosface")
class CosFaceHead(MarginHead):
    """CosFace: target ``s * (cos(theta) - m)``, defaults s = 64, m = 0.4."""

    def __init__(
        self, s: float = 64.0, m: float = 0.4, mode: str = "exact", easy_margin: bool = False
    ) -> None:
        super().__init__(s, 1.0, 0.0, m, mode, easy_margin)


@register_head("combined")
class CombinedMarginHead(MarginHead):
    """arcface_torch's ``margin_list = (m1, m2, m3)``: target ``s * (cos(m1 * theta + m2) - m3)``."""

    def __init__(
        self,
        margin_list: Sequence[float] = (1.0, 0.5, 0.0),
        s: float = 64.0,
        mode: str = "exact",
        easy_margin: bool = False,
    ) -> None:
        m1, m2, m3 = _unpack_margin_list(margin_list)
        super().__init__(s, m1, m2, m3, mode, easy_margin)


def build_head_from_margin_list(
    margin_list: Sequence[float], s: float = 64.0, mode: str = "exact", easy_margin: bool = False
) -> MarginHead:
    """The head for an arcface_torch config's ``margin_list`` (e.g. ``(1.0, 0.5, 0.0)`` = ArcFace)."""
    return CombinedMarginHead(margin_list, s=s, mode=mode, easy_margin=easy_margin)


def _unpack_margin_list(margin_list: Sequence[float]) -> tuple[float, float, float]:
    try:
        m1, m2, m3 = (float(m) for m in margin_list)
    except (TypeError, ValueError):
        raise ConfigError(
            f"config field `margin_list` must be three numbers (m1, m2, m3), e.g. (1.0, 0.5, 0.0); "
            f"got {margin_list!r}"
        ) from None
    return m1, m2, m3


def _validate(s: float, margins: tuple[float, float, float], mode: str) -> None:
    m1, m2, m3 = margins
    if mode not in MODES:
        raise ConfigError(f"margin head field `mode` must be one of {MODES}, got {mode!r}")
    if not (math.isfinite(s) and s > 0):
        raise ConfigError(f"margin head field `s` (scale) must be a positive number, got {s!r}")
    if not (math.isfinite(m1) and m1 > 0):
        raise ConfigError(f"config field `margin_list`: m1 must be > 0, got {m1!r}")
    # beyond pi/2 the m1 = 1 fallback is no longer below the margin curve (not monotone)
    if not (0.0 <= m2 <= math.pi / 2):
        raise ConfigError(f"config field `margin_list`: m2 (angular margin) must be in [0, pi/2], got {m2!r}")
    if not math.isfinite(m3):
        raise ConfigError(f"config field `margin_list`: m3 (cosine margin) must be finite, got {m3!r}")
