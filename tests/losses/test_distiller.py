"""Distiller: spec parsing, weighted sum, part names, errors, and every registered loss end to end."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from insightface_lr.errors import ConfigError, RegistryError
from insightface_lr.losses import build_distiller
from insightface_lr.losses.distiller import DistillDims, DistillInputs, parse_spec
from insightface_lr.registry import LOSSES

DIMS = DistillDims(student_dim=16, teacher_dim=24, num_classes=10)


def random_inputs(batch: int = 8, seed: int = 0, dims: DistillDims = DIMS) -> DistillInputs:
    gen = torch.Generator().manual_seed(seed)
    return DistillInputs(
        student=torch.randn(batch, dims.student_dim, generator=gen).requires_grad_(True),
        teacher=torch.randn(batch, dims.teacher_dim, generator=gen),
        labels=torch.randint(0, dims.num_classes, (batch,), generator=gen),
        teacher_centres=torch.randn(dims.num_classes, dims.teacher_dim, generator=gen),
        teacher_memory=torch.randn(3 * batch, dims.teacher_dim, generator=gen),  # what the step fills for `bank`
    )


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("aird", ["aird"]),
        ("aird+ccface", ["aird", "ccface"]),
        (" kd + rkd ", ["kd", "rkd"]),
        ("none", []),
        ("", []),
    ],
)
def test_parse_spec(spec: str, names: list[str]) -> None:
    assert parse_spec(spec) == names


@pytest.mark.parametrize("spec", ["aird+aird", "none+aird", "aird+", "+"])
def test_bad_spec(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_spec(spec)


@pytest.mark.parametrize("spec", ["none", ""])
def test_no_terms_gives_grad_free_zero(spec: str) -> None:
    distiller = build_distiller(spec, DIMS)
    total, parts = distiller(random_inputs())
    assert total.item() == 0.0 and total.grad_fn is None and parts == {}
    assert len(distiller.terms) == 0 and not distiller.requires_teacher_centres


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(RegistryError) as info:
        build_distiller("aird+foo", DIMS)
    message = str(info.value)
    assert "'foo'" in message
    for name in LOSSES.names():
        assert name in message


def test_weighted_sum_and_part_names() -> None:
    distiller = build_distiller("aird+ccface+rkd", DIMS, weights={"aird": 0.5, "ccface": 2.0})
    inputs = random_inputs()
    total, parts = distiller(inputs)
    assert {"aird/loss", "aird/instance", "aird/relation", "ccface/cc", "ccface/acr", "rkd/angle"} <= set(
        parts
    )
    assert all(v.dtype == torch.float32 and v.grad_fn is None and v.ndim == 0 for v in parts.values())
    want = 0.5 * parts["aird/loss"] + 2.0 * parts["ccface/loss"] + 1.0 * parts["rkd/loss"]
    assert total.item() == pytest.approx(want.item(), rel=1e-6)
    # each term's own loss is its alpha/beta-weighted sum of parts
    assert parts["aird/loss"].item() == pytest.approx(
        (parts["aird/instance"] + parts["aird/relation"]).item()
    )
    # recompute the terms one by one: the distiller adds nothing else
    alone = sum(w * distiller.terms[n](inputs)["loss"] for n, w in distiller.weights.items())
    assert total.item() == pytest.approx(alone.item(), rel=1e-6)
    total.backward()
    assert inputs.student.grad is not None
    assert all(p.grad is not None for p in distiller.parameters())  # adaptors / predictor are trained


def test_config_reaches_terms_and_is_validated() -> None:
    distiller = build_distiller(
        "aird", DIMS, config={"aird": {"tau_r": 0.3, "beta": 0.0}, "ccface": {"m": 0.2}}
    )
    assert distiller.terms["aird"].config.tau_r == 0.3  # ccface config ignored: registered but not selected
    _, parts = distiller(random_inputs())
    assert parts["aird/loss"].item() == pytest.approx(parts["aird/instance"].item())  # beta = 0
    with pytest.raises(ConfigError, match="unknown field"):
        build_distiller("aird", DIMS, config={"aird": {"temperature": 2.0}})
    with pytest.raises(ConfigError, match="unknown term.*airdd"):
        build_distiller("aird", DIMS, config={"airdd": {}})
    with pytest.raises(ConfigError, match="unknown term.*kdd"):
        build_distiller("aird", DIMS, weights={"kdd": 1.0})


def test_requires_teacher_centres() -> None:
    assert not build_distiller("aird+rkd", DIMS).requires_teacher_centres
    assert build_distiller("aird+rkd", DIMS).uses_teacher_centres  # default aird: its prediction term reads them
    assert not build_distiller("aird+rkd", DIMS, {"aird": {"lambda_p": 0.0}}).uses_teacher_centres
    assert build_distiller("aird+ccface", DIMS).requires_teacher_centres
    assert build_distiller("kd", DIMS).requires_teacher_centres


def test_plugin_loss_usable_by_name(monkeypatch) -> None:
    class Plugin(nn.Module):
        def __init__(self, dims: DistillDims, gain: float = 1.0) -> None:
            super().__init__()
            self.gain = gain

        def forward(self, inputs: DistillInputs) -> dict[str, torch.Tensor]:
            loss = self.gain * inputs.student.pow(2).mean()
            return {"loss": loss, "raw": loss / self.gain}

    monkeypatch.setitem(LOSSES._entries, "my_plugin_loss", Plugin)
    distiller = build_distiller("my_plugin_loss", DIMS, config={"my_plugin_loss": {"gain": 3.0}})
    inputs = random_inputs()
    total, parts = distiller(inputs)
    assert total.item() == pytest.approx(3.0 * inputs.student.pow(2).mean().item(), rel=1e-6)
    assert set(parts) == {"my_plugin_loss/loss", "my_plugin_loss/raw"}


def test_autocast_region_computes_in_fp32() -> None:
    distiller = build_distiller("aird+kd", DIMS)
    seen: list[torch.dtype] = []
    distiller.terms["aird"].adaptor.register_forward_hook(lambda m, a, out: seen.append(out.dtype))
    inputs = random_inputs()
    inputs.student = inputs.student.detach().bfloat16().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.nn.functional.linear(torch.ones(1, 2), torch.ones(2, 2)).dtype == torch.bfloat16
        total, parts = distiller(inputs)
    assert seen == [torch.float32]  # the adaptor ran outside autocast, on the upcast student
    assert total.dtype == torch.float32 and torch.isfinite(total)
    reference, _ = distiller(random_inputs())  # same values in plain fp32, up to the bf16 input rounding
    assert total.item() == pytest.approx(reference.item(), rel=0.05)


def test_distiller_state_dict_round_trip() -> None:
    a = build_distiller("aird+ccface", DIMS)
    b = build_distiller("aird+ccface", DIMS)
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    inputs = random_inputs()
    assert torch.equal(a(inputs)[0], b(inputs)[0])


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("dims", [DIMS, DistillDims(24, 24, 10)], ids=["adapt", "same-width"])
def test_every_registered_loss_forward_backward(name: str, dims: DistillDims) -> None:
    distiller = build_distiller(name, dims)
    inputs = random_inputs(dims=dims)
    total, parts = distiller(inputs)
    assert torch.isfinite(total) and total.ndim == 0
    assert f"{name}/loss" in parts and all(k.startswith(f"{name}/") for k in parts)
    total.backward()
    assert inputs.student.grad is not None and torch.isfinite(inputs.student.grad).all()
    assert inputs.student.grad.abs().sum() > 0
