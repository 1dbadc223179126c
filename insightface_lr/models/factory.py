"""The one way to create a backbone: the registered factory, with its options checked first.

Factory contract (every backbone): ``get_backbone(name, embedding_size=..., input_size=..., dropout=...,
fp16=..., **extra)`` returns an ``nn.Module`` with int attributes ``input_size`` and ``embedding_size`` whose
forward maps ``[B, 3, input_size, input_size]`` faces in the model-input convention of
:mod:`insightface_lr.data.pixels` (RGB) to un-normalised ``[B, embedding_size]`` embeddings.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from ..errors import ConfigError
from ..registry import BACKBONES


def get_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Build the backbone registered as ``name``; an option it does not take is a :class:`ConfigError`.

    >>> get_backbone("r50", embedding_size=512, input_size=112)  # doctest: +SKIP
    """
    factory = BACKBONES.get(name)
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as exc:
        options = ", ".join(p for p in inspect.signature(factory).parameters if p not in ("args", "kwargs"))
        raise ConfigError(
            f"backbone {name!r} does not take options {sorted(kwargs)} ({exc}); it takes: {options}"
        ) from None
    return factory(**kwargs)
