"""bridge_student: size budget (~0.21M), LR input sizes, foldable BN, and fold_batchnorm correctness."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from insightface_lr.errors import ConfigError
from insightface_lr.models import BridgeStudent, fold_batchnorm, get_backbone
from insightface_lr.registry import BACKBONES


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine terms, so that folding has something to fold."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=generator) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                m.bias.copy_(torch.rand(n, generator=generator) * 0.2 - 0.1)
    return model


@pytest.mark.parametrize("size", [16, 32, 112])
def test_parameter_budget_and_output(size: int) -> None:
    model = get_backbone("bridge_student", input_size=size).eval()
    params = sum(p.numel() for p in model.parameters())
    print(f"bridge_student input_size={size}: {params} parameters ({params / 1e6:.3f}M)")
    assert 150_000 <= params <= 250_000
    assert isinstance(model, BridgeStudent) and model.input_size == size and model.embedding_size == 128
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 128) and torch.isfinite(out).all()


def test_factory_contract_kwargs() -> None:
    model = BACKBONES.build("bridge_student", embedding_size=512, input_size=24, dropout=0.1, fp16=False)
    assert model.embedding_size == 512 and model.input_size == 24
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 24, 24)).shape == (2, 512)


def test_design_rules_channels_and_bn_after_every_conv() -> None:
    model = get_backbone("bridge_student", input_size=112)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.out_channels % 8 == 0 for c in convs)
    assert any(c.groups == c.in_channels > 1 for c in convs)  # depthwise convs exist
    # every conv is directly followed by a BN inside its Sequential (hence foldable)
    followed = 0
    for seq in (m for m in model.modules() if isinstance(m, nn.Sequential)):
        for first, second in zip(list(seq)[:-1], list(seq)[1:], strict=True):
            if isinstance(first, nn.Conv2d):
                assert isinstance(second, nn.BatchNorm2d)
                followed += 1
    assert followed == len(convs)


@pytest.mark.parametrize("size", [16, 112])
def test_fold_batchnorm_equals_unfolded(size: int) -> None:
    torch.manual_seed(0)
    model = randomise_bn(get_backbone("bridge_student", input_size=size)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    x = torch.randn(4, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the input model is untouched
    assert sum(p.numel() for p in folded.parameters()) < sum(p.numel() for p in model.parameters())


def test_fold_single_pair_by_hand() -> None:
    """Conv(bias) + BN folded equals the closed form W*s, (b - mu)*s + beta with s = gamma/sqrt(var+eps)."""
    conv = nn.Conv2d(2, 3, 1, bias=True)
    bn = randomise_bn(nn.Sequential(nn.BatchNorm2d(3)), seed=3)[0]
    folded = fold_batchnorm(nn.Sequential(conv, bn))
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    torch.testing.assert_close(folded[0].weight, conv.weight * s[:, None, None, None])
    torch.testing.assert_close(folded[0].bias, (conv.bias - bn.running_mean) * s + bn.bias)
    assert isinstance(folded[1], nn.Identity)


def test_training_step_and_errors() -> None:
    model = get_backbone("bridge_student", input_size=16).train()
    model(torch.randn(4, 3, 16, 16)).square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    with pytest.raises(ConfigError, match="16, 16"):
        model(torch.randn(2, 3, 32, 32))
    with pytest.raises(ConfigError, match="input_size"):
        get_backbone("bridge_student", input_size=4)
    with pytest.raises(ConfigError, match="widths"):
        get_backbone("bridge_student", widths=(16, 32), blocks=(1, 1, 1))
