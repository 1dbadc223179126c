"""Students that start from a pretrained network: ``student_init = "teacher"`` or a weights path.

What practitioners do when a pretrained recogniser exists: fine-tune *it* on low-resolution faces rather than
train a new network. The student becomes a trainable copy of that network, with its registered network name,
input size (LR faces are enlarged to it, as evaluation does) and embedding size, which replace the config's
``network``, ``student_input_size`` and ``embedding_size`` (the run's classifier and distillation terms are
sized from them). Any model :func:`~insightface_lr.models.teacher.load_teacher` reads as a torch module works:
an arcface_torch ``backbone.pth``, our ``student.pt``, an MXNet model-zoo checkpoint. An ONNX graph runs in
onnxruntime and has no torch layers to train: it is refused in one line.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .config import TrainConfig


@dataclass
class StudentInit:
    """A trainable copy of a pretrained network and what it was started from."""

    module: nn.Module
    network: str
    embedding_size: int
    input_size: int
    meta: dict[str, Any]  # {"student_init": "teacher" | path, "source": path, "sha256": checksum} (plain values)

    def resolve(self, cfg: TrainConfig) -> TrainConfig:
        """``cfg`` with the network, input and embedding size of the network the student starts from."""
        return replace(cfg, network=self.network, embedding_size=self.embedding_size,
                       student_input_size=self.input_size)


def wants_teacher_network(cfg: TrainConfig) -> bool:
    return cfg.student_init.strip() == "teacher"


def load_student_init(cfg: TrainConfig, teacher: nn.Module | None, device: torch.device) -> StudentInit | None:
    """The student's starting network for ``cfg.student_init`` (None: a new network of ``cfg.network``)."""
    choice = cfg.student_init.strip()
    if not choice:
        return None
    if choice == "teacher":
        if teacher is None:
            raise ConfigError("field `student_init`: 'teacher' needs field `teacher` (the pretrained model)")
        return trainable_copy(teacher, str(cfg.teacher), choice)
    from ..models.model_path import check_model_path
    from ..models.teacher import load_teacher

    if check_model_path(choice, "field `student_init`", also="'teacher'") in ("onnx", "onnx_package"):
        raise onnx_refusal("field `student_init`", choice)  # before loading it: it could never train
    return trainable_copy(load_teacher(choice, device=device), choice, choice)


def onnx_refusal(what: str, source: str | Path) -> ConfigError:
    """The one-line refusal of an ONNX model where a trainable copy is needed."""
    return ConfigError(f"{what}: {source} is an ONNX graph (run by onnxruntime, no torch layers to train); start "
                       "from a torch or MXNet checkpoint of the same model")


def trainable_copy(frozen: nn.Module, source: str, choice: str) -> StudentInit:
    """A deep copy of the frozen model's network with its parameters trainable again (the parameters a network
    declares fixed, e.g. an MXNet BatchNorm's ``fix_gamma`` scale, stay frozen)."""
    from ..models.onnx_teacher import OnnxTeacher

    if isinstance(frozen, OnnxTeacher):
        raise onnx_refusal("field `student_init`", source)
    module = copy.deepcopy(getattr(frozen, "model", frozen))
    network = getattr(module, "network", None)
    if not isinstance(network, str) or not network:
        raise ConfigError(f"field `student_init`: cannot tell which registered network {source} is "
                          f"({type(module).__name__}); load it from a weights file")
    fixed = set(module.fixed_parameters()) if hasattr(module, "fixed_parameters") else set()
    for name, parameter in module.named_parameters():
        parameter.requires_grad_(name not in fixed)
    module.train()
    meta = {"student_init": choice, "source": source, "sha256": str(getattr(frozen, "checksum", ""))}
    return StudentInit(module, network, int(frozen.embedding_size), int(frozen.input_size), meta)
