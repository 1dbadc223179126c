"""Students out of PyTorch: ONNX that ``insightface.model_zoo.get_model`` loads, model packages, ``.pt`` files.

How insightface 2.1 treats an ONNX file (read from ``model_zoo.py`` / ``arcface_onnx.py``):

* ``get_model("x.onnx")`` routes to ``ArcFaceONNX`` only when the input is square, ``>= 112`` and a multiple
  of 16; a dynamic batch axis is fine. A 16-px student therefore cannot be exported as a 16x16 graph.
  We export it with a **resize stem**: the graph takes InsightFace's 112x112 aligned crop and down-samples
  it inside the graph (a fixed separable matrix product, antialiased, the same kernel as our degradation)
  to the student's native size. ``resize_stem`` reproduces the stem in PyTorch.
* ``ArcFaceONNX`` feeds ``(pixel - mean) / std`` with its default mean and std in RGB order
  (``blobFromImages(..., swapRB=True)`` on BGR images) unless one of the first 8 node names starts with
  ``Sub``/``Mul`` (then 0/1): exactly our model-input convention (:mod:`insightface_lr.data.pixels`), so
  the graph holds no normalisation and we rename any node whose name would trigger the 0/1 rule.
* A model package (manifest v2) is a folder with ``manifest.json`` whose ``license`` field is the path of a
  signed ``MODEL.LICENSE``; only InsightFace signs those, so we never write one (insightface then applies
  its default terms) and put the user's own terms in ``LICENSE.txt`` and the manifest's ``license_terms``.
"""

from __future__ import annotations

import copy
import json
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path
from ..data.pixels import ONNX_MEAN, ONNX_STD
from ..errors import ConfigError, ModelLoadError
from .student_file import load_student, save_student
from .teacher import Teacher
from .weights import file_sha256

__all__ = [
    "ExportGraph", "ResizeStem", "bake_facebn", "check_onnx_matches", "export_model_package", "export_onnx",
    "load_student", "prepare_for_export", "resample_matrix", "resize_stem", "save_student",
]

KERNELS = ("bicubic", "bilinear", "area", "nearest")  # as data/degrade.DOWN_KERNELS
STUDENT_FORMAT = "insightface-lr-student"
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # insightface's package_manifest rule
_ARCFACE_MXNET_PREFIXES = ("Sub", "_minus", "Mul", "_mul")


# --- resize stem --------------------------------------------------------------------------------------
def resample_matrix(in_size: int, out_size: int, kernel: str = "bicubic") -> torch.Tensor:
    """``[out, in]`` weights of 1-D resampling, rows summing to 1; the same as ``data/degrade.resize``.

    ``bilinear``/``bicubic`` (a = -0.5) stretch the kernel by the down-sampling factor, as PIL and
    ``F.interpolate(..., antialias=True)`` do; ``area`` averages the input bins of ``adaptive_avg_pool``
    (``F.interpolate(mode="area")``); ``nearest`` picks the pixel under each output centre ("nearest-exact").
    """
    if kernel not in KERNELS:
        raise ConfigError(f"resize kernel must be one of {KERNELS}, got {kernel!r}")
    scale = in_size / out_size
    i, j = np.arange(out_size)[:, None], np.arange(in_size)[None, :]
    if kernel == "area":
        weights = (j >= np.floor(i * scale)) & (j < np.ceil((i + 1) * scale))
    elif kernel == "nearest":
        # float32 arithmetic as torch's kernel: 1.5 * (112/24) lands on 6.99999 there, not on 7
        centre = (i.astype(np.float32) + np.float32(0.5)) * np.float32(scale)
        weights = j == np.minimum(np.floor(centre), in_size - 1)
    else:
        stretch = max(scale, 1.0)  # no antialiasing needed when up-sampling
        dist = np.abs((j + 0.5 - (i + 0.5) * scale) / stretch)
        weights = _cubic(dist) if kernel == "bicubic" else np.clip(1.0 - dist, 0.0, None)
    weights = weights / weights.sum(axis=1, keepdims=True)
    return torch.from_numpy(weights.astype(np.float32))


def _cubic(d: np.ndarray, a: float = -0.5) -> np.ndarray:
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = (((d - 5) * d + 8) * d - 4) * a
    return np.where(d < 1, near, np.where(d < 2, far, 0.0))


