"""IResNet: state_dict layout, parameter counts and forward values equal arcface_torch's reference.

The fixture ``tests/fixtures/iresnet_reference_keys.json`` was recorded by instantiating the reference
``recognition/arcface_torch/backbones/iresnet.py`` (deepinsight/insightface, commit in the fixture) outside
this repo: keys and shapes per model, parameter counts, and eval outputs under a deterministic fill.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from reference_fill import deterministic_fill

from insightface_lr.errors import ConfigError, RegistryError
from insightface_lr.models import IResNet, get_backbone
from insightface_lr.registry import BACKBONES

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "iresnet_reference_keys.json"
REFERENCE = json.loads(FIXTURE.read_text())


def meta_model(name: str, **kwargs) -> torch.nn.Module:
    """Build without allocating memory: layout checks for r100/r200 stay instant."""
    with torch.device("meta"):
        return get_backbone(name, **kwargs)


def reference_input() -> torch.Tensor:
    return torch.sin(torch.arange(2 * 3 * 112 * 112, dtype=torch.float64) * 0.01).reshape(2, 3, 112, 112).float()


@pytest.mark.parametrize("name", ["r18", "r34", "r50", "r100"])
def test_keys_shapes_and_counts_equal_reference(name: str) -> None:
    ref = REFERENCE["models"][name]
    model = meta_model(name)
    ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert ours == ref["keys"]  # same names, same order, same shapes
    assert sum(p.numel() for p in model.parameters()) == ref["params"]
    assert sum(b.numel() for b in model.buffers()) == ref["buffers"]


def test_r200_layout_by_hand() -> None:
    """r200 = r100 plus (3, 13, 30, 3) more shape-keeping blocks; each adds 18 keys, 18c^2 + 7c params."""
    r100, r200 = meta_model("r100"), meta_model("r200")
    extra = dict(zip((64, 128, 256, 512), (3, 13, 30, 3), strict=True))
    # per block: bn1/bn2/bn3 5 keys each (weight, bias, mean, var, count), conv1, conv2, prelu 1 each
    assert len(r200.state_dict()) == len(r100.state_dict()) + 18 * sum(extra.values())
    # conv 3x3 c->c twice: 18c^2; bn1, bn2, bn3 (2c each) and prelu (c): 7c
    added = sum(n * (18 * c * c + 7 * c) for c, n in extra.items())
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(r200) == count(r100) + added
    assert [len(getattr(r200, f"layer{i}")) for i in range(1, 5)] == [6, 26, 60, 6]


def test_reference_layout_checkpoint_loads_strictly(tmp_path: Path) -> None:
    """A backbone.pth in arcface_torch's layout (made from the recorded shapes) loads with strict=True."""
    generator = torch.Generator().manual_seed(0)
    state = {
        key: torch.zeros(shape, dtype=torch.long) if key.endswith("num_batches_tracked")
        else torch.randn(shape, generator=generator)
        for key, shape in REFERENCE["models"]["r18"]["keys"]
    }
    path = tmp_path / "backbone.pth"
    torch.save(state, path)
    loaded = torch.load(path, weights_only=True)
    model = get_backbone("r18")
    result = model.load_state_dict(loaded, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(model.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])
    assert torch.equal(model.features.running_var, state["features.running_var"])


def test_forward_equals_reference_values() -> None:
    model = deterministic_fill(get_backbone("r18")).eval()
    with torch.no_grad():
        out = model(reference_input()).double()
    expected = REFERENCE["forward"]["r18"]
    assert out.shape == (2, 512)
    torch.testing.assert_close(out[:, :16], torch.tensor(expected["first16"], dtype=torch.float64),
                               rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out.sum(1), torch.tensor(expected["row_sum"], dtype=torch.float64),
                               rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.norm(dim=1), torch.tensor(expected["row_norm"], dtype=torch.float64),
                               rtol=1e-4, atol=1e-6)


def test_factory_contract_and_eval_determinism() -> None:
    torch.manual_seed(0)
    model = BACKBONES.build("r18", embedding_size=128, input_size=32, dropout=0.2, fp16=False).eval()
    assert isinstance(model, IResNet) and model.input_size == 32 and model.embedding_size == 128
    assert not model.features.weight.requires_grad  # frozen as in arcface_torch
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        first, second, alone = model(x), model(x), model(x[1:2])
    assert first.shape == (3, 128) and torch.isfinite(first).all()
    assert torch.equal(first, second)  # dropout is off in eval mode
    # no batch coupling in eval (compared on the unit sphere: arcface_torch's init gives huge magnitudes)
    unit = torch.nn.functional.normalize
    torch.testing.assert_close(unit(alone, dim=1)[0], unit(first, dim=1)[1], rtol=0, atol=1e-5)


@pytest.mark.parametrize(("size", "side"), [(16, 1), (24, 2), (32, 2), (56, 4)])
def test_low_resolution_input_sizes(size: int, side: int) -> None:
    """Only fc changes: in-features 512 * side^2 with side = 4 ceil-halvings of the input."""
    model = get_backbone("r18", input_size=size).eval()
    assert model.fc.in_features == 512 * side * side
    ref = {k: s for k, s in REFERENCE["models"]["r18"]["keys"]}
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours.keys() == ref.keys()
    assert {k for k in ref if ref[k] != ours[k]} == {"fc.weight"}
    with torch.no_grad():
        assert model(torch.randn(2, 3, size, size)).shape == (2, 512)


def test_fp16_flag_is_a_no_op_on_cpu() -> None:
    torch.manual_seed(1)
    plain = get_backbone("r18", input_size=16).eval()
    half = get_backbone("r18", input_size=16, fp16=True).eval()
    half.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        out = half(x)
        assert out.dtype == torch.float32
        assert torch.equal(out, plain(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 autocasts the trunk on CUDA only")
def test_fp16_autocast_on_cuda() -> None:
    torch.manual_seed(2)
    plain = get_backbone("r18", input_size=32).cuda().eval()
    half = get_backbone("r18", input_size=32, fp16=True).cuda().eval()
    half.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 32, 32, device="cuda")
    with torch.no_grad():
        out, ref = half(x), plain(x)
    assert out.dtype == torch.float32  # fc and features run in fp32 after the autocast trunk
    cosine = torch.nn.functional.cosine_similarity(out, ref, dim=1)
    assert (cosine > 0.99).all() and not torch.equal(out, ref)


def test_training_step_has_gradients() -> None:
    model = get_backbone("r18", input_size=16, embedding_size=64, dropout=0.1).train()
    model(torch.randn(4, 3, 16, 16)).pow(2).mean().backward()
    assert model.conv1.weight.grad is not None and torch.isfinite(model.conv1.weight.grad).all()
    assert model.layer4[1].conv2.weight.grad.abs().sum() > 0


def test_clear_errors() -> None:
    model = get_backbone("r18", input_size=16)
    with pytest.raises(ConfigError, match=r"input \[B, 3, 16, 16\].*\[2, 3, 112, 112\]"):
        model(torch.randn(2, 3, 112, 112))
    with pytest.raises(ConfigError, match="does not take options"):
        get_backbone("r50", num_layers=3)
    with pytest.raises(ConfigError, match="dropout"):
        get_backbone("r18", dropout=1.5)
    with pytest.raises(ConfigError, match="input_size"):
        get_backbone("r18", input_size=4)
    with pytest.raises(RegistryError, match="r50"):
        get_backbone("r5O")
