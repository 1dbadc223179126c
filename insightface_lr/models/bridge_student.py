"""The tiny low-resolution student of bridge distillation ("bridge_student", about 0.21M parameters).

Ge, Zhao, Li, Zhang, Li, "Efficient Low-Resolution Face Recognition via Bridge Distillation" (IEEE TIP
2020) distil into a student of about 0.21M parameters that runs on native low-resolution faces. Their
exact layer table is not public to us; this is our reading: a MobileNet-style net of depthwise-separable
blocks (3x3 depthwise -> BN -> PReLU -> 1x1 pointwise -> BN [-> PReLU]), channels multiples of 8, every
conv followed by a BN so :func:`insightface_lr.models.fuse.fold_batchnorm` removes them for inference,
and a global depthwise conv (GDC) head -> Linear -> BatchNorm1d as in MobileFaceNet.

Input ``[B, 3, S, S]`` in the model-input convention (data.pixels); ``S = input_size`` (16 native, 32, or 112 where
extra stride-2 stem blocks bring the map down to <= 16 first); output ``[B, embedding_size]`` (128 default).
Parameters: ~0.21M at 128-d for every input size (the stem adds ~1.4k per extra down-sampling; a 512-d
embedding adds 0.1M for the larger Linear).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import register_backbone
from .iresnet import check_input, trunk_side

# channels per stage (stem, stage1, stage2, stage3) and shape-keeping residual blocks per stage
DEFAULT_WIDTHS = (32, 64, 128, 256)
DEFAULT_BLOCKS = (1, 3, 1)
NATIVE_SIDE = 16  # the body is designed for a <= 16 px map; larger inputs are down-sampled by the stem


def conv_bn(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True, pad: bool = True
) -> list[nn.Module]:
    """conv (no bias, BN follows) -> BN [-> PReLU], as a flat list for an ``nn.Sequential``."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2 if pad else 0, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.PReLU(cout))
    return layers


class SeparableBlock(nn.Module):
    """3x3 depthwise (stride) -> BN -> PReLU -> 1x1 pointwise -> BN [-> PReLU unless residual]."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.residual = stride == 1 and cin == cout
        # a linear end on residual blocks (MobileNetV2's linear bottleneck) keeps the identity path clean
        self.body = nn.Sequential(
            *conv_bn(cin, cin, 3, stride, groups=cin),
            *conv_bn(cin, cout, 1, act=not self.residual),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + x if self.residual else out


class BridgeStudent(nn.Module):
    """Depthwise-separable face embedding net for 8-32 px faces (also 112 via a down-sampling stem)."""

    def __init__(
        self,
        embedding_size: int = 128,
        input_size: int = 16,
        dropout: float = 0.0,
        fp16: bool = False,
        widths: tuple[int, int, int, int] = DEFAULT_WIDTHS,
        blocks: tuple[int, int, int] = DEFAULT_BLOCKS,
    ) -> None:
        super().__init__()
        _check_args(embedding_size, input_size, dropout, widths, blocks)
        self.input_size, self.embedding_size, self.fp16 = int(input_size), int(embedding_size), bool(fp16)
        self.widths, self.blocks = tuple(int(w) for w in widths), tuple(int(b) for b in blocks)
        extra = _stem_downsamplings(self.input_size)
        stem = conv_bn(3, widths[0], 3, stride=2 if extra else 1)
        stem += [SeparableBlock(widths[0], widths[0], 2) for _ in range(extra - 1)]
        self.stem = nn.Sequential(*stem)
        stages: list[nn.Module] = []
        for cin, cout, repeats in zip(widths[:-1], widths[1:], blocks, strict=True):
            stages.append(SeparableBlock(cin, cout, 2))
            stages += [SeparableBlock(cout, cout) for _ in range(repeats)]
        self.body = nn.Sequential(*stages)
        side = trunk_side(trunk_side(self.input_size, extra), len(blocks))
        width = widths[-1]
        self.gdc = nn.Sequential(*conv_bn(width, width, side, groups=width, act=False, pad=False))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Sequential(
            nn.Linear(width, embedding_size, bias=False), nn.BatchNorm1d(embedding_size)
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def build_options(self) -> dict[str, object]:
        """The factory options that shape the weights (``save_student`` records them)."""
        return {"embedding_size": self.embedding_size, "input_size": self.input_size, "widths": list(self.widths),
                "blocks": list(self.blocks)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, input_size, input_size]`` -> ``[B, embedding_size]``."""
        check_input(x, self.input_size, type(self).__name__)
        with torch.autocast(device_type="cuda", enabled=self.fp16 and x.is_cuda):
            x = self.gdc(self.body(self.stem(x)))
            x = self.dropout(torch.flatten(x, 1))
        return self.head(x.float() if self.fp16 else x)


def _stem_downsamplings(input_size: int) -> int:
    """Stride-2 stem steps bringing ``input_size`` to <= ``NATIVE_SIDE``: 16 -> 0, 32 -> 1, 112 -> 3."""
    steps = 0
    while input_size > NATIVE_SIDE:
        input_size = (input_size + 1) // 2
        steps += 1
    return steps


def _check_args(embedding_size, input_size, dropout, widths, blocks) -> None:
    if int(input_size) < 8 or int(embedding_size) < 1 or not 0.0 <= float(dropout) < 1.0:
        raise ConfigError(
            "bridge_student options: need input_size >= 8, embedding_size >= 1, 0 <= dropout < 1; got "
            f"input_size={input_size!r}, embedding_size={embedding_size!r}, dropout={dropout!r}"
        )
    if len(widths) != len(blocks) + 1 or any(int(w) < 1 for w in widths) or any(int(b) < 0 for b in blocks):
        raise ConfigError(f"bridge_student widths {widths!r} need one more entry than blocks {blocks!r}")


@register_backbone("bridge_student")
def bridge_student(
    embedding_size: int = 128,
    input_size: int = 16,
    dropout: float = 0.0,
    fp16: bool = False,
    widths: tuple[int, int, int, int] = DEFAULT_WIDTHS,
    blocks: tuple[int, int, int] = DEFAULT_BLOCKS,
) -> BridgeStudent:
    """The ~0.21M-parameter student of bridge distillation (native 16 px input, 128-d by default)."""
    return BridgeStudent(embedding_size, input_size, dropout, fp16, tuple(widths), tuple(blocks))
