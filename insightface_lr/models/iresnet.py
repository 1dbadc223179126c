"""IResNet-18/34/50/100/200, state_dict-compatible with InsightFace arcface_torch ``backbones/iresnet.py``.

Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition" (CVPR 2019) use this
"improved" pre-activation residual net (BN-conv-BN-PReLU-conv-BN blocks, a BN-dropout-FC-BN "E" output
head). Module names and registration order match arcface_torch exactly, so a ``backbone.pth`` trained
there loads here with ``strict=True`` and vice versa.

Input ``[B, 3, S, S]`` in the model-input convention (data.pixels, RGB); output ``[B, embedding_size]``, not
L2-normalised. ``S = input_size`` (112 by default); other sizes only change ``fc``'s in-features
(``512 * s * s`` with ``s`` the trunk's output side, 7 for 112), for students run at native low resolution.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import register_backbone

# arcface_torch layer counts (blocks per stage), one stage per down-sampling step
IRESNET_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "r18": (2, 2, 2, 2),
    "r34": (3, 4, 6, 3),
    "r50": (3, 4, 14, 3),
    "r100": (3, 13, 30, 3),
    "r200": (6, 26, 60, 6),
}
STAGE_WIDTHS = (64, 128, 256, 512)


def trunk_side(input_size: int, downsamplings: int = 4) -> int:
    """Spatial side after ``downsamplings`` stride-2 3x3 convs with padding 1: ceil-halving (112 -> 7)."""
    side = input_size
    for _ in range(downsamplings):
        side = (side + 1) // 2
    return side


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, plus identity (or 1x1-conv+BN shortcut)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        # attribute order = arcface_torch's, so state_dict key order matches too
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = _conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNet(nn.Module):
    """arcface_torch IResNet. ``layers``: blocks per stage, e.g. ``(3, 4, 14, 3)`` for r50."""

    def __init__(
        self,
        layers: tuple[int, int, int, int],
        embedding_size: int = 512,
        input_size: int = 112,
        dropout: float = 0.0,
        fp16: bool = False,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        _check_args(layers, embedding_size, input_size, dropout)
        self.input_size = int(input_size)
        self.embedding_size = int(embedding_size)
        self.fp16 = bool(fp16)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-05)
        self.prelu = nn.PReLU(64)
        inplanes = 64
        for index, (planes, blocks) in enumerate(zip(STAGE_WIDTHS, layers, strict=True), start=1):
            self.add_module(f"layer{index}", _make_stage(inplanes, planes, blocks))
            inplanes = planes
        self.bn2 = nn.BatchNorm2d(512, eps=1e-05)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        side = trunk_side(self.input_size)
        self.fc = nn.Linear(512 * side * side, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-05)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        # same scheme as arcface_torch so training from scratch behaves alike
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False  # arcface_torch freezes the output BN's scale
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, IBasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, input_size, input_size]`` -> ``[B, embedding_size]``."""
        check_input(x, self.input_size, type(self).__name__)
        # fp16 autocasts the convolutional trunk only (CUDA, as arcface_torch); fc/features run in fp32
        with torch.autocast(device_type="cuda", enabled=self.fp16 and x.is_cuda):
            x = self.prelu(self.bn1(self.conv1(x)))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            x = self.dropout(torch.flatten(self.bn2(x), 1))
        x = self.fc(x.float() if self.fp16 else x)
        return self.features(x)


def _make_stage(inplanes: int, planes: int, blocks: int) -> nn.Sequential:
    """One stride-2 stage: the first block down-samples (1x1 conv + BN shortcut), the rest keep shape."""
    downsample = nn.Sequential(
        nn.Conv2d(inplanes, planes, kernel_size=1, stride=2, bias=False),
        nn.BatchNorm2d(planes, eps=1e-05),
    )
    modules = [IBasicBlock(inplanes, planes, 2, downsample)]
    modules += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*modules)


def _check_args(layers: tuple[int, ...], embedding_size: int, input_size: int, dropout: float) -> None:
    if len(layers) != 4 or any(int(n) < 1 for n in layers):
        raise ConfigError(f"IResNet layers must be 4 positive block counts, got {layers!r}")
    if int(embedding_size) < 1:
        raise ConfigError(f"backbone option embedding_size must be >= 1, got {embedding_size!r}")
    if int(input_size) < 8:
        raise ConfigError(f"backbone option input_size must be >= 8 pixels, got {input_size!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ConfigError(f"backbone option dropout must be in [0, 1), got {dropout!r}")


def check_input(x: torch.Tensor, input_size: int, model: str) -> None:
    """A clear error instead of a matmul shape mismatch deep inside ``fc``/GDC."""
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return
    if x.dim() != 4 or x.shape[1] != 3 or x.shape[-2] != input_size or x.shape[-1] != input_size:
        raise ConfigError(
            f"{model} was built for input [B, 3, {input_size}, {input_size}] but got {list(x.shape)}; "
            f"resize the faces to {input_size} or build the backbone with input_size={x.shape[-1]}"
        )


def _factory(name: str):
    def build(
        embedding_size: int = 512,
        input_size: int = 112,
        dropout: float = 0.0,
        fp16: bool = False,
        zero_init_residual: bool = False,
    ) -> IResNet:
        return IResNet(IRESNET_LAYERS[name], embedding_size, input_size, dropout, fp16, zero_init_residual)

    build.__name__ = build.__qualname__ = f"iresnet{name[1:]}"
    build.__doc__ = f"arcface_torch ``{name}``: IResNet with blocks per stage {IRESNET_LAYERS[name]}."
    return register_backbone(name)(build)


iresnet18 = _factory("r18")
iresnet34 = _factory("r34")
iresnet50 = _factory("r50")
iresnet100 = _factory("r100")
iresnet200 = _factory("r200")
