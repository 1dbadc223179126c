"""MXNet symbol ops as torch modules: the op table :data:`OPS`, one entry per op.

Defaults are mxnet's (``src/operator``), since a symbol JSON lists only the attributes its author set:
Convolution stride/dilate 1, pad 0, ``num_group`` 1, bias unless ``no_bias``; BatchNorm ``eps`` 1e-3,
``momentum`` 0.9 (torch's momentum is ``1 - m``), ``fix_gamma`` **True** (gamma held at 1),
``use_global_stats`` False, ``axis`` 1; LeakyReLU ``act_type`` "leaky", ``slope`` 0.25; FullyConnected
``flatten`` True; Pooling "max", stride 1, pad 0, ``pooling_convention`` "valid", ``count_include_pad`` True;
Dropout ``p`` 0.5; Concat ``dim`` 1.

An entry (:class:`Op`) holds the op's builder and its parameter inputs. The builder makes, from the node's
attributes and the shape of its first data input, the modules that run in sequence on the node's data inputs
(only the first may take several); each :class:`Param` names one of the node's inputs (by position) that is a
variable of the ``.params`` file, the attribute of the last module it fills, whether mxnet stores it as
``aux:`` (running statistics) and whether it is held fixed (a ``fix_gamma`` BatchNorm's gamma). Every other
input is data. The graph builder (:mod:`.graph`) reads nothing else about an op, so adding one is one entry
in :data:`OPS` (and, unless an existing builder fits, one builder function). Ops not in the table are refused.
"""

from __future__ import annotations

import ast
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Attrs = dict[str, str]
Built = list[nn.Module]
MAX_ATTRIBUTE_TEXT = 1000


@dataclass(frozen=True)
class Param:
    """A parameter input of a node: ``inputs[position]`` fills ``attribute`` of the op's last module."""

    position: int
    attribute: str
    aux: bool = False  # mxnet stores it as ``aux:NAME`` (BatchNorm's moving statistics), else ``arg:NAME``
    fixed: bool = False  # held at 1 whatever the file holds, and never trained (fix_gamma)


@dataclass(frozen=True)
class Op:
    """One op: ``build(attrs, shape of the first data input) -> modules`` and ``params(attrs) -> Param``s."""

    build: Callable[[Attrs, torch.Size], Built]
    params: Callable[[Attrs], tuple[Param, ...]] = lambda attrs: ()


class OpError(ValueError):
    """An attribute value an op cannot honour (the graph builder names the node and the file)."""


def parse_value(text: str) -> Any:
    """mxnet attribute text -> Python: ``"(3, 3)"`` -> (3, 3), ``"True"`` -> True, ``"1e-3"`` -> 0.001."""
    lowered = text.strip()
    if len(lowered) > MAX_ATTRIBUTE_TEXT:  # no real attribute is this long; literal_eval of deep nesting recurses
        raise OpError(f"attribute value of {len(lowered)} characters (at most {MAX_ATTRIBUTE_TEXT})")
    if lowered.lower() in ("true", "false"):
        return lowered.lower() == "true"
    if lowered.lower() == "none":
        return None
    try:
        return ast.literal_eval(lowered)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return lowered


def _get(attrs: Attrs, key: str, default: Any) -> Any:
    return parse_value(attrs[key]) if key in attrs else default


def _pair(attrs: Attrs, key: str, default: int) -> tuple[int, int]:
    value = _get(attrs, key, ())
    if isinstance(value, int):
        value = (value,)
    value = tuple(value) or (default, default)
    if len(value) == 1:
        value = value * 2
    if len(value) != 2:
        raise OpError(f"{key}={attrs[key]} (only 2-D NCHW ops are supported)")
    return int(value[0]), int(value[1])


class Scalar(nn.Module):
    """``_plus_scalar`` and friends: ``x (op) s`` or, reversed, ``s (op) x``."""

    FUNCS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
        "_plus_scalar": lambda x, s: x + s, "_minus_scalar": lambda x, s: x - s,
        "_rminus_scalar": lambda x, s: s - x, "_mul_scalar": lambda x, s: x * s,
        "_div_scalar": lambda x, s: x / s, "_rdiv_scalar": lambda x, s: s / x,
        "_maximum_scalar": lambda x, s: torch.clamp(x, min=s), "_minimum_scalar": lambda x, s: torch.clamp(x, max=s),
        "_power_scalar": lambda x, s: x ** s,
    }

    def __init__(self, op: str, scalar: float) -> None:
        super().__init__()
        self.op, self.scalar = op, float(scalar)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.FUNCS[self.op](x, self.scalar)

    def extra_repr(self) -> str:
        return f"{self.op}, {self.scalar}"


