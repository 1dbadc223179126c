"""Frozen teachers: an arcface_torch ``backbone.pth``, a full training checkpoint, our student file, an ONNX
file or package, or a module, wrapped so that nothing can unfreeze it.

Reading weight files and inferring their network is :mod:`insightface_lr.models.weights`; our own student file
format is :mod:`insightface_lr.models.student_file`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .frozen import FrozenModel
from .model_path import model_kind
from .mxnet.checkpoint import load_mxnet_checkpoint
from .student_file import STUDENT_FORMAT, build_student, import_student_plugins, load_student, save_student
from .weights import (
    CHECKPOINT_KEYS,
    IRESNET_BLOCKS,
    backbone_state_dict,
    build_from_state_dict,
    file_sha256,
    infer_embedding_size,
    infer_input_size,
    infer_network,
    load_strict,
    load_weights_file,
    state_dict_sha256,
    strip_prefixes,
)

# names other modules imported from here before the split; kept so their imports keep working
__all__ = [
    "CHECKPOINT_KEYS", "FrozenModel", "IRESNET_BLOCKS", "STUDENT_FORMAT", "Teacher", "build_from_state_dict",
    "file_sha256", "infer_embedding_size", "infer_input_size", "infer_network", "load_frozen_model",
    "load_model_file", "load_strict", "load_student", "load_teacher", "load_weights_file", "save_student",
    "state_dict_sha256", "strip_prefixes",
]


Teacher = FrozenModel  # what training calls it


def load_frozen_model(
    path_or_module: str | Path | nn.Module,
    network: str | None = None,
    embedding_size: int | None = None,
    device: str | torch.device = "cpu",
) -> FrozenModel:
    """A frozen model from a ``.pth``/``.pt`` state dict or checkpoint (or a ``save_student`` file), an
    ``.onnx`` file, an insightface model package folder, an MXNet checkpoint (prefix, file or folder), or a
    module.

    ``network`` (a registered backbone name) is inferred from the keys when None; ``embedding_size`` is
    read from the final BatchNorm1d when None (arcface_torch: 512). Raises ModelLoadError naming the file.
    """
    if isinstance(path_or_module, nn.Module):
        if isinstance(path_or_module, FrozenModel):
            return path_or_module.to(device)
        return FrozenModel(path_or_module, embedding_size=embedding_size).to(device)
    path = Path(path_or_module)
    kind = model_kind(path)
    if kind == "mxnet":
        model, _meta = load_model_file(path)
        return FrozenModel(model, checksum=file_sha256(model.params_path)).to(device)
    if kind in ("onnx", "onnx_package") or path.suffix.lower() == ".onnx":  # a missing .onnx: onnx's own message
        from .onnx_teacher import OnnxTeacher

        if kind == "onnx_package":  # an insightface model package (manifest v2)
            return OnnxTeacher.from_package(path, device=str(device))
        return OnnxTeacher(path, device=str(device))
    model, _meta = load_model_file(path, network, embedding_size)
    return FrozenModel(model, checksum=file_sha256(path)).to(device)


load_teacher = load_frozen_model  # what training calls it


def load_model_file(
    path: str | Path, network: str | None = None, embedding_size: int | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """``(eval-mode model, meta)`` from a save_student file, an arcface_torch state dict / checkpoint, or an
    MXNet checkpoint (prefix, either file, or its folder: :mod:`.mxnet.checkpoint`)."""
    path = Path(path)
    if model_kind(path) == "mxnet":
        model = load_mxnet_checkpoint(path)
        return model, {"network": model.network, "source": str(model.params_path), "output": model.output_note}
    obj = load_weights_file(path)
    if isinstance(obj, Mapping) and obj.get("format") == STUDENT_FORMAT:  # one of our own save_student files
        import_student_plugins(obj, path)
        return build_student(obj, path), dict(obj.get("meta") or {})
    state_dict = backbone_state_dict(obj, path)
    network = network or infer_network(state_dict, source=path)
    embedding_size = embedding_size or infer_embedding_size(state_dict) or 512
    input_size = infer_input_size(state_dict) or 112
    model = build_from_state_dict(
        network, state_dict, embedding_size=embedding_size, input_size=input_size, source=path
    )
    return model, {"network": network, "source": str(path)}
