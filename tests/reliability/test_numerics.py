"""Numerics at the edges: margin heads at theta = 0 and pi (float32/float64 on CPU, fp16 where it runs),
FaceBN on a zero-variance batch, distillation terms on identical and zero embeddings. No NaN, no inf, and
the values agree with hand computations where the edge case has a closed form.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from insightface_lr.losses.distiller import DistillDims, DistillInputs, build_distiller
from insightface_lr.losses.margin import MODES, combined_margin
from insightface_lr.losses.partial_fc import ShardedMarginClassifier
from insightface_lr.models.facebn import FaceBN
from insightface_lr.registry import LOSSES

F32_EPS = torch.finfo(torch.float32).eps
# cosines at and around the ends of [-1, 1], including the rounding overshoot of a normalised dot product
EDGE_COSINES = [1.0 + F32_EPS, 1.0, 1.0 - F32_EPS, 1.0 - 1e-4, 0.0, -1.0 + 1e-4, -1.0 + F32_EPS, -1.0,
                -1.0 - F32_EPS]
HEADS = {"arcface": (1.0, 0.5, 0.0), "cosface": (1.0, 0.0, 0.35), "combined": (1.0, 0.3, 0.2),
         "sphereface": (1.35, 0.0, 0.0)}


def _edge_batch(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N, 3]`` cosines whose target column 1 holds every edge value; labels all 1."""
    target = torch.tensor(EDGE_COSINES, dtype=torch.float64)
    cos = torch.stack([torch.full_like(target, 0.1), target, torch.full_like(target, -0.2)], dim=1)
    return cos.to(dtype), torch.ones(len(target), dtype=torch.long)


def _reference_target(c: float, m1: float, m2: float, m3: float, mode: str) -> float:
    """Hand statement of the target logit / s: cos(m1*theta + m2) - m3, continued past pi in exact mode."""
    theta = math.acos(max(-1.0, min(1.0, c)))
    if mode == "exact" and m1 * theta + m2 > math.pi:
        offset = m2 * math.sin(m2) if m1 == 1.0 else 1.0 + math.cos(min(math.pi, (math.pi - m2) / m1))
        return c - offset - m3
    return math.cos(m1 * theta + m2) - m3


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_margin_heads_at_theta_zero_and_pi(head: str, mode: str, dtype: torch.dtype) -> None:
    m1, m2, m3 = HEADS[head]
    cos, labels = _edge_batch(dtype)
    cos.requires_grad_(True)
    logits = combined_margin(cos, labels, s=64.0, m1=m1, m2=m2, m3=m3, mode=mode)
    loss = nn.functional.cross_entropy(logits.float(), labels)
    loss.backward()
    assert torch.isfinite(logits).all() and torch.isfinite(loss) and torch.isfinite(cos.grad).all()
    expected = torch.tensor([64.0 * _reference_target(float(c), m1, m2, m3, mode) for c in cos.detach()[:, 1]],
                            dtype=torch.float64)
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    # acos is ill-conditioned at +-1: within eps of the ends compare with the float-rounded input
    torch.testing.assert_close(logits[:, 1].detach().double(), expected, atol=64 * 3e-4 if dtype == torch.float32
                               else tol, rtol=0)
    torch.testing.assert_close(logits[:, [0, 2]].detach(), 64.0 * cos[:, [0, 2]].detach())  # others: s cos


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_margin_heads_in_half_precision(mode: str, dtype: torch.dtype) -> None:
    """fp16/bf16 cosines (as under autocast): computed in float32 inside, cast back; |s * cos| <= 64
    fits fp16, so nothing overflows, and the result equals the float32 one rounded to ``dtype``."""
    for m1, m2, m3 in HEADS.values():
        cos, labels = _edge_batch(dtype)
        half = combined_margin(cos, labels, 64.0, m1, m2, m3, mode=mode)
        full = combined_margin(cos.float(), labels, 64.0, m1, m2, m3, mode=mode)
        assert half.dtype == dtype and torch.isfinite(half).all()
        torch.testing.assert_close(half.float(), full.to(dtype).float(), atol=0, rtol=0)


@pytest.mark.parametrize("margin_list", list(HEADS.values()))
def test_classifier_with_embedding_on_and_opposite_a_centre(margin_list) -> None:
    """theta = 0 and pi reached through the real path (normalise, matmul, clamp, head, cross-entropy),
    plus an all-zero embedding (F.normalize of a zero vector): finite loss and gradients."""
    from insightface_lr.losses.margin import build_head_from_margin_list

    torch.manual_seed(0)
    classifier = ShardedMarginClassifier(8, 4, build_head_from_margin_list(margin_list, mode="exact"))
    centres = classifier.weight.detach()
    embeddings = torch.stack([centres[0] * 3.0, -centres[1] * 0.5, torch.zeros(8), centres[3] * 1e-20])
    embeddings.requires_grad_(True)
    loss = classifier(embeddings, torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(embeddings.grad).all() and torch.isfinite(classifier.weight.grad).all()


# ----- FaceBN with zero variance ------------------------------------------------------------------------
def _bn_net() -> nn.Module:
    torch.manual_seed(1)
    net = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.PReLU(4),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 6), nn.BatchNorm1d(6))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _run_facebn(mode: str, x: torch.Tensor, include_bn1d: bool) -> torch.Tensor:
    facebn = FaceBN(_bn_net(), mode=mode, include_bn1d=include_bn1d)
    if mode == "calibrate":
        facebn.calibrate([x, x])
    with torch.no_grad():
        return facebn(x)


