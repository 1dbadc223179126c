"""``demo_hr_net``: a small HR face network that a 2-core CPU can train in a few minutes (the demo's teacher).

Why not IResNet-18 or MobileFaceNet: on 2 CPU cores they train at a few faces per second at 112 px, and even
the 0.21M ``bridge_student`` run at 112 px spends its time in memory-bound depthwise layers at 56x56. This net
first folds every 4x4 pixel block into channels (``PixelUnshuffle``, lossless: the 3-6 px identity textures of
the synthetic faces survive), so all convolutions are dense and run at 28x28 and below.

Layers: PixelUnshuffle(4) [B,48,28,28] -> 1x1 conv 64 -> 3x3 conv s2 64 [14x14] -> 3x3 conv 96 ->
3x3 conv s2 128 [7x7] -> 3x3 conv 128 -> flatten -> Linear -> BatchNorm1d (each conv: conv, BN, PReLU).
Registered through the ``plugins`` seam (the demo recipes list this module), not in the built-in models.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..models.iresnet import check_input
from ..registry import BACKBONES, register_backbone

WIDTHS = (64, 64, 96, 128, 128)
STRIDES = (1, 2, 1, 2, 1)
KERNELS = (1, 3, 3, 3, 3)
UNSHUFFLE = 4


def _conv(cin: int, cout: int, kernel: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.PReLU(cout)]


class DemoHRNet(nn.Module):
    """``[B, 3, S, S]`` normalised RGB (S divisible by 16) -> ``[B, embedding_size]``."""

    def __init__(self, embedding_size: int = 128, input_size: int = 112, dropout: float = 0.0,
                 fp16: bool = False) -> None:
        super().__init__()
        if input_size % (UNSHUFFLE * 4) or embedding_size < 1:
            raise ConfigError(f"demo_hr_net: input_size must be a multiple of 16 and embedding_size >= 1, "
                              f"got {input_size}, {embedding_size}")
        self.input_size, self.embedding_size, self.fp16 = int(input_size), int(embedding_size), bool(fp16)
        layers: list[nn.Module] = [nn.PixelUnshuffle(UNSHUFFLE)]
        cin = 3 * UNSHUFFLE**2
        for cout, kernel, stride in zip(WIDTHS, KERNELS, STRIDES, strict=True):
            layers += _conv(cin, cout, kernel, stride)
            cin = cout
        self.body = nn.Sequential(*layers)
        side = input_size // (UNSHUFFLE * 4)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Sequential(nn.Linear(cin * side * side, embedding_size, bias=False),
                                  nn.BatchNorm1d(embedding_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_size, type(self).__name__)
        return self.head(self.dropout(torch.flatten(self.body(x), 1)))


if "demo_hr_net" not in BACKBONES:  # re-importing the plugin (e.g. importlib.reload) must not fail
    @register_backbone("demo_hr_net")
    def demo_hr_net(embedding_size: int = 128, input_size: int = 112, dropout: float = 0.0,
                    fp16: bool = False) -> DemoHRNet:
        """The demo's HR teacher (see the module docstring)."""
        return DemoHRNet(embedding_size, input_size, dropout, fp16)
