"""CCFace: classification consistency with adaptive margin + asymmetric cross-resolution term."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from insightface_lr.errors import ConfigError
from insightface_lr.losses.ccface import CCFaceLoss, Predictor, norm_margin, teacher_margin
from insightface_lr.losses.distiller import DistillDims, DistillInputs


def np_unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def np_predictor(x: np.ndarray, pred: Predictor) -> np.ndarray:
    """Linear -> BN (batch statistics, biased variance) -> ReLU -> Linear, restated in numpy."""
    w1, w2, b2 = (
        p.detach().numpy().astype(np.float64) for p in (pred.fc1.weight, pred.fc2.weight, pred.fc2.bias)
    )
    gamma, beta = pred.bn.weight.detach().numpy(), pred.bn.bias.detach().numpy()
    z = x @ w1.T
    z = (z - z.mean(0)) / np.sqrt(z.var(0) + pred.bn.eps) * gamma + beta
    return np.maximum(z, 0) @ w2.T + b2


def np_ccface(fs, ft, w, y, s, m, lambda_cc, lambda_acr, pred) -> tuple[float, float, np.ndarray]:
    cos = np_unit(fs) @ np_unit(w).T  # [B, C]
    m_i = m * np.clip(np.sum(np_unit(ft) * np_unit(w[y]), axis=1), 0, 1)
    rows = np.arange(len(y))
    theta = np.arccos(cos[rows, y])
    assert np.all(theta + m_i < np.pi)  # the example stays on the plain cos(theta + m) branch
    logits = s * cos
    logits[rows, y] = s * np.cos(theta + m_i)
    log_prob = logits - logits.max(1, keepdims=True)
    log_prob = log_prob - np.log(np.exp(log_prob).sum(1, keepdims=True))
    cc = -np.mean(log_prob[rows, y])
    p = np_predictor(fs, pred)
    acr = np.mean(2 - 2 * np.sum(np_unit(p) * np_unit(ft), axis=1))
    return lambda_cc * cc + lambda_acr * acr, cc, m_i


@pytest.fixture
def sample() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 4))
    y = np.array([0, 3, 3, 1])
    return {
        "w": w,
        "y": y,
        "fs": w[y] + 0.8 * rng.normal(size=(4, 4)),
        # the third teacher face points away from its centre: cosine < 0, margin clipped to 0
        "ft": w[y] * np.array([[1], [1], [-1], [1]]) + 0.5 * rng.normal(size=(4, 4)),
    }


def make_inputs(sample, dtype=torch.float64, requires_grad=False) -> DistillInputs:
    fs = torch.tensor(sample["fs"], dtype=dtype, requires_grad=requires_grad)
    return DistillInputs(
        fs,
        torch.tensor(sample["ft"], dtype=dtype),
        torch.tensor(sample["y"]),
        teacher_centres=torch.tensor(sample["w"], dtype=dtype),
    )


def test_matches_numpy(sample) -> None:
    term = CCFaceLoss(DistillDims(4, 4, 5), s=8.0, m=0.4, lambda_acr=0.5, predictor_hidden=6).double()
    out = term(make_inputs(sample))
    loss, cc, m_i = np_ccface(
        sample["fs"], sample["ft"], sample["w"], sample["y"], 8.0, 0.4, 1.0, 0.5, term.predictor
    )
    assert out["loss"].item() == pytest.approx(loss, rel=1e-9)
    assert out["cc"].item() == pytest.approx(cc, rel=1e-9)
    assert out["margin_mean"].item() == pytest.approx(m_i.mean(), rel=1e-9)
    assert (m_i == 0).any() and (m_i > 0).any()  # the example exercises the clip at 0


def test_teacher_margin_by_hand() -> None:
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    f_t = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, -1.0], [5.0, 5.0]])
    labels = torch.tensor([0, 1, 1, -1])
    # cos = 1, 1/sqrt(2), -1 (clipped to 0); label -1 -> 0
    want = torch.tensor([0.5, 0.5 / 2**0.5, 0.0, 0.0])
    assert torch.allclose(teacher_margin(f_t, w, labels, 0.5), want)


def test_norm_margin_by_hand() -> None:
    f = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])  # norms 1, 2, 3: mean 2, std sqrt(2/3)
    hat = 0.333 / ((2 / 3) ** 0.5 + 1e-3)
    assert torch.allclose(norm_margin(f, 0.5), 0.25 * torch.tensor([1 - hat, 1.0, 1 + hat]))
    # one outlier among 16: z = sqrt(15), h * z > 1 -> clipped, it gets the full margin m
    f = torch.ones(16, 2)
    f[0] = 30.0
    m_i = norm_margin(f, 0.5)
    assert m_i[0].item() == pytest.approx(0.5) and m_i[1:].max() < 0.25
    assert norm_margin(torch.randn(1, 4), 0.5).item() == pytest.approx(0.25)  # batch of one: m / 2


@pytest.mark.parametrize("rule", ["teacher", "fixed"])
def test_gradcheck(sample, rule: str) -> None:
    term = CCFaceLoss(DistillDims(4, 3, 5), s=4.0, margin_rule=rule, predictor_hidden=5).double()
    inputs = make_inputs(sample)
    ft, w = inputs.teacher[:, :3], inputs.teacher_centres[:, :3]
    assert torch.autograd.gradcheck(
        lambda a: term(DistillInputs(a, ft, inputs.labels, w))["loss"],
        (inputs.student.clone().requires_grad_(True),),
    )


def test_gradcheck_norm_rule(sample) -> None:
    # the norm rule's margin depends on the (detached) student norm, so check the gradient w.r.t. the
    # adaptor and predictor weights, which the margin does not depend on
    term = CCFaceLoss(DistillDims(4, 3, 5), s=4.0, margin_rule="norm", predictor_hidden=5).double()
    inputs = make_inputs(sample)
    inputs = DistillInputs(
        inputs.student, inputs.teacher[:, :3], inputs.labels, inputs.teacher_centres[:, :3]
    )
    names = ("adaptor.weight", "predictor.fc1.weight")
    params = tuple(dict(term.named_parameters())[n].detach().clone().requires_grad_(True) for n in names)
    call = lambda *p: torch.func.functional_call(term, dict(zip(names, p, strict=True)), (inputs,))["loss"]
    assert torch.autograd.gradcheck(call, params)


def test_missing_teacher_centres_is_config_error(sample) -> None:
    inputs = make_inputs(sample)
    inputs.teacher_centres = None
    with pytest.raises(ConfigError, match="ccface.*needs teacher_centres"):
        CCFaceLoss(DistillDims(4, 4, 5)).double()(inputs)
    assert CCFaceLoss.requires_teacher_centres


def test_batch_of_one_and_one_identity() -> None:
    term = CCFaceLoss(DistillDims(8, 8, 3))
    w = torch.randn(3, 8)
    fs = torch.randn(1, 8, requires_grad=True)
    out = term(DistillInputs(fs, torch.randn(1, 8), torch.tensor([1]), w))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and torch.isfinite(fs.grad).all()
    fs = torch.randn(6, 8, requires_grad=True)
    out = term(DistillInputs(fs, torch.randn(6, 8), torch.zeros(6, dtype=torch.long), w))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and torch.isfinite(fs.grad).all()


def test_ignored_labels_do_not_count(sample) -> None:
    term = CCFaceLoss(DistillDims(4, 4, 5), lambda_acr=0.0).double()
    full = make_inputs(sample)
    masked = make_inputs(sample)
    masked.labels = torch.tensor([0, 3, -1, 1])
    kept = [0, 1, 3]
    sub = DistillInputs(full.student[kept], full.teacher[kept], full.labels[kept], full.teacher_centres)
    assert term(masked)["cc"].item() == pytest.approx(term(sub)["cc"].item(), rel=1e-12)


def test_margin_penalises_target(sample) -> None:
    # a larger margin lowers the target logit, so the classification loss grows
    inputs = make_inputs(sample)
    small = CCFaceLoss(DistillDims(4, 4, 5), m=0.1, margin_rule="fixed").double()(inputs)["cc"]
    large = CCFaceLoss(DistillDims(4, 4, 5), m=0.5, margin_rule="fixed").double()(inputs)["cc"]
    assert large.item() > small.item()


def test_acr_stop_gradient_and_predictor_trains(sample) -> None:
    term = CCFaceLoss(DistillDims(4, 4, 5), lambda_cc=0.0)
    inputs = make_inputs(sample, dtype=torch.float32)
    inputs.teacher.requires_grad_(True)
    term(inputs)["loss"].backward()
    assert inputs.teacher.grad is None  # sg(f_t)
    assert term.predictor.fc1.weight.grad.abs().sum() > 0


def test_fp16_inputs_are_finite(sample) -> None:
    inputs = make_inputs(sample, dtype=torch.float16)
    inputs.student = (inputs.student * 40).requires_grad_(True)
    out = CCFaceLoss(DistillDims(4, 4, 5))(inputs)
    out["loss"].backward()
    assert all(torch.isfinite(v) for v in out.values()) and torch.isfinite(inputs.student.grad).all()


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="margin_rule"):
        CCFaceLoss(DistillDims(4, 4, 5), margin_rule="adaface")
    with pytest.raises(ConfigError, match="m must be >= 0"):
        CCFaceLoss(DistillDims(4, 4, 5), m=-0.1)