class ResizeStem(nn.Module):
    """``[B,C,in,in] -> [B,C,out,out]``: ``W x W^T`` per channel with ``W = resample_matrix(in, out)``.

    A separable matrix product exports to two ONNX MatMuls with no Resize op (whose antialias attribute
    needs opset 18 and differs between runtimes). Down-sampling equals ``data/degrade.resize`` exactly;
    up-sampling (a native size above the graph input, unusual) is close to, not identical with, torch's.
    """

    def __init__(self, in_size: int, out_size: int, kernel: str = "bicubic") -> None:
        super().__init__()
        self.in_size, self.out_size, self.kernel = int(in_size), int(out_size), kernel
        self.register_buffer("weight", resample_matrix(self.in_size, self.out_size, kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.weight @ x @ self.weight.T
        # degrade.resize clamps bicubic overshoot to the pixel range, [-1, 1] once normalised
        return out.clamp(-1.0, 1.0) if self.kernel == "bicubic" else out


def resize_stem(x: torch.Tensor, out_size: int, kernel: str = "bicubic") -> torch.Tensor:
    """The exported graph's down-sampling, in PyTorch: ``[B,C,S,S] -> [B,C,out,out]``."""
    return ResizeStem(x.shape[-1], out_size, kernel).to(x)(x)


class ExportGraph(nn.Module):
    """What is exported: ``[B,3,input_size,input_size]`` normalised RGB -> resize stem -> model -> ``[B,D]``."""

    def __init__(self, model: nn.Module, input_size: int = 112, kernel: str = "bicubic") -> None:
        super().__init__()
        native = int(getattr(model, "input_size", input_size))
        self.stem = ResizeStem(input_size, native, kernel) if native != input_size else nn.Identity()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(self.stem(x))
        return out[0] if isinstance(out, (tuple, list)) else out


# --- ONNX export ------------------------------------------------------------------------------------
def export_onnx(
    model: nn.Module,
    path: str | Path,
    input_size: int = 112,
    fold_bn: bool = True,
    facebn: Any = None,
    opset: int = 17,
    kernel: str = "bicubic",
    check: bool = True,
    int8_calibration: np.ndarray | None = None,
) -> Path:
    """Write ``model`` as ONNX with input ``[batch,3,input_size,input_size]`` and output ``[batch,D]``.

    ``facebn``: a FaceBN (``models/facebn.py``) whose adapted statistics are copied into the BN running
    stats before export (``model`` may itself be the FaceBN). ``fold_bn``: conv/linear + BN pairs merged.
    ``check``: run the file with onnxruntime and compare with PyTorch (raises ModelLoadError if they
    differ). ``int8_calibration``: graph inputs ``[N,3,input_size,input_size]``
    (:func:`~insightface_lr.eval.int8_check.calibration_inputs`), or an ``Int8Calibration`` with its check, to
    quantise the checked float graph to int8 with (QDQ, per-channel weights). The file is written atomically.
    """
    if input_size < 112 or input_size % 16:
        warnings.warn(
            f"export_onnx: input_size {input_size} is not a multiple of 16 >= 112; "
            "insightface.model_zoo.get_model will not route this file to ArcFaceONNX (96 even becomes an "
            "attribute model)",
            stacklevel=2,
        )
    graph = ExportGraph(prepare_for_export(model, facebn, fold_bn), input_size, kernel).eval()
    path = Path(path)
    dummy = torch.randn(2, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
    with atomic_path(path) as tmp:
        _torch_onnx_export(graph, dummy, tmp, opset, fold_bn)
        _rename_mxnet_like_nodes(tmp)
        if check:
            check_onnx_matches(graph, tmp, dummy)
        if int8_calibration is not None:
            _quantize_in_place(tmp, int8_calibration)
    return path


def _quantize_in_place(path: Path, calibration: np.ndarray) -> None:
    from .quantize import quantize_int8

    float_path = path.with_name(path.name + ".float.onnx")
    path.replace(float_path)
    try:
        quantize_int8(float_path, path, calibration)
    finally:
        float_path.unlink(missing_ok=True)


def prepare_for_export(model: nn.Module, facebn: Any = None, fold_bn: bool = True) -> nn.Module:
    """An eval-mode float CPU copy with FaceBN statistics baked in and (optionally) BN folded."""
    from .facebn import FaceBN
    from .fuse import fold_batchnorm

    if isinstance(model, FaceBN):
        facebn, model = facebn or model, model.module
    if isinstance(model, Teacher):  # export the network, not the frozen no-grad wrapper
        model = model.model
    model = copy.deepcopy(model).float().cpu().eval()
    if facebn is not None:
        bake_facebn(model, facebn)
    return fold_batchnorm(model) if fold_bn else model


@torch.no_grad()
def bake_facebn(model: nn.Module, facebn: Any) -> nn.Module:
    """Copy FaceBN's adapted ``(mean, var)`` (the bank of the model's native input size) into ``model``."""
    if facebn.mode == "batch":
        raise ConfigError("export: FaceBN mode='batch' has no fixed statistics to bake in; "
                          "use mode='calibrate' and call .calibrate(target_faces) first")
    native = int(getattr(model, "input_size", 112))
    banks = getattr(facebn, "_banks", None)  # FaceBN.statistics() silently falls back to the source stats
    if facebn.mode == "calibrate" and banks is not None and (native if facebn.per_resolution else None) not in banks:
        raise ConfigError(f"export: FaceBN(mode='calibrate') has no statistics for input size {native}; call "
                          f".calibrate() on faces at that size (resize_stem) first")
    stats = facebn.statistics(native)
    layers = dict(model.named_modules())
    for name, (mean, var) in stats.items():
        bn = layers.get(name)
        if bn is None or getattr(bn, "running_mean", None) is None or bn.running_mean.shape != mean.shape:
            raise ConfigError(f"export: FaceBN layer {name!r} does not match a BatchNorm of the exported model")
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
    return model


def _torch_onnx_export(graph: nn.Module, dummy: torch.Tensor, path: Path, opset: int, fold_bn: bool) -> None:
    # TorchScript exporter: the dynamo one needs onnxscript, which is not a dependency. In EVAL mode it
    # also fuses any remaining Conv+BN; PRESERVE keeps BN nodes for fold_bn=False.
    mode = torch.onnx.TrainingMode.EVAL if fold_bn else torch.onnx.TrainingMode.PRESERVE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter deprecation / constant-folding chatter
        torch.onnx.export(
            graph, (dummy,), str(path), dynamo=False, opset_version=opset, training=mode,
            do_constant_folding=fold_bn, input_names=["input"], output_names=["embedding"],
            dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}},
        )


def _rename_mxnet_like_nodes(path: Path) -> None:
    """Prefix node names that ArcFaceONNX's ``Sub``/``Mul`` sniffing would read as 'normalises inside'."""
    import onnx

    proto = onnx.load(str(path))
    renamed = False
    for node in proto.graph.node:
        if node.name.startswith(_ARCFACE_MXNET_PREFIXES):
            node.name, renamed = f"lr/{node.name}", True
    if renamed:
        onnx.save(proto, str(path))


def check_onnx_matches(graph: nn.Module, path: Path, x: torch.Tensor, tol: float = 1e-4) -> None:
    """Raise ModelLoadError when onnxruntime's embeddings of ``x`` differ from PyTorch's (cosine > tol)."""
    import onnxruntime

    from ..runtime import ort_session_options

    session = onnxruntime.InferenceSession(str(path), ort_session_options(), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    with torch.no_grad():
        want = graph(x)
    distance = float((1 - torch.cosine_similarity(got, want, dim=1)).max())
    if not distance <= tol:
        raise ModelLoadError(f"{path}: exported graph disagrees with PyTorch (cosine distance {distance:.2e})")


# --- insightface model package --------------------------------------------------------------------------
def export_model_package(
    model: nn.Module,
    folder: str | Path,
    model_id: str,
    license: str = "non-commercial research use only",
    input_size: int = 112,
    display_name: str | None = None,
    meta: Mapping[str, Any] | None = None,
    **export_kwargs: Any,
) -> Path:
    """An insightface 2.1 model package (manifest v2, recognition task) in ``folder``; returns the folder.

    ``get_model(folder, model_task="recognition")`` loads it. The ONNX file is written first and the
    manifest last (both atomically), so a reader never sees a manifest naming a missing or partial file.
    """
    if not _MODEL_ID.fullmatch(model_id):
        raise ConfigError(f"model_id {model_id!r}: use 1-128 letters, digits, '.', '_' or '-' (insightface rule)")
    if input_size < 112 or input_size % 16:
        raise ConfigError(f"model package input_size must be a multiple of 16 >= 112, got {input_size}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    onnx_name = f"{model_id}.onnx"
    export_onnx(model, folder / onnx_name, input_size=input_size, **export_kwargs)
    embedding_dimension = _onnx_output_dim(folder / onnx_name)
    _write_text(folder / "LICENSE.txt", license.rstrip() + "\n")
    manifest = {
        "manifest_version": 2,
        "model_id": model_id,
        "display_name": display_name or model_id,
        "license": "MODEL.LICENSE",
        "license_terms": license,
        "tasks": {
            "recognition": {
                "file": onnx_name,
                "sha256": file_sha256(folder / onnx_name),
                "input_size": [input_size, input_size],
                "embedding_dimension": embedding_dimension,
                "preprocessing": {"mean": ONNX_MEAN, "std": ONNX_STD},
                "preprocessing_version": "insightface-arcface-1",
            }
        },
        "insightface_lr": dict(meta or {}),
    }
    _write_text(folder / "manifest.json", json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return folder


def _onnx_output_dim(path: Path) -> int:
    import onnx

    dims = onnx.load(str(path), load_external_data=False).graph.output[0].type.tensor_type.shape.dim
    return int(dims[1].dim_value)


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
