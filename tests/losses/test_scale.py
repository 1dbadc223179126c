"""Terms in units of their first-step value: the reference is the first value, fixed after, saved with the state."""

from __future__ import annotations

import pytest
import torch

from insightface_lr.losses.aird import AIRDLoss
from insightface_lr.losses.distiller import DistillDims, DistillInputs, build_distiller
from insightface_lr.losses.scale import FirstValueScale


def test_first_value_sets_the_reference_then_stays() -> None:
    scale = FirstValueScale()
    assert scale(torch.tensor(80.0)).item() == pytest.approx(1.0)
    assert scale(torch.tensor(40.0)).item() == pytest.approx(0.5)
    restored = FirstValueScale()
    restored.load_state_dict(scale.state_dict())  # a resumed run divides by the same number
    assert restored(torch.tensor(20.0)).item() == pytest.approx(0.25)


def test_a_zero_first_value_keeps_raw_units_and_gradients_flow() -> None:
    scale = FirstValueScale()
    assert scale(torch.tensor(0.0)).item() == 0.0 and scale.reference.item() == 1.0
    scale = FirstValueScale()
    x = torch.tensor(4.0, requires_grad=True)
    (y,) = torch.autograd.grad(scale(x * x), x)  # d/dx (x^2 / 16) at 4 = 0.5: the reference is a constant
    assert y.item() == pytest.approx(0.5)


def inputs(seed: int = 0) -> DistillInputs:
    gen = torch.Generator().manual_seed(seed)
    return DistillInputs(torch.randn(6, 4, generator=gen), torch.randn(6, 4, generator=gen),
                         torch.tensor([0, 1, 2, 0, 1, 2]), teacher_centres=torch.randn(3, 4, generator=gen))


def test_normalised_distiller_starts_every_term_at_its_weight() -> None:
    dims = DistillDims(4, 4, 3)
    raw = build_distiller("kd+feat", dims)
    normalised = build_distiller("kd+feat", dims, weights={"kd": 0.5, "feat": 2.0}, normalise=True)
    total, parts = normalised(inputs())
    assert total.item() == pytest.approx(2.5)
    _, raw_parts = raw(inputs())
    assert parts["kd/scaled"].item() == pytest.approx(1.0) and parts["kd/loss"] == raw_parts["kd/loss"]
    later, _ = normalised(inputs(1))  # a new batch: each term relative to its own first value
    _, raw_later = raw(inputs(1))
    expected = 0.5 * raw_later["kd/loss"] / raw_parts["kd/loss"] + 2.0 * raw_later["feat/loss"] / raw_parts["feat/loss"]
    assert later.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(normalised.state_dict()) == {"scales.kd.reference", "scales.feat.reference"}


def test_balanced_aird_weighs_each_part_by_its_lambda() -> None:
    term = AIRDLoss(DistillDims(4, 4, 3), balance=True, lambda_f=2.0, lambda_p=0.5, beta=3.0, alpha=1.0)
    first = term(inputs())
    assert first["loss"].item() == pytest.approx(2.0 + 0.5 + 3.0)
    plain = AIRDLoss(DistillDims(4, 4, 3))
    p0, p1 = plain(inputs()), plain(inputs(1))
    later = term(inputs(1))
    expected = (2.0 * p1["instance_feat"] / p0["instance_feat"] + 0.5 * p1["instance_pred"] / p0["instance_pred"]
                + 3.0 * p1["relation"] / p0["relation"])
    assert later["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
