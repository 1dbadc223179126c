"""Optimiser and learning-rate schedule as arcface_torch builds them.

arcface_torch's ``PolynomialLRWarmup`` (power 2): linear warm-up from 0 to ``lr`` over the warm-up steps,
then ``lr * (1 - (step - warmup) / (total - warmup)) ** 2`` down to 0. We express it as a ``LambdaLR``
so its state is a plain dict and resumes exactly.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ..errors import ConfigError


def poly_warmup_factor(step: int, warmup_steps: int, total_steps: int, power: float = 2.0) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based count of optimiser steps taken)."""
    if warmup_steps > 0 and step <= warmup_steps:
        return step / warmup_steps
    progress = (min(step, total_steps) - warmup_steps) / max(1, total_steps - warmup_steps)
    return max(0.0, 1.0 - progress) ** power


def build_optimizer(
    name: str, param_groups: Iterable[dict] | Iterable[torch.nn.Parameter], lr: float, momentum: float,
    weight_decay: float,
) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(param_groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(param_groups, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"field `optimizer`: expected 'sgd' or 'adamw', got {name!r}")


def build_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: poly_warmup_factor(step, warmup_steps, total_steps)
    )
