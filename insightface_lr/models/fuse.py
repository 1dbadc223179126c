"""Fold BatchNorm into the preceding conv / linear layer for inference.

An eval-mode BN is an affine map per channel, ``y = gamma * (z - mu) / sqrt(var + eps) + beta``; when it
directly follows ``z = W x + b`` it is absorbed as ``W' = W * s``, ``b' = (b - mu) * s + beta`` with
``s = gamma / sqrt(var + eps)`` (per output channel), saving one memory pass per layer on CPU.
Pairs are found as consecutive children of ``nn.Sequential`` containers, which is how our students
(and arcface_torch's MobileFaceNet) are built; BN before a conv (IResNet's pre-activation) is left alone.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

_PAIRS = ((nn.Conv2d, nn.BatchNorm2d), (nn.Linear, nn.BatchNorm1d))


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every ``(Conv2d, BatchNorm2d)`` / ``(Linear, BatchNorm1d)``
    pair inside an ``nn.Sequential`` merged into the first layer (the BN becomes ``nn.Identity``).

    The input model is not modified. Only valid for inference: the folded copy has no BN statistics left
    to adapt (apply FaceBN before folding, not after).
    """
    folded = copy.deepcopy(model).eval()
    for container in folded.modules():
        if not isinstance(container, nn.Sequential):
            continue
        for index in range(len(container) - 1):
            layer, norm = container[index], container[index + 1]
            if any(type(layer) is a and type(norm) is b for a, b in _PAIRS) and norm.track_running_stats:
                container[index] = _fold_pair(layer, norm)
                container[index + 1] = nn.Identity()
    return folded


@torch.no_grad()
def _fold_pair(layer: nn.Conv2d | nn.Linear, norm: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    scale = torch.rsqrt(norm.running_var.double() + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight.double()
    shift = -norm.running_mean.double() * scale
    if norm.bias is not None:
        shift = shift + norm.bias.double()
    fused = copy.deepcopy(layer)
    if fused.bias is None:  # conv/linear before BN carry no bias; the fold needs one
        fused.bias = nn.Parameter(fused.weight.new_zeros(fused.weight.shape[0]))
    view = (-1,) + (1,) * (fused.weight.dim() - 1)  # scale output channels (dim 0) of the weight
    weight = fused.weight.double() * scale.reshape(view)
    bias = fused.bias.double() * scale + shift
    fused.weight.copy_(weight.to(fused.weight.dtype))
    fused.bias.copy_(bias.to(fused.weight.dtype))
    return fused
