"""Which torch device a process uses: one rule for training, evaluation and the demo.

``auto``: the CUDA device of this process when CUDA is present (``local_rank`` under ``torchrun``), else the
CPU; ``cpu``; ``cuda``: the CUDA device of this process; ``cuda:N``: device N. Anything else, or CUDA asked
for where there is none, is a :class:`~insightface_lr.errors.ConfigError` naming ``source`` (the flag or
config field the value came from).
"""

from __future__ import annotations

import torch

from .errors import ConfigError


def resolve_device(preference: str | torch.device = "auto", local_rank: int = 0,
                   source: str = "--device") -> torch.device:
    """The device for ``preference`` in the process of ``local_rank``; always indexed for CUDA."""
    text = str(preference)
    if text == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"{source}: expected auto, cpu, cuda or cuda:N, got {text!r}")
    if device.type == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"{source}: {text!r} requested but no CUDA device is available")
    index = local_rank if device.index is None else device.index
    if index >= torch.cuda.device_count():
        raise ConfigError(f"{source}: {text!r} requested but this machine has {torch.cuda.device_count()} "
                          "CUDA device(s)")
    return torch.device("cuda", index)
