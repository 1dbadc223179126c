"""One device rule for training, evaluation and the demo (CUDA faked where the machine has none)."""

from __future__ import annotations

import pytest
import torch

from insightface_lr.devices import resolve_device
from insightface_lr.errors import ConfigError
from insightface_lr.train.config import build_config


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_rules_with_cuda(two_gpus) -> None:
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)  # one GPU per torchrun process
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device(torch.device("cuda", 1)) == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="this machine has 2 CUDA device"):
        resolve_device("cuda:2")


def test_rules_without_cuda(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="field `device`: 'cuda:1' requested but no CUDA device"):
        resolve_device("cuda:1", source="field `device`")
    for bad in ("gpu", "mps", "cuda:x", ""):
        with pytest.raises(ConfigError, match="expected auto, cpu, cuda or cuda:N"):
            resolve_device(bad)


def test_training_config_takes_what_the_demo_passes_it() -> None:
    """The demo hands its resolved device (``cuda:1`` for ``demo --device cuda:1``) to the trainer's config."""
    assert build_config({"device": "cuda:1"}).device == "cuda:1"
    with pytest.raises(ConfigError, match="field `device`"):
        build_config({"device": "gpu"})