class Binary(nn.Module):
    """Element-wise (and broadcasting) add/sub/mul/div of two inputs; ``sum`` adds any number of inputs."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if self.kind == "sum":
            out = xs[0]
            for x in xs[1:]:
                out = out + x
            return out
        a, b = xs
        return {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}[self.kind](a, b)

    def extra_repr(self) -> str:
        return self.kind


class Concat(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.dim)


class Clip(nn.Module):
    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        self.low, self.high = float(low), float(high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, self.low, self.high)


class Reshape(nn.Module):
    """mxnet ``Reshape`` with positive sizes, 0 (keep that input dimension) and -1 (inferred)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape([x.shape[i] if s == 0 else s for i, s in enumerate(self.shape)])


class Detach(nn.Module):
    """``BlockGrad``/``stop_gradient``: the value passes, the gradient does not."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach()


class GlobalStatsMixin:
    """BatchNorm with ``use_global_stats``: the running statistics normalise in training too."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


class GlobalStatsBatchNorm1d(GlobalStatsMixin, nn.BatchNorm1d):
    pass


class GlobalStatsBatchNorm2d(GlobalStatsMixin, nn.BatchNorm2d):
    pass


def convolution(attrs: Attrs, shape: torch.Size) -> Built:
    if len(shape) != 4 or _get(attrs, "layout", "NCHW") not in ("NCHW", None):
        raise OpError(f"input shape {list(shape)} / layout {attrs.get('layout')} (only 2-D NCHW convolutions)")
    no_bias = bool(_get(attrs, "no_bias", False))
    conv = nn.Conv2d(shape[1], int(_get(attrs, "num_filter", 0)), _pair(attrs, "kernel", 0),
                     _pair(attrs, "stride", 1), _pair(attrs, "pad", 0), _pair(attrs, "dilate", 1),
                     groups=int(_get(attrs, "num_group", 1)), bias=not no_bias)
    return [conv]


def batch_norm(attrs: Attrs, shape: torch.Size) -> Built:
    if int(_get(attrs, "axis", 1)) != 1 or len(shape) not in (2, 3, 4):
        raise OpError(f"axis={attrs.get('axis')} on input {list(shape)} (only the channel axis 1 of 2-4-D inputs)")
    global_stats = bool(_get(attrs, "use_global_stats", False))
    if len(shape) == 4:
        kind = GlobalStatsBatchNorm2d if global_stats else nn.BatchNorm2d
    else:
        kind = GlobalStatsBatchNorm1d if global_stats else nn.BatchNorm1d
    bn = kind(shape[1], eps=float(_get(attrs, "eps", 1e-3)), momentum=1.0 - float(_get(attrs, "momentum", 0.9)))
    if fix_gamma(attrs):  # mxnet multiplies by 1, whatever the stored gamma
        bn.weight.requires_grad_(False)
    return [bn]


def fix_gamma(attrs: Attrs) -> bool:
    """Whether a BatchNorm node holds gamma at 1 (mxnet's default: yes)."""
    return bool(_get(attrs, "fix_gamma", True))


def batch_norm_params(attrs: Attrs) -> tuple[Param, ...]:
    return (Param(1, "weight", fixed=fix_gamma(attrs)), Param(2, "bias"), Param(3, "running_mean", aux=True),
            Param(4, "running_var", aux=True))


def weight_and_bias(attrs: Attrs) -> tuple[Param, ...]:
    """Convolution, FullyConnected: ``weight`` then, unless ``no_bias``, ``bias``."""
    return (Param(1, "weight"),) if bool(_get(attrs, "no_bias", False)) else (Param(1, "weight"), Param(2, "bias"))


def prelu_params(attrs: Attrs) -> tuple[Param, ...]:
    return (Param(1, "weight"),) if _get(attrs, "act_type", "leaky") == "prelu" else ()


def leaky_relu(attrs: Attrs, shape: torch.Size) -> Built:
    act, slope = _get(attrs, "act_type", "leaky"), float(_get(attrs, "slope", 0.25))
    if act == "prelu":
        return [nn.PReLU(shape[1])]
    if act == "rrelu":
        return [nn.RReLU(float(_get(attrs, "lower_bound", 0.125)), float(_get(attrs, "upper_bound", 0.334)))]
    simple = {"leaky": lambda: nn.LeakyReLU(slope), "elu": lambda: nn.ELU(slope), "selu": nn.SELU,
              "gelu": lambda: nn.GELU(approximate="none")}
    if act not in simple:
        raise OpError(f"act_type={act}")
    return [simple[act]()]


def activation(attrs: Attrs, shape: torch.Size) -> Built:
    act = _get(attrs, "act_type", None)
    kinds = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "softrelu": nn.Softplus, "softsign": nn.Softsign}
    if act not in kinds:
        raise OpError(f"act_type={act}")
    return [kinds[act]()]


