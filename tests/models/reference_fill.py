"""The weight fill rule recorded in tests/fixtures/iresnet_reference_keys.json (``forward.description``),
shared by the IResNet and MobileFaceNet reference-output tests."""

from __future__ import annotations

import math

import torch


def deterministic_fill(model: torch.nn.Module) -> torch.nn.Module:
    """The fill rule recorded in the fixture's ``forward.description`` (entry i in state_dict order)."""
    new = {}
    for i, (key, value) in enumerate(model.state_dict().items()):
        if not value.is_floating_point():
            new[key] = value
            continue
        base = torch.sin(torch.arange(value.numel(), dtype=torch.float64) * 0.7 + i).reshape(value.shape)
        if key.endswith("running_var"):
            t = 1.0 + 0.5 * base**2
        elif value.dim() >= 2:
            t = base * math.sqrt(1.0 / (value.numel() // value.shape[0]))
        elif key.endswith("weight"):
            t = 0.5 + 0.1 * base
        else:
            t = 0.1 * base
        new[key] = t.float()
    model.load_state_dict(new, strict=True)
    return model
