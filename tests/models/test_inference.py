"""The inference path (BN folded, channels-last where chosen, inference_mode) gives the eager model's embeddings
within float tolerance, for every registered backbone, and the evaluation loader runs it for FaceBN "off" only."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import insightface_lr.demo.nets  # noqa: F401  registers demo_hr_net, so it is covered below
from insightface_lr.eval.model_loading import load_eval_model
from insightface_lr.models import get_backbone
from insightface_lr.models.inference import CHANNELS_LAST, InferenceNet, inference_net
from insightface_lr.registry import BACKBONES


def mild_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine terms (so folding has something to fold), and residual branches
    damped (the last BN of each block) so that a 200-layer net of random weights stays finite."""
    generator = torch.Generator().manual_seed(seed)

    def near(n: int, centre: float, spread: float) -> torch.Tensor:
        return centre + spread * (2 * torch.rand(n, generator=generator) - 1)

    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(near(n, 0.0, 0.05))
                m.running_var.copy_(near(n, 1.0, 0.2))
                m.weight.copy_(near(n, 1.0, 0.2) * (0.1 if name.endswith("bn3") else 1.0))
                m.bias.copy_(near(n, 0.0, 0.05))
    return model


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    scale = want.abs().max()
    assert got.shape == want.shape and got.dtype == torch.float32
    assert torch.isfinite(want).all() and scale > 0
    assert float((got - want).abs().max()) <= 1e-4 * float(scale), float((got - want).abs().max() / scale)


DEEP = ("r100", "r200")  # ~10 s each to build: slow lane
GRAPH_BACKBONES = ("mxnet_graph",)  # built from a symbol file: folded and compared in mxnet/test_graph.py
LAYOUTS = [pytest.param(name, None, marks=[pytest.mark.slow] if name in DEEP else [])
           for name in sorted(BACKBONES.names()) if name not in GRAPH_BACKBONES] + [
    (name, layout) for name in ("bridge_student", "mbf", "r18") for layout in (True, False)]


@pytest.mark.parametrize(("name", "channels_last"), LAYOUTS)
def test_inference_net_matches_eager(name: str, channels_last: bool | None) -> None:
    torch.manual_seed(0)
    model = mild_bn(get_backbone(name, input_size=16, embedding_size=32)).eval()
    x = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(x)
    want = want[0] if isinstance(want, tuple) else want
    fast = inference_net(model, channels_last)
    got = fast(x)
    _close(got, want)
    expected_layout = CHANNELS_LAST.get(type(model).__name__, False) if channels_last is None else channels_last
    assert fast.channels_last is expected_layout
    assert not got.is_inference()  # an ordinary tensor: callers may modify it in place
    got.mul_(2.0)


def test_batchnorm_is_folded_and_the_original_untouched() -> None:
    model = mild_bn(get_backbone("bridge_student", input_size=16)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = inference_net(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())  # every conv of it has a BN to absorb
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert fast.model.stem[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_eval_model_runs_the_inference_path_and_keeps_bn_for_facebn(tmp_path) -> None:
    from insightface_lr.models.teacher import save_student

    model = mild_bn(get_backbone("bridge_student", input_size=16)).eval()
    path = save_student(tmp_path / "s.pt", model, network="bridge_student",
                        kwargs={"input_size": 16, "embedding_size": 128})
    loaded = load_eval_model(path)
    assert isinstance(loaded.fn.model, InferenceNet) and loaded.supports_facebn
    assert any(isinstance(m, nn.BatchNorm2d) for m in loaded.module.modules())  # what FaceBN adapts
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        _close(loaded.fn(x), model(x))
