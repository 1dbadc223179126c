"""Margin heads: hand-computed values, gradcheck, edge angles, fp16, and parity with arcface_torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from insightface_lr.errors import ConfigError
from insightface_lr.losses.margin import (
    ArcFaceHead,
    CombinedMarginHead,
    CosFaceHead,
    build_head_from_margin_list,
    combined_margin,
)
from insightface_lr.registry import HEADS

# row 0: plain; row 1: theta + 0.5 > pi (ArcFace fallback); row 2: another shard's class (-1)
COS = [[0.5, 0.1, -0.2, 0.3], [0.2, -0.4, -0.95, 0.6], [0.7, 0.0, 0.1, -0.3]]
LABELS = [0, 2, -1]


def _hand_arcface(c: float, m: float = 0.5) -> float:
    theta = math.acos(c)
    return math.cos(theta + m) if theta + m <= math.pi else c - m * math.sin(m)


def _hand_ce(row: list[float], label: int) -> float:
    return -row[label] + math.log(sum(math.exp(z) for z in row))


def test_arcface_and_cosface_equal_hand_computation() -> None:
    cosine, labels = torch.tensor(COS, dtype=torch.float64), torch.tensor(LABELS)
    arc = ArcFaceHead(s=64.0, m=0.5)(cosine, labels)
    cos = CosFaceHead(s=64.0, m=0.4)(cosine, labels)
    for i, (row, y) in enumerate(zip(COS, LABELS, strict=True)):
        want_arc = [64 * (_hand_arcface(c) if j == y else c) for j, c in enumerate(row)]
        want_cos = [64 * (c - 0.4 if j == y else c) for j, c in enumerate(row)]
        np.testing.assert_allclose(arc[i].numpy(), want_arc, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(cos[i].numpy(), want_cos, rtol=1e-12, atol=1e-12)
    # the fallback branch was really taken on row 1: -0.95 - 0.5 sin 0.5
    assert arc[1, 2].item() == pytest.approx(64 * (-0.95 - 0.5 * math.sin(0.5)), abs=1e-12)
    for logits in (arc, cos):
        ce = F.cross_entropy(logits[:2], labels[:2], reduction="none")
        want = [_hand_ce(logits[i].tolist(), LABELS[i]) for i in range(2)]
        np.testing.assert_allclose(ce.numpy(), want, rtol=1e-12)


def test_combined_margin_list_values() -> None:
    cosine, labels = torch.tensor(COS, dtype=torch.float64), torch.tensor(LABELS)
    m1, m2, m3, s = 0.9, 0.3, 0.2, 30.0
    out = build_head_from_margin_list((m1, m2, m3), s=s)(cosine, labels)
    assert out[0, 0].item() == pytest.approx(s * (math.cos(m1 * math.acos(0.5) + m2) - m3), abs=1e-12)
    assert out[1, 2].item() == pytest.approx(s * (math.cos(m1 * math.acos(-0.95) + m2) - m3), abs=1e-12)
    np.testing.assert_allclose(out[2].numpy(), [s * c for c in COS[2]], atol=1e-12)


def test_gradcheck_exact_mode_including_per_sample_margins() -> None:
    gen = torch.Generator().manual_seed(0)
    cosine = (torch.rand(5, 6, generator=gen, dtype=torch.float64) * 1.6 - 0.8).requires_grad_()
    m2 = (torch.rand(5, generator=gen, dtype=torch.float64) * 0.5).requires_grad_()
    labels = torch.tensor([0, 3, -1, 5, 3])
    assert torch.autograd.gradcheck(lambda c, m: combined_margin(c, labels, 8.0, 1.0, m, 0.1), (cosine, m2))
    assert torch.autograd.gradcheck(lambda c: combined_margin(c, labels, 8.0, 0.8, 0.2, 0.3), (cosine,))


def test_exact_gradient_matches_derivative_by_hand() -> None:
    cosine = torch.tensor([[0.3, -0.1]], dtype=torch.float64, requires_grad=True)
    combined_margin(cosine, torch.tensor([0]), s=2.0, m2=0.5).sum().backward()
    # d/dc cos(acos(c) + m) = sin(acos(c) + m) / sqrt(1 - c^2)
    want = 2.0 * math.sin(math.acos(0.3) + 0.5) / math.sqrt(1 - 0.09)
    np.testing.assert_allclose(cosine.grad.numpy(), [[want, 2.0]], rtol=1e-12)


@pytest.mark.parametrize("margins", [(1.0, 0.5, 0.0), (1.0, 0.5, 0.2), (1.35, 0.0, 0.0), (0.9, 0.6, 0.1)])
def test_exact_target_logit_is_monotone_in_cosine(margins: tuple[float, float, float]) -> None:
    c = torch.linspace(-1.0, 1.0, 4001, dtype=torch.float64).unsqueeze(1)
    target = combined_margin(c, torch.zeros(len(c), dtype=torch.long), 1.0, *margins)[:, 0]
    assert torch.isfinite(target).all()
    assert (target.diff() >= -1e-12).all()
    assert (target <= c[:, 0] + 1e-12).all()  # a margin never helps the target class


def _reference_arcface_torch(cosine: torch.Tensor, labels: torch.Tensor, s: float, m2: float, m3: float):
    """Direct re-statement of arcface_torch CombinedMarginLoss.forward (m1 = 1)."""
    logits = cosine.clone()  # PartialFC hands it a fresh tensor
    index = torch.where(labels != -1)[0]
    target_logit = logits[index, labels[index].view(-1)]
    if m3 == 0.0:
        with torch.no_grad():
            target_logit.arccos_()
            logits.arccos_()
            logits[index, labels[index].view(-1)] = target_logit + m2
            logits.cos_()
    else:
        logits[index, labels[index].view(-1)] = target_logit - m3
    return logits * s


@pytest.mark.parametrize(("m2", "m3"), [(0.5, 0.0), (0.0, 0.4)])
def test_insightface_mode_matches_arcface_torch(m2: float, m3: float) -> None:
    gen = torch.Generator().manual_seed(1)
    base = torch.rand(7, 9, generator=gen, dtype=torch.float64) * 2 - 1
    base[0, 4] = -0.97  # theta + m > pi: the reference has no fallback, neither does this mode
    base[2, 0], base[6, 2] = 1.0, -1.0  # theta = 0 and pi exactly
    labels = torch.tensor([4, -1, 0, 8, 8, -1, 2])
    upstream = torch.randn(7, 9, generator=gen, dtype=torch.float64)
    a, b = base.clone().requires_grad_(), base.clone().requires_grad_()
    ours = combined_margin(a, labels, 64.0, 1.0, m2, m3, mode="insightface")
    ref = _reference_arcface_torch(b, labels, 64.0, m2, m3)
    (ours * upstream).sum().backward()
    (ref * upstream).sum().backward()
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(a.grad, 64.0 * upstream)  # straight through, margin or not


def test_exact_and_insightface_agree_on_values_but_not_gradients() -> None:
    cosine = torch.tensor([[0.4, 0.1], [0.2, 0.9]], requires_grad=True)
    labels = torch.tensor([0, 1])
    exact = combined_margin(cosine, labels, mode="exact")
    st = combined_margin(cosine, labels, mode="insightface")
    torch.testing.assert_close(exact, st)
    g_exact, = torch.autograd.grad(exact.sum(), cosine)
    g_st, = torch.autograd.grad(st.sum(), cosine)
    torch.testing.assert_close(g_st, torch.full_like(g_st, 64.0))
    assert g_exact[0, 0] > 64.0 and g_exact[0, 1] == 64.0


@pytest.mark.parametrize("mode", ["exact", "insightface"])
def test_edges_are_finite(mode: str) -> None:
    near = 1 - 1e-7
    cosine = torch.tensor([[1.0, -1.0, near, -near, 0.0]] * 4, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3])  # targets at theta = 0, pi, ~0, ~pi
    out = combined_margin(cosine, labels, mode=mode)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(cosine.grad).all()
    assert out[0, 0].item() == pytest.approx(64 * math.cos(0.5), abs=1e-4)  # theta = 0 -> cos(m)
    if mode == "exact":  # theta = pi lies on the linear fallback: d logit / d c = s
        assert out[1, 1].item() == pytest.approx(64 * (-1 - 0.5 * math.sin(0.5)), abs=1e-4)
        assert cosine.grad[1, 1].item() == pytest.approx(64.0)
    else:  # arcface_torch writes cos(pi + m) there
        assert out[1, 1].item() == pytest.approx(64 * math.cos(math.pi + 0.5), abs=1e-4)
    # batch of one, all labels equal, all labels -1
    one = combined_margin(cosine[:1].detach(), torch.tensor([2]), mode=mode)
    assert one.shape == (1, 5) and torch.isfinite(one).all()
    same = combined_margin(cosine.detach(), torch.full((4,), 4), mode=mode)
    torch.testing.assert_close(same[:, 4], torch.full((4,), 64 * math.cos(math.pi / 2 + 0.5)))
    none = combined_margin(cosine.detach(), torch.full((4,), -1), mode=mode)
    torch.testing.assert_close(none, 64 * cosine.detach())


def test_fp16_input_gives_finite_fp16_output() -> None:
    cosine = torch.tensor([[1.0, -1.0, 0.3], [0.999, -0.999, 0.0]], dtype=torch.float16)
    out = combined_margin(cosine, torch.tensor([1, 0]))
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    ref = combined_margin(cosine.double(), torch.tensor([1, 0]))
    torch.testing.assert_close(out.double(), ref, rtol=1e-3, atol=0.1)


def test_per_sample_margin_equals_rowwise_scalar_margin() -> None:
    cosine = torch.tensor(COS, dtype=torch.float64)
    labels = torch.tensor([0, 2, 1])
    m2 = torch.tensor([0.1, 0.5, 0.0], dtype=torch.float64)
    out = combined_margin(cosine, labels, m2=m2, m3=torch.tensor([0.0, 0.1, 0.2], dtype=torch.float64))
    for i, (mi, m3i) in enumerate(zip(m2.tolist(), [0.0, 0.1, 0.2], strict=True)):
        row = combined_margin(cosine[i : i + 1], labels[i : i + 1], m2=mi, m3=m3i)
        torch.testing.assert_close(out[i : i + 1], row)
    with pytest.raises(ValueError, match="m2"):
        combined_margin(cosine, labels, m2=torch.zeros(2))


def test_easy_margin_keeps_negative_cosines() -> None:
    cosine = torch.tensor([[0.5, 0.0], [-0.5, 0.0]], dtype=torch.float64)
    out = combined_margin(cosine, torch.tensor([0, 0]), s=1.0, easy_margin=True)
    assert out[0, 0].item() == pytest.approx(math.cos(math.acos(0.5) + 0.5))
    assert out[1, 0].item() == -0.5


def test_registered_heads_and_margin_list() -> None:
    assert {"arcface", "cosface", "combined"} <= set(HEADS.names())
    cosine, labels = torch.tensor(COS), torch.tensor(LABELS)
    torch.testing.assert_close(HEADS.build("arcface")(cosine, labels),
                               build_head_from_margin_list((1.0, 0.5, 0.0))(cosine, labels))
    torch.testing.assert_close(HEADS.build("cosface", m=0.4)(cosine, labels),
                               CombinedMarginHead(margin_list=[1.0, 0.0, 0.4])(cosine, labels))
    head = build_head_from_margin_list((1.0, 0.5, 0.0), s=32.0, mode="insightface")
    assert head.margin_list == (1.0, 0.5, 0.0) and head.s == 32.0 and "insightface" in repr(head)
    assert not list(head.parameters())


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"margin_list": (1.0, 0.5)}, "margin_list"),
        ({"margin_list": "abc"}, "margin_list"),
        ({"margin_list": (0.0, 0.5, 0.0)}, "m1"),
        ({"margin_list": (1.0, 2.0, 0.0)}, "m2"),
        ({"s": -1.0}, "`s`"),
        ({"mode": "fast"}, "mode"),
    ],
)
def test_bad_config_raises_config_error(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        CombinedMarginHead(**kwargs)


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="labels"):
        combined_margin(torch.zeros(3, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ConfigError, match="mode"):
        combined_margin(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long), mode="nope")
