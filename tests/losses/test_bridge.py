"""Bridge distillation: fixed projection, step-1 adaptation loss, step-2 L2 term."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from insightface_lr.errors import ConfigError
from insightface_lr.losses.bridge import (
    BridgeAdaptLoss,
    BridgeLoss,
    bridge_adaptation_loss,
    fixed_projection,
)
from insightface_lr.losses.distiller import DistillDims, DistillInputs


def inputs_of(student, teacher, labels=None) -> DistillInputs:
    labels = torch.zeros(student.shape[0], dtype=torch.long) if labels is None else labels
    return DistillInputs(student, teacher, labels)


def test_fixed_projection_orthonormal_and_seeded() -> None:
    a = fixed_projection(12, 5, seed=3)
    assert a.shape == (5, 12) and a.dtype == torch.float32
    assert torch.allclose(a @ a.T, torch.eye(5), atol=1e-6)
    assert torch.equal(a, fixed_projection(12, 5, seed=3))
    assert not torch.allclose(a, fixed_projection(12, 5, seed=4))
    with pytest.raises(ConfigError, match="bridge dim"):
        fixed_projection(4, 8)


def test_adaptation_loss_by_hand() -> None:
    g = torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, -1.0]])
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 3.0]])
    # squared distances 4, 2, 25 -> mean 31/3
    assert bridge_adaptation_loss(g, a).item() == pytest.approx(31 / 3)


def test_bridge_adapt_term_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    g, ft = rng.normal(size=(4, 3)), rng.normal(size=(4, 6))
    term = BridgeAdaptLoss(DistillDims(3, 6, 2), weight=0.5, seed=7).double()
    out = term(inputs_of(torch.tensor(g), torch.tensor(ft)))
    a = fixed_projection(6, 3, seed=7).double().numpy()
    want = np.mean(np.sum((g - ft @ a.T) ** 2, axis=1))
    assert out["adapt"].item() == pytest.approx(want, rel=1e-6)
    assert out["loss"].item() == pytest.approx(0.5 * want, rel=1e-6)
    assert len(list(term.parameters())) == 0 and "projection" in term.state_dict()  # A is fixed


def test_bridge_adapt_zero_at_projection() -> None:
    ft = torch.randn(5, 8, dtype=torch.float64)
    term = BridgeAdaptLoss(DistillDims(4, 8, 2)).double()
    g = (ft @ fixed_projection(8, 4).double().T).requires_grad_(True)
    out = term(inputs_of(g, ft))
    out["loss"].backward()
    assert out["loss"].item() < 1e-12 and g.grad.abs().max() < 1e-12


def test_bridge_step2_matches_numpy_and_adaptor() -> None:
    rng = np.random.default_rng(1)
    fs, g = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    out = BridgeLoss(DistillDims(3, 3, 2), lambda_l2=2.0).double()(
        inputs_of(torch.tensor(fs), torch.tensor(g))
    )
    assert out["loss"].item() == pytest.approx(2.0 * np.mean(np.sum((fs - g) ** 2, axis=1)), rel=1e-12)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
    out = BridgeLoss(DistillDims(3, 3, 2), normalize=True).double()(
        inputs_of(torch.tensor(fs), torch.tensor(g))
    )
    assert out["l2"].item() == pytest.approx(np.mean(np.sum((unit(fs) - unit(g)) ** 2, axis=1)), rel=1e-12)
    term = BridgeLoss(DistillDims(5, 3, 2))
    term(inputs_of(torch.randn(4, 5), torch.randn(4, 3)))["loss"].backward()
    assert term.adaptor.weight.shape == (3, 5) and term.adaptor.weight.grad.abs().sum() > 0


def test_gradcheck() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(4, 3, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(2))
    assert torch.autograd.gradcheck(bridge_adaptation_loss, (a, b))
    step2 = BridgeLoss(DistillDims(3, 2, 2), normalize=True).double()
    t = torch.randn(4, 2, generator=gen, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: step2(inputs_of(x, t))["loss"], (a,))
    step1 = BridgeAdaptLoss(DistillDims(3, 5, 2)).double()
    t = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: step1(inputs_of(x, t))["loss"], (a,))


def test_edges_batch_of_one_teacher_equals_student_fp16() -> None:
    fs = torch.randn(1, 6, requires_grad=True)
    out = BridgeLoss(DistillDims(6, 6, 2))(inputs_of(fs, torch.randn(1, 6)))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and torch.isfinite(fs.grad).all()
    f = torch.randn(4, 6)
    fs = f.clone().requires_grad_(True)
    out = BridgeLoss(DistillDims(6, 6, 2))(inputs_of(fs, f))
    out["loss"].backward()
    assert out["loss"].item() == 0.0 and torch.all(fs.grad == 0)
    half = (torch.randn(4, 6) * 30).half()
    out = BridgeLoss(DistillDims(6, 6, 2))(inputs_of(half, -half))
    assert torch.isfinite(out["loss"]) and out["loss"].dtype == torch.float32  # 4 * 30^2 * 6 overflows fp16


def test_bridge_adapt_term_learns_projection() -> None:
    # step 1 in miniature: a linear bridge network g driven only by the term approaches A (loss drops 10x)
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 4, bias=False)
    term = BridgeAdaptLoss(DistillDims(4, 16, 2))
    f_t = torch.randn(64, 16)
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    first = None
    for _ in range(80):
        loss = term(inputs_of(head(f_t), f_t))["adapt"]
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first
