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

from .model_path import model_kind
from .mxnet_checkpoint import load_mxnet_checkpoint
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


class FrozenModel(nn.Module):
    """A frozen embedding network (a distillation teacher, or any model under evaluation):
    ``forward(x [B,3,S,S] model input, RGB) -> [B,D]`` without gradients.

    ``train()`` cannot switch it out of eval mode (BatchNorm statistics and dropout stay fixed while the
    student trains) and ``requires_grad_()`` cannot unfreeze it. ``checksum`` identifies the weights and
    keys the teacher-embedding cache.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        checksum: str | None = None,
        embedding_size: int | None = None,
        input_size: int | None = None,
        fast: bool = False,
    ) -> None:
        """``fast``: run the frozen network through :func:`~insightface_lr.models.inference.inference_net` (BN
        folded, channels-last where measured faster; built on first use); ``model`` stays the network as
        loaded, with its BatchNorm layers (what FaceBN adapts and a student started from it copies)."""
        super().__init__()
        self.model, self.fast = model, fast
        self.input_size = int(input_size or getattr(model, "input_size", 112))
        self.checksum = checksum or state_dict_sha256(model.state_dict())
        self.requires_grad_(False)
        self.train(False)
        size = embedding_size or getattr(model, "embedding_size", None)
        self.embedding_size = int(size) if size else self._probe_embedding_size()

    def train(self, mode: bool = True) -> FrozenModel:
        # Frozen means frozen: a trainer's blanket model.train() must not re-enable BN updates here.
        return super().train(False)

    def requires_grad_(self, requires_grad: bool = True) -> FrozenModel:
        return super().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: float [B,3,S,S], model input (data.pixels), RGB -> embeddings float [B,D] (not normalised)."""
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != (self.input_size, self.input_size):
            raise ValueError(
                f"teacher expects input [B,3,{self.input_size},{self.input_size}], got {list(x.shape)}"
            )
        with torch.no_grad():
            out = self._runner(x.device)(x)
        # some backbones (arcface_torch mbf with norm_output) return (embedding, norm)
        return out[0] if isinstance(out, (tuple, list)) else out

    def _runner(self, device: torch.device) -> nn.Module:
        """The module that computes the embeddings: ``model``, or its inference copy (kept outside the module
        tree, so it is not in the state dict, and rebuilt when the input moves to another device)."""
        if not self.fast:
            return self.model
        cached = self.__dict__.get("_inference")
        if cached is None or cached[0] != device:
            from .inference import inference_net

            cached = self.__dict__["_inference"] = (device, inference_net(self.model))
        return cached[1]

    def _probe_embedding_size(self) -> int:
        device = next((p.device for p in self.model.parameters()), torch.device("cpu"))
        x = torch.zeros(2, 3, self.input_size, self.input_size, device=device)
        return int(self.forward(x).shape[-1])


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
    MXNet checkpoint (prefix, either file, or its folder: :mod:`.mxnet_checkpoint`)."""
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