def fully_connected(attrs: Attrs, shape: torch.Size) -> Built:
    flatten = bool(_get(attrs, "flatten", True)) and len(shape) > 2
    features = math.prod(shape[1:]) if flatten else shape[-1]
    no_bias = bool(_get(attrs, "no_bias", False))
    linear = nn.Linear(features, int(_get(attrs, "num_hidden", 0)), bias=not no_bias)
    return [nn.Flatten(), linear] if flatten else [linear]


def pooling(attrs: Attrs, shape: torch.Size) -> Built:
    kind = _get(attrs, "pool_type", "max")
    if kind not in ("max", "avg") or len(shape) != 4:
        raise OpError(f"pool_type={kind} on input {list(shape)} (max/avg on NCHW)")
    if bool(_get(attrs, "global_pool", False)):
        return [nn.AdaptiveMaxPool2d(1) if kind == "max" else nn.AdaptiveAvgPool2d(1)]
    convention = _get(attrs, "pooling_convention", "valid")
    if convention not in ("valid", "full"):
        raise OpError(f"pooling_convention={convention}")
    kernel, stride, pad = _pair(attrs, "kernel", 0), _pair(attrs, "stride", 1), _pair(attrs, "pad", 0)
    ceil = convention == "full"
    if kind == "max":
        return [nn.MaxPool2d(kernel, stride, pad, ceil_mode=ceil)]
    include_pad = bool(_get(attrs, "count_include_pad", True))
    return [nn.AvgPool2d(kernel, stride, pad, ceil_mode=ceil, count_include_pad=include_pad)]


def reshape(attrs: Attrs, shape: torch.Size) -> Built:
    target = _get(attrs, "shape", ())
    if bool(_get(attrs, "reverse", False)) or any(int(s) < -1 for s in target):
        raise OpError(f"shape={attrs.get('shape')} reverse={attrs.get('reverse')} (only sizes, 0 and -1)")
    return [Reshape(target)]


def dropout(attrs: Attrs, shape: torch.Size) -> Built:
    if _get(attrs, "mode", "training") != "training":
        raise OpError(f"mode={attrs.get('mode')} (only mode=training, identity in eval)")
    return [nn.Dropout(float(_get(attrs, "p", 0.5)))]


def _scalar(op: str) -> Callable[[Attrs, torch.Size], Built]:
    return lambda attrs, shape: [Scalar(op, float(_get(attrs, "scalar", 0.0)))]


def _fixed(factory: Callable[[], nn.Module]) -> Callable[[Attrs, torch.Size], Built]:
    return lambda attrs, shape: [factory()]


def _clip(attrs: Attrs, shape: torch.Size) -> Built:
    return [Clip(float(_get(attrs, "a_min", 0)), float(_get(attrs, "a_max", 0)))]


def _concat(attrs: Attrs, shape: torch.Size) -> Built:
    return [Concat(int(_get(attrs, "dim", 1)))]


BINARY = {
    "elemwise_add": "add", "_Plus": "add", "_plus": "add", "_add": "add", "broadcast_add": "add",
    "broadcast_plus": "add", "elemwise_sub": "sub", "_Minus": "sub", "_minus": "sub", "_sub": "sub",
    "broadcast_sub": "sub", "broadcast_minus": "sub", "elemwise_mul": "mul", "_Mul": "mul", "_mul": "mul",
    "broadcast_mul": "mul", "elemwise_div": "div", "_Div": "div", "_div": "div", "broadcast_div": "div",
    "ElementWiseSum": "sum", "add_n": "sum",
}
# the op table: op name -> its builder and parameter inputs (module docstring)
OPS: dict[str, Op] = {
    "Convolution": Op(convolution, weight_and_bias),
    "BatchNorm": Op(batch_norm, batch_norm_params),
    "LeakyReLU": Op(leaky_relu, prelu_params),
    "Activation": Op(activation),
    "FullyConnected": Op(fully_connected, weight_and_bias),
    "Pooling": Op(pooling), "Reshape": Op(reshape), "Dropout": Op(dropout),
    "Flatten": Op(_fixed(nn.Flatten)), "flatten": Op(_fixed(nn.Flatten)),
    "clip": Op(_clip), "Concat": Op(_concat), "concat": Op(_concat),
    "_copy": Op(_fixed(nn.Identity)), "identity": Op(_fixed(nn.Identity)), "Cast": Op(_fixed(nn.Identity)),
    "BlockGrad": Op(_fixed(Detach)), "stop_gradient": Op(_fixed(Detach)),
    **{op: Op(_scalar(op)) for op in Scalar.FUNCS},
    **{op: Op(_fixed(functools.partial(Binary, kind))) for op, kind in BINARY.items()},
}
