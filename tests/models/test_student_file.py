"""save_student records what rebuilds the network: the module's own build options, merged with partial kwargs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import insightface_lr.demo.nets  # noqa: F401  registers demo_hr_net, a network the demo saves
from insightface_lr.errors import ConfigError
from insightface_lr.models.student_file import build_options, load_student, save_student
from insightface_lr.registry import BACKBONES, register_backbone

EMBEDDING = 24  # not any factory's default, so a loader that falls back to a default fails to load
# the same class as r18 at more depth, and 0.3-0.5 GB of weights to write and read back: run with -m slow
HEAVY = {"r100", "r200"}


@pytest.mark.parametrize("network", [pytest.param(n, marks=[pytest.mark.slow] if n in HEAVY else [])
                                     for n in BACKBONES.names()])
def test_partial_kwargs_round_trip_for_every_registered_network(tmp_path, network) -> None:
    torch.manual_seed(0)
    net = BACKBONES.build(network, embedding_size=EMBEDDING, input_size=16, **_extra_options(network)).eval()
    path = save_student(tmp_path / "s.pt", net, network=network, kwargs={"input_size": 16})
    loaded, _ = load_student(path)
    assert loaded.embedding_size == EMBEDDING and loaded.input_size == 16
    assert type(loaded) is type(net)
    state = net.state_dict()  # weights, not outputs: a fresh r100/r200 overflows to nan on random faces
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items()) and len(state) > 0


def _extra_options(network: str) -> dict:
    """Options a network cannot be built without: an MXNet import's graph (a tiny conv -> fc symbol)."""
    if network != "mxnet_graph":
        return {}
    from mxnet_symbols import SymbolBuilder

    sb = SymbolBuilder()
    x = sb.conv("conv0", 0, 3, 4, 3, stride=(2, 2), pad=(1, 1))
    head = sb.bn("fc1", sb.fc("pre_fc1", sb.bn("bn0", x, 4, fix_gamma=False), 4 * 8 * 8, EMBEDDING), EMBEDDING,
                 fix_gamma=True)
    return {"symbol": sb.text(head)}


def test_bridge_student_keeps_its_non_default_widths(tmp_path) -> None:
    net = BACKBONES.build("bridge_student", input_size=16, widths=(8, 16, 16, 32), blocks=(1, 1, 1)).eval()
    path = save_student(tmp_path / "s.pt", net, network="bridge_student")
    raw = torch.load(path, weights_only=True)
    assert raw["kwargs"] == {"embedding_size": 128, "input_size": 16, "widths": [8, 16, 16, 32], "blocks": [1, 1, 1]}
    loaded, _ = load_student(path)
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in net.parameters())


def test_an_option_that_disagrees_with_the_module_is_refused(tmp_path) -> None:
    net = BACKBONES.build("bridge_student", embedding_size=EMBEDDING, input_size=16)
    with pytest.raises(ConfigError, match=r"embedding_size=512 disagrees .*BridgeStudent\.embedding_size = 24"):
        save_student(tmp_path / "s.pt", net, network="bridge_student", kwargs={"embedding_size": 512})
    assert not (tmp_path / "s.pt").exists()
    # the same values in another container type agree (a file holds lists)
    assert build_options(net, {"widths": [32, 64, 128, 256]})["widths"] == [32, 64, 128, 256]


class _Scaled(nn.Module):
    """A network whose factory takes an option it reports only through ``build_options()``."""

    def __init__(self, width: int = 4, embedding_size: int = 8, input_size: int = 16) -> None:
        super().__init__()
        self.width = width
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * input_size * input_size, width), nn.Linear(width, 8))

    def build_options(self) -> dict[str, int]:
        return {"width": self.width}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


if "_test_scaled_net" not in BACKBONES:
    register_backbone("_test_scaled_net")(lambda embedding_size=8, input_size=16, dropout=0.0, fp16=False, width=4:
                                          _Scaled(width, embedding_size, input_size))


def test_build_options_method_is_used_and_merged_with_kwargs(tmp_path) -> None:
    net = _Scaled(width=6)
    path = save_student(tmp_path / "s.pt", net, network="_test_scaled_net", kwargs={"input_size": 16})
    assert torch.load(path, weights_only=True)["kwargs"] == {"input_size": 16, "width": 6}
    loaded, _ = load_student(path)
    assert loaded.width == 6
    with pytest.raises(ConfigError, match="width=5 disagrees"):
        save_student(tmp_path / "t.pt", net, network="_test_scaled_net", kwargs={"width": 5})
