"""Baselines: Hinton KD, feature KD, RKD against numpy re-statements, gradcheck and edge cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from insightface_lr.errors import ConfigError
from insightface_lr.losses.baselines import FeatureKDLoss, HintonKDLoss, RKDLoss, rkd_angle, rkd_distance
from insightface_lr.losses.distiller import DistillDims, DistillInputs


def np_unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def np_log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def np_kd(zs: np.ndarray, zt: np.ndarray, tau: float) -> float:
    lp, lq = np_log_softmax(zt / tau), np_log_softmax(zs / tau)
    return tau**2 * float(np.mean(np.sum(np.exp(lp) * (lp - lq), axis=1)))


def np_smooth_l1(a: np.ndarray, b: np.ndarray) -> float:
    d = np.abs(a - b)
    return float(np.mean(np.where(d < 1, 0.5 * d**2, d - 0.5)))


def np_rkd(fs: np.ndarray, ft: np.ndarray) -> tuple[float, float]:
    """Explicit loops over pairs and triplets: an independent statement of RKD."""
    n = len(fs)

    def dist(f):
        d = np.zeros((n, n))
        for i, j in itertools.product(range(n), repeat=2):
            d[i, j] = np.linalg.norm(f[i] - f[j])
        return d / (d.sum() / (n * (n - 1)))

    def angle(f):
        a = np.zeros((n, n, n))
        for i, j, k in itertools.product(range(n), repeat=3):
            if i != j and i != k:
                a[i, j, k] = np_unit(f[j] - f[i]) @ np_unit(f[k] - f[i])
        return a

    return np_smooth_l1(dist(fs), dist(ft)), np_smooth_l1(angle(fs), angle(ft))


@pytest.fixture
def sample() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "fs": rng.normal(size=(4, 3)),
        "ft": rng.normal(size=(4, 3)),
        "w": rng.normal(size=(5, 3)),
        "logits": np.clip(rng.normal(size=(4, 5)) * 0.5, -1, 1),
    }


def make_inputs(s, logits=False) -> DistillInputs:
    return DistillInputs(
        torch.tensor(s["fs"]),
        torch.tensor(s["ft"]),
        torch.tensor([0, 1, 2, 3]),
        teacher_centres=torch.tensor(s["w"]),
        student_logits=torch.tensor(s["logits"]) if logits else None,
    )


def test_kd_matches_numpy(sample) -> None:
    term = HintonKDLoss(DistillDims(3, 3, 5), tau=3.0, scale=10.0, alpha=0.5).double()
    zt = 10.0 * np_unit(sample["ft"]) @ np_unit(sample["w"]).T
    zs = 10.0 * np_unit(sample["fs"]) @ np_unit(sample["w"]).T
    out = term(make_inputs(sample))
    assert out["kd"].item() == pytest.approx(np_kd(zs, zt, 3.0), rel=1e-10)
    assert out["loss"].item() == pytest.approx(0.5 * np_kd(zs, zt, 3.0), rel=1e-10)
    # logits="teacher" (default) ignores student logits even when given; "student" (Hinton's form) uses them
    assert term(make_inputs(sample, logits=True))["kd"].item() == pytest.approx(np_kd(zs, zt, 3.0), rel=1e-10)
    own = HintonKDLoss(DistillDims(3, 3, 5), tau=3.0, scale=10.0, alpha=0.5, logits="student").double()
    assert own.uses_student_logits and not term.uses_student_logits
    out = own(make_inputs(sample, logits=True))
    assert out["kd"].item() == pytest.approx(np_kd(10.0 * sample["logits"], zt, 3.0), rel=1e-10)


def test_kd_errors(sample) -> None:
    inputs = make_inputs(sample, logits=True)
    inputs.student_logits = inputs.student_logits[:, :3]
    with pytest.raises(ConfigError, match="student_logits"):
        HintonKDLoss(DistillDims(3, 3, 5), logits="student").double()(inputs)
    with pytest.raises(ConfigError, match="student's classifier logits"):
        HintonKDLoss(DistillDims(3, 3, 5), logits="student").double()(make_inputs(sample))
    with pytest.raises(ConfigError, match="logits must be"):
        HintonKDLoss(DistillDims(3, 3, 5), logits="mine")
    inputs = make_inputs(sample)
    inputs.teacher_centres = None
    with pytest.raises(ConfigError, match="needs teacher_centres"):
        HintonKDLoss(DistillDims(3, 3, 5)).double()(inputs)


@pytest.mark.parametrize("metric", ["cosine", "mse"])
def test_feat_matches_numpy(sample, metric: str) -> None:
    out = FeatureKDLoss(DistillDims(3, 3, 5), metric=metric, alpha=2.0)(make_inputs(sample))
    fs, ft = sample["fs"], sample["ft"]
    if metric == "cosine":
        want = np.mean(1 - np.sum(np_unit(fs) * np_unit(ft), axis=1))
    else:
        want = np.mean((fs - ft) ** 2)
    assert out["loss"].item() == pytest.approx(2.0 * want, rel=1e-12)
    with pytest.raises(ConfigError, match="metric"):
        FeatureKDLoss(DistillDims(3, 3, 5), metric="l1")


def test_rkd_matches_numpy(sample) -> None:
    out = RKDLoss(DistillDims(3, 3, 5))(make_inputs(sample))
    dist, angle = np_rkd(sample["fs"], sample["ft"])
    assert out["distance"].item() == pytest.approx(dist, rel=1e-6)
    assert out["angle"].item() == pytest.approx(angle, rel=1e-9)
    assert out["loss"].item() == pytest.approx(dist + 2.0 * angle, rel=1e-6)


def test_rkd_widths_may_differ_and_scale_invariant() -> None:
    gen = torch.Generator().manual_seed(0)
    ft = torch.randn(6, 8, generator=gen)
    # the student spans the same geometry in a wider space at 3x scale: nothing to distil
    fs = torch.cat([3 * ft, torch.zeros(6, 4)], dim=1)
    out = RKDLoss(DistillDims(12, 8, 2))(DistillInputs(fs, ft, torch.zeros(6, dtype=torch.long)))
    assert out["loss"].item() < 1e-6


def test_gradcheck(sample) -> None:
    inputs = make_inputs(sample)
    x = inputs.student.clone().requires_grad_(True)
    for term in (
        HintonKDLoss(DistillDims(3, 3, 5), tau=2.0, scale=5.0),
        FeatureKDLoss(DistillDims(3, 3, 5)),
        FeatureKDLoss(DistillDims(3, 3, 5), metric="mse"),
        RKDLoss(DistillDims(3, 3, 5)),
    ):
        term = term.double()
        call = lambda a, term=term: term(
            DistillInputs(a, inputs.teacher, inputs.labels, inputs.teacher_centres)
        )["loss"]
        assert torch.autograd.gradcheck(call, (x,)), term.name
    logits = inputs.student_logits = torch.tensor(sample["logits"], requires_grad=True)
    kd = HintonKDLoss(DistillDims(3, 3, 5), tau=2.0, scale=5.0, logits="student").double()
    call = lambda z: kd(
        DistillInputs(inputs.student, inputs.teacher, inputs.labels, inputs.teacher_centres, z)
    )["loss"]
    assert torch.autograd.gradcheck(call, (logits,))


@pytest.mark.parametrize("batch", [1, 2])
def test_rkd_small_batches(batch: int) -> None:
    gen = torch.Generator().manual_seed(batch)
    fs = torch.randn(batch, 4, generator=gen).requires_grad_(True)
    ft = torch.randn(batch, 4, generator=gen)
    dist, angle = rkd_distance(fs, ft), rkd_angle(fs, ft)
    (dist + angle).backward()
    # B = 1 has no pairs, B = 2 no proper triplets (a[i, j, j] = <e, e> = 1 up to rounding), and the
    # normalised distances of two points are both 1
    assert dist.item() == 0.0 and abs(angle.item()) < 1e-6
    assert torch.isfinite(fs.grad).all() and fs.grad.abs().max() < 1e-5


@pytest.mark.parametrize("name", ["kd", "feat", "rkd"])
def test_teacher_equals_student_zero_loss_and_grad(name: str) -> None:
    cls = {"kd": HintonKDLoss, "feat": FeatureKDLoss, "rkd": RKDLoss}[name]
    f = torch.randn(6, 8, dtype=torch.float64)
    fs = f.clone().requires_grad_(True)
    out = cls(DistillDims(8, 8, 4))(DistillInputs(fs, f, torch.arange(6) % 4, torch.randn(4, 8).double()))
    out["loss"].backward()
    assert abs(out["loss"].item()) < 1e-12 and fs.grad.abs().max() < 1e-10


@pytest.mark.parametrize("name", ["kd", "feat", "rkd"])
def test_fp16_and_one_identity_finite(name: str) -> None:
    cls = {"kd": HintonKDLoss, "feat": FeatureKDLoss, "rkd": RKDLoss}[name]
    fs = (torch.randn(5, 8) * 30).half().requires_grad_(True)
    inputs = DistillInputs(
        fs, torch.randn(5, 8).half() * 30, torch.zeros(5, dtype=torch.long), torch.randn(3, 8).half()
    )
    out = cls(DistillDims(8, 8, 3))(inputs)
    out["loss"].backward()
    assert all(torch.isfinite(v) for v in out.values()) and torch.isfinite(fs.grad).all()
