"""Models to evaluate: our student ``.pt``, an arcface_torch ``backbone.pth`` / checkpoint, an ``.onnx`` file, or an
MXNet checkpoint (``model-symbol.json`` + ``model-0000.params``, read by :mod:`insightface_lr.models.mxnet.checkpoint`).

Everything becomes an :class:`EvalModel`: a callable ``fn(x [B,3,S,S] normalised RGB) -> [B,D]`` plus the
facts the sweep needs (input side, whether FaceBN can adapt it). For torch networks ``fn`` is the inference
path of :mod:`insightface_lr.models.inference` (BN folded, channels-last where measured faster). Torch files
are read through :func:`insightface_lr.models.teacher.load_model_file` (``weights_only=True``, network inferred
from the keys).
ONNX graphs (and insightface model packages) run in onnxruntime: their BatchNorm layers are folded or out of
reach, so FaceBN is reported as n/a for them rather than silently evaluated without adaptation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..devices import resolve_device


@dataclass(frozen=True)
class EvalModel:
    """A model ready for :func:`insightface_lr.eval.report.run_sweep`.

    ``fn`` maps float ``[B, 3, input_size, input_size]`` faces in the model-input convention (data.pixels,
    RGB) to ``[B, D]`` un-normalised embeddings. ``module`` is the underlying torch network (what FaceBN
    wraps), None for ONNX.
    """

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    module: nn.Module | None
    input_size: int
    embedding_size: int
    supports_facebn: bool
    source: str = ""
    kind: str = "torch"  # "torch" or "onnx"

    def facebn_reason(self) -> str:
        """Why FaceBN cells of this model are n/a ("" when FaceBN applies)."""
        if self.supports_facebn:
            return ""
        if self.kind == "onnx":
            return "n/a: ONNX graph, no BatchNorm statistics to adapt"
        return "n/a: the network has no BatchNorm2d layer with running statistics"


def load_eval_model(
    path: str | Path | nn.Module,
    network: str | None = None,
    device: str | torch.device = "cpu",
    name: str | None = None,
) -> EvalModel:
    """Load ``path`` (student ``.pt``, ``backbone.pth``, ``.onnx``, model-package folder, MXNet checkpoint prefix /
    file / folder, or a module).

    ``network``: registered backbone name for a state dict whose network cannot be inferred.
    ``name``: label in reports (default: the file stem, or the module's class name).
    """
    from ..models.model_path import model_kind
    from ..models.teacher import FrozenModel, load_frozen_model, load_model_file
    from ..models.weights import file_sha256

    device = resolve_device(device)
    if isinstance(path, nn.Module):
        frozen = load_frozen_model(path, device=device)
        return _from_torch(frozen, name or type(path).__name__, source="<module>")
    path = Path(path)
    label = name or path.stem
    kind = model_kind(path)
    if kind == "mxnet":  # a torch module with real BatchNorm layers: FaceBN applies
        frozen = load_frozen_model(path, device=device)
        return _from_torch(frozen, label, source=str(path))
    if kind in ("onnx", "onnx_package") or path.suffix.lower() == ".onnx":
        frozen = load_frozen_model(path, device=str(device))
        return EvalModel(label, frozen, None, frozen.input_size, frozen.embedding_size, False, str(path), "onnx")
    model, _meta = load_model_file(path, network)
    frozen = FrozenModel(model, checksum=file_sha256(path)).to(device)
    return _from_torch(frozen, label, source=str(path))


def _from_torch(frozen: nn.Module, name: str, source: str) -> EvalModel:
    """``fn`` runs the inference copy (BN folded, NHWC where faster); ``module`` stays the network FaceBN
    wraps, with its BN layers."""
    from ..models.inference import inference_net
    from ..models.teacher import FrozenModel

    module = frozen.model
    has_bn = any(isinstance(m, nn.BatchNorm2d) and m.running_mean is not None for m in module.modules())
    fast = FrozenModel(inference_net(module), checksum=frozen.checksum, embedding_size=frozen.embedding_size,
                       input_size=frozen.input_size)
    return EvalModel(name, fast, module, frozen.input_size, frozen.embedding_size, has_bn, source, "torch")
