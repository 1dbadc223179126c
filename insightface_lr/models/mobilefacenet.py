"""MobileFaceNet ("mbf"), state_dict-compatible with InsightFace arcface_torch ``backbones/mobilefacenet.py``.

Chen et al., "MobileFaceNets: Efficient CNNs for Accurate Real-Time Face Verification" (2018):
a stride-2 stem, MobileNetV2-style bottlenecks (1x1 expand -> 3x3 depthwise -> 1x1 linear projection),
a 1x1 conv to 512 channels and a global depthwise conv (GDC) instead of average pooling, then
Linear -> BatchNorm1d. arcface_torch's variant uses ``scale=2`` widths and blocks ``(1, 4, 6, 2)``
(about 2.06M parameters with a 512-d embedding); module names match it, so its checkpoints load strictly.

Input ``[B, 3, S, S]`` in the model-input convention (data.pixels); output ``[B, embedding_size]``. ``S = input_size``
(112 by default) only changes the GDC kernel (the trunk's output side, 7 for 112).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import register_backbone
from .iresnet import check_input, trunk_side


class ConvBlock(nn.Module):
    """conv (no bias) -> BN -> PReLU, held in ``.layers`` as arcface_torch names it."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.PReLU(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class LinearBlock(nn.Module):
    """conv (no bias) -> BN with no activation (a linear bottleneck)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DepthWise(nn.Module):
    """Bottleneck: 1x1 expand to ``groups`` channels, 3x3 depthwise (``stride``), 1x1 linear projection."""

    def __init__(self, cin: int, cout: int, residual: bool = False, stride: int = 2, groups: int = 1):
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBlock(cin, groups),
            ConvBlock(groups, groups, kernel=3, stride=stride, padding=1, groups=groups),
            LinearBlock(groups, cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return out + x if self.residual else out


class Residual(nn.Module):
    """``num_block`` shape-preserving residual bottlenecks of width ``c`` expanded to ``groups``."""

    def __init__(self, c: int, num_block: int, groups: int):
        super().__init__()
        self.layers = nn.Sequential(*[DepthWise(c, c, True, 1, groups) for _ in range(num_block)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class GDC(nn.Module):
    """Global depthwise conv (kernel = feature side) -> flatten -> [dropout] -> Linear -> BatchNorm1d."""

    def __init__(self, embedding_size: int, side: int, dropout: float = 0.0):
        super().__init__()
        # Dropout has no parameters, so it keeps arcface_torch's indices (0, 2, 3) for the weights
        self.layers = nn.Sequential(
            LinearBlock(512, 512, kernel=side, groups=512),
            nn.Flatten(),
            nn.Linear(512, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.layers[1](self.layers[0](x)))
        return self.layers[3](self.layers[2](x))


class MobileFaceNet(nn.Module):
    """arcface_torch MobileFaceNet (``blocks`` residual bottlenecks per stage, widths ``64*scale``...)."""

    def __init__(
        self,
        embedding_size: int = 512,
        input_size: int = 112,
        dropout: float = 0.0,
        fp16: bool = False,
        blocks: tuple[int, int, int, int] = (1, 4, 6, 2),
        scale: int = 2,
    ) -> None:
        super().__init__()
        if int(input_size) < 16 or int(embedding_size) < 1 or not 0.0 <= float(dropout) < 1.0:
            raise ConfigError(
                "mbf options: need input_size >= 16, embedding_size >= 1, 0 <= dropout < 1; got "
                f"input_size={input_size!r}, embedding_size={embedding_size!r}, dropout={dropout!r}"
            )
        self.input_size, self.embedding_size, self.fp16 = int(input_size), int(embedding_size), bool(fp16)
        c1, c2 = 64 * scale, 128 * scale
        # arcface_torch: a grouped (not fully depthwise) 3x3 conv when the first stage has one block
        first = (
            ConvBlock(c1, c1, kernel=3, stride=1, padding=1, groups=64)
            if blocks[0] == 1
            else Residual(c1, blocks[0], groups=128)
        )
        self.layers = nn.Sequential(
            ConvBlock(3, c1, kernel=3, stride=2, padding=1),
            first,
            DepthWise(c1, c1, stride=2, groups=128),
            Residual(c1, blocks[1], groups=128),
            DepthWise(c1, c2, stride=2, groups=256),
            Residual(c2, blocks[2], groups=256),
            DepthWise(c2, c2, stride=2, groups=512),
            Residual(c2, blocks[3], groups=256),
        )
        self.conv_sep = ConvBlock(c2, 512)
        self.features = GDC(embedding_size, trunk_side(self.input_size), dropout)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, input_size, input_size]`` -> ``[B, embedding_size]``."""
        check_input(x, self.input_size, type(self).__name__)
        with torch.autocast(device_type="cuda", enabled=self.fp16 and x.is_cuda):
            x = self.layers(x)
        x = self.conv_sep(x.float() if self.fp16 else x)
        return self.features(x)


@register_backbone("mbf")
def mobilefacenet(
    embedding_size: int = 512, input_size: int = 112, dropout: float = 0.0, fp16: bool = False
) -> MobileFaceNet:
    """arcface_torch ``mbf``: MobileFaceNet, blocks (1, 4, 6, 2), scale 2."""
    return MobileFaceNet(embedding_size, input_size, dropout, fp16)
