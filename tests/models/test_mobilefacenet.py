"""MobileFaceNet: layout and forward values equal arcface_torch's ``mbf`` (recorded in the fixture)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from reference_fill import deterministic_fill
from torch import nn

from insightface_lr.errors import ConfigError
from insightface_lr.models import MobileFaceNet, fold_batchnorm, get_backbone

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "iresnet_reference_keys.json"
REFERENCE = json.loads(FIXTURE.read_text())


def test_keys_shapes_and_counts_equal_reference() -> None:
    ref = REFERENCE["models"]["mbf"]
    model = get_backbone("mbf")
    assert [[k, list(v.shape)] for k, v in model.state_dict().items()] == ref["keys"]
    params = sum(p.numel() for p in model.parameters())
    assert params == ref["params"]
    assert 1_000_000 <= params <= 2_100_000
    # dropout has no weights: the layout is the same with it on
    assert list(get_backbone("mbf", dropout=0.3).state_dict()) == [k for k, _ in ref["keys"]]


def test_forward_equals_reference_values() -> None:
    model = deterministic_fill(get_backbone("mbf")).eval()
    x = torch.sin(torch.arange(2 * 3 * 112 * 112, dtype=torch.float64) * 0.01).reshape(2, 3, 112, 112).float()
    with torch.no_grad():
        out = model(x).double()
    expected = REFERENCE["forward"]["mbf"]
    torch.testing.assert_close(out[:, :16], torch.tensor(expected["first16"], dtype=torch.float64),
                               rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out.norm(dim=1), torch.tensor(expected["row_norm"], dtype=torch.float64),
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("size", "side"), [(16, 1), (32, 2), (112, 7)])
def test_input_size_sets_gdc_kernel(size: int, side: int) -> None:
    model = get_backbone("mbf", input_size=size, embedding_size=128).eval()
    assert isinstance(model, MobileFaceNet) and model.input_size == size and model.embedding_size == 128
    assert model.features.layers[0].layers[0].weight.shape == (512, 1, side, side)
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 128) and torch.isfinite(out).all()


def test_fold_batchnorm_matches_unfolded() -> None:
    """Folding covers the grouped convs, the GDC and the bias-free Linear + BatchNorm1d."""
    torch.manual_seed(0)
    model = get_backbone("mbf", input_size=32)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    model.eval()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.modules())  # original untouched
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)


def test_errors_and_training_step() -> None:
    with pytest.raises(ConfigError, match="input_size"):
        get_backbone("mbf", input_size=8)
    model = get_backbone("mbf", input_size=16, embedding_size=64).train()
    with pytest.raises(ConfigError, match="16, 16"):
        model(torch.randn(2, 3, 112, 112))
    model(torch.randn(4, 3, 16, 16)).square().mean().backward()
    assert model.layers[0].layers[0].weight.grad is not None
