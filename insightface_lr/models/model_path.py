"""Which paths name a model, and of which kind: the one rule the trainer, ``demo`` and the loaders share.

A model is named by a file (``backbone.pth``, ``student.pt``, ``model.onnx``), an insightface model package
folder, or an MXNet checkpoint, which is not one file: its prefix (``.../model`` for ``model-symbol.json`` +
``model-0000.params``), either file, or the folder holding them all name it. A plain ``Path.exists()`` refuses a
prefix, so every "is this a model path" question goes through :func:`model_kind`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from ..errors import ConfigError
from .mxnet.checkpoint import is_mxnet_checkpoint

ModelKind = Literal["mxnet", "onnx", "onnx_package", "torch"]
# what the messages say is accepted (the same list everywhere)
ACCEPTED_MODELS = ("a backbone.pth, student.pt or .onnx file, an insightface model package folder, or an MXNet "
                   "checkpoint (its prefix, -symbol.json, -NNNN.params or folder)")


def model_kind(path: str | Path) -> ModelKind | None:
    """How ``path`` is loaded: ``"mxnet"``, ``"onnx"`` (a file), ``"onnx_package"`` (a folder with a
    ``manifest.json``), ``"torch"`` (any other file: a state dict, checkpoint or student file), or None when
    nothing there can be a model."""
    path = Path(path)
    if is_mxnet_checkpoint(path):  # before the folder test: a folder with *-symbol.json is not an ONNX package
        return "mxnet"
    if path.is_dir():
        return "onnx_package"
    if path.is_file():
        return "onnx" if path.suffix.lower() == ".onnx" else "torch"
    return None


def is_onnx_model(path: str | Path) -> bool:
    """Whether ``path`` runs in onnxruntime (no torch layers: it cannot be fine-tuned)."""
    return model_kind(path) in ("onnx", "onnx_package")


def check_model_path(path: str | Path, what: str, also: str = "") -> ModelKind:
    """The kind of the model ``path`` names, or a :class:`ConfigError` naming ``what`` (a field or flag);
    ``also`` names another accepted value (``"'teacher'"``) in the message."""
    kind = model_kind(path)
    if kind is None:
        raise ConfigError(f"{what}: {path} does not exist (expected {also + ' or ' if also else ''}{ACCEPTED_MODELS})")
    return kind