@pytest.mark.parametrize("include_bn1d", [False, True])
@pytest.mark.parametrize("mode", ["batch", "online", "calibrate"])
def test_facebn_on_a_constant_batch_is_finite(mode: str, include_bn1d: bool) -> None:
    x = torch.full((4, 3, 8, 8), 0.7)  # every face and pixel identical: batch variance exactly 0
    out = _run_facebn(mode, x, include_bn1d)
    assert torch.isfinite(out).all()
    assert torch.equal(out, out[:1].expand_as(out))  # identical faces, identical embeddings


@pytest.mark.parametrize("mode", ["batch", "calibrate"])
def test_facebn_zero_variance_layer_outputs_its_beta(mode: str) -> None:
    """Hand computation: with var_test = 0 and x = mu_test, gamma * 0 / sqrt(0 + eps) + beta = beta."""
    bn = nn.BatchNorm2d(3).eval()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([2.0, -1.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.25, -3.0, 7.0]))
        bn.running_var.fill_(4.0)
    x = torch.full((2, 3, 1, 1), 5.0)  # one pixel per face, identical faces
    facebn = FaceBN(bn, mode=mode)
    if mode == "calibrate":
        facebn.calibrate([x])
        mean, var = next(iter(facebn.statistics().values()))
        assert torch.equal(var, torch.zeros(3)) and torch.equal(mean, torch.full((3,), 5.0))
    with torch.no_grad():
        out = facebn(x)
    # batch_norm's float32 mean of equal values may be off by an ulp, which sqrt(eps) amplifies ~300x
    torch.testing.assert_close(out, bn.bias.detach().view(1, 3, 1, 1).expand(2, 3, 1, 1), atol=1e-3, rtol=0)


def test_facebn_online_single_value_per_channel_keeps_variance() -> None:
    """One face of 1x1 pixels has no variance to estimate: the online bank must keep the source variance
    (an unbiased variance of one value would be NaN)."""
    net = nn.Sequential(nn.BatchNorm2d(3)).eval()
    facebn = FaceBN(net, mode="online", momentum=0.5)
    with torch.no_grad():
        out = facebn(torch.full((1, 3, 1, 1), 2.0))
    _, var = next(iter(facebn.statistics().values()))
    assert torch.isfinite(out).all() and torch.equal(var, torch.ones(3))


# ----- distillation terms on degenerate embeddings --------------------------------------------------------
B, D, C = 4, 8, 5
ZERO_AT_IDENTITY = {"aird", "bank", "feat", "kd", "rkd", "bridge"}  # terms that measure student-teacher disagreement


def _degenerate_cases() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(3)
    base = torch.randn(B, D)
    return {
        "identical": (base.clone(), base.clone()),
        "all_rows_equal": (base[:1].repeat(B, 1), base[:1].repeat(B, 1)),
        "zero_student": (torch.zeros(B, D), base.clone()),
        "zero_teacher": (base.clone(), torch.zeros(B, D)),
        "both_zero": (torch.zeros(B, D), torch.zeros(B, D)),
        "denormal": (base * 1e-39, base * 1e-39),
        "huge": (base * 1e18, base * 1e18),
    }


def _term_names() -> list[str]:
    return LOSSES.names()


@pytest.mark.parametrize("case", sorted(_degenerate_cases()))
@pytest.mark.parametrize("term", _term_names())
def test_distill_terms_on_degenerate_embeddings(term: str, case: str) -> None:
    student, teacher = _degenerate_cases()[case]
    torch.manual_seed(4)
    centres = nn.functional.normalize(torch.randn(C, D), dim=1)
    distiller = build_distiller(term, DistillDims(D, D, C))
    student = student.clone().requires_grad_(True)
    inputs = DistillInputs(student=student, teacher=teacher, labels=torch.tensor([0, 1, 2, 0]),
                           teacher_centres=centres, student_hr=student, teacher_memory=teacher)
    total, parts = distiller(inputs)
    total.backward()
    assert torch.isfinite(total), (total, parts)
    assert all(torch.isfinite(v).all() for v in parts.values()), parts
    assert torch.isfinite(student.grad).all()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in distiller.parameters())
    if case == "identical" and term in ZERO_AT_IDENTITY:
        assert float(total.detach()) == pytest.approx(0.0, abs=1e-5), parts


# ----- CUDA fp16 (runs where a GPU is present) --------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_autocast_fp16_edges() -> None:
    """Under CUDA autocast the classifier matmul runs in fp16; margins, FaceBN and distill terms stay finite."""
    from insightface_lr.losses.margin import build_head_from_margin_list

    device = torch.device("cuda")
    torch.manual_seed(0)
    for margin_list in HEADS.values():
        classifier = ShardedMarginClassifier(8, 4, build_head_from_margin_list(margin_list)).to(device)
        centres = classifier.weight.detach()
        emb = torch.stack([centres[0] * 3, -centres[1], torch.zeros(8, device=device), centres[3] * 1e-6])
        emb.requires_grad_(True)
        with torch.autocast("cuda", dtype=torch.float16):
            loss = classifier(emb.half(), torch.tensor([0, 1, 2, 3], device=device))
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(emb.grad).all()
    net = _bn_net().to(device)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        out = FaceBN(net, mode="batch")(torch.full((4, 3, 8, 8), 0.7, device=device))
    assert torch.isfinite(out).all()
    for term in _term_names():
        for student, teacher in _degenerate_cases().values():
            distiller = build_distiller(term, DistillDims(D, D, C)).to(device)
            s = student.to(device).half().requires_grad_(True)
            inputs = DistillInputs(student=s, teacher=teacher.to(device).half(), labels=torch.tensor(
                [0, 1, 2, 0], device=device), teacher_centres=torch.eye(C, D, device=device), student_hr=s,
                teacher_memory=teacher.to(device).half())
            with torch.autocast("cuda", dtype=torch.float16):
                total, _ = distiller(inputs)
            total.backward()
            assert torch.isfinite(total) and torch.isfinite(s.grad).all(), term
