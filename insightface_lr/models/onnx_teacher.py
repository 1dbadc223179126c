"""A frozen teacher from an InsightFace ONNX recognition model (``w600k_r50.onnx``, ``glintr100.onnx``...).

Input convention, read from insightface 2.1's ``ArcFaceONNX``: it feeds
``cv2.dnn.blobFromImages(bgr, 1/std, size, (mean,)*3, swapRB=True)``, i.e. RGB pixels ``(p - mean) / std``.
``mean/std`` is ``0/1`` when one of the graph's first 8 nodes is named ``Sub*``/``_minus*`` and one is named
``Mul*``/``_mul*`` (MXNet conversions normalise inside the graph), else insightface's default (our own
convention on 0..255 values, :data:`insightface_lr.data.pixels.ONNX_MEAN`). Our RGB model inputs are turned
back into 0..255 values by :mod:`insightface_lr.data.pixels`, and the model gets ``(p - mean) / std``.
onnxruntime is imported lazily so that importing this module stays cheap.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.pixels import ONNX_MEAN, ONNX_STD, model_input_to_pixel_values
from ..errors import ModelLoadError
from .frozen import FrozenModel as Teacher
from .weights import file_sha256

_NUMPY_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def detect_input_normalisation(path: str | Path) -> tuple[float, float]:
    """(mean, std) of pixel values the model expects, by ArcFaceONNX's rule on the first 8 node names."""
    import onnx

    nodes = onnx.load(str(path), load_external_data=False).graph.node[:8]
    has_sub = any(n.name.startswith(("Sub", "_minus")) for n in nodes)
    has_mul = any(n.name.startswith(("Mul", "_mul")) for n in nodes)
    return (0.0, 1.0) if has_sub and has_mul else (ONNX_MEAN, ONNX_STD)


class _OnnxRunner(nn.Module):
    """Runs an onnxruntime session on torch tensors; batches are cut to the model's batch size if fixed."""

    def __init__(self, session, input_mean: float, input_std: float, swap_rb: bool) -> None:
        super().__init__()
        self.session = session
        self.input_mean, self.input_std, self.swap_rb = float(input_mean), float(input_std), swap_rb
        spec = session.get_inputs()[0]
        self.input_name, self.dtype = spec.name, _NUMPY_DTYPES[spec.type]
        self.fixed_batch = spec.shape[0] if isinstance(spec.shape[0], int) and spec.shape[0] > 0 else None
        self.output_name = session.get_outputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = model_input_to_pixel_values(x.detach().float().cpu()).numpy()
        blob = (pixels - self.input_mean) / self.input_std
        if self.swap_rb:
            blob = blob[:, ::-1]
        blob = np.ascontiguousarray(blob, dtype=self.dtype)
        if self.fixed_batch is None:
            out = self.session.run([self.output_name], {self.input_name: blob})[0]
        else:
            out = self._run_fixed_batch(blob)
        return torch.from_numpy(np.asarray(out, dtype=np.float32)).to(x.device)

    def _run_fixed_batch(self, blob: np.ndarray) -> np.ndarray:
        # a graph exported with batch N accepts exactly N faces: pad the last chunk with zeros
        n, count = self.fixed_batch, blob.shape[0]
        padded = np.zeros((-(-count // n) * n, *blob.shape[1:]), dtype=blob.dtype)
        padded[:count] = blob
        chunks = [
            self.session.run([self.output_name], {self.input_name: padded[i : i + n]})[0]
            for i in range(0, padded.shape[0], n)
        ]
        return np.concatenate(chunks)[:count]


class OnnxTeacher(Teacher):
    """Frozen ONNX recognition model: ``forward(x [B,3,S,S] our normalised RGB) -> [B,D]`` torch tensor.

    ``input_mean``/``input_std`` override the detected pixel normalisation (see module docstring);
    ``swap_rb=True`` for the rare model that expects BGR. ``device``: "cpu", "cuda" or "auto" (CUDA
    execution provider when onnxruntime has it). ``checksum`` is the sha256 of the file.
    """

    def __init__(
        self,
        path: str | Path,
        device: str = "auto",
        input_mean: float | None = None,
        input_std: float | None = None,
        swap_rb: bool = False,
    ) -> None:
        path = Path(path)
        session = _open_session(path, device)
        try:
            input_size, embedding_size = _check_recognition_model(session, path)
            mean, std = detect_input_normalisation(path)
            mean = mean if input_mean is None else input_mean
            std = std if input_std is None else input_std
            runner = _OnnxRunner(session, mean, std, swap_rb)
        except ModelLoadError:
            raise
        except Exception as exc:  # a graph onnxruntime accepts can still hold non-UTF-8 names, bytes fields...
            raise ModelLoadError(f"{path}: corrupt ONNX graph ({type(exc).__name__}: {exc})") from exc
        super().__init__(runner, checksum=file_sha256(path), embedding_size=embedding_size, input_size=input_size)
        self.path = path

    @classmethod
    def from_package(cls, folder: str | Path, device: str = "auto") -> OnnxTeacher:
        """The recognition model of an insightface model package (``manifest.json`` v2), with its
        declared preprocessing (``"embedded"``: pixels fed raw, mean 0 / std 1)."""
        path, mean, std = read_package_recognition(Path(folder))
        return cls(path, device=device, input_mean=mean, input_std=std)

    @property
    def input_mean(self) -> float:
        return self.model.input_mean

    @property
    def input_std(self) -> float:
        return self.model.input_std


def read_package_recognition(folder: Path) -> tuple[Path, float, float]:
    """(onnx path, mean, std) of ``tasks.recognition`` in ``folder/manifest.json`` (insightface manifest v2)."""
    manifest = folder / "manifest.json"
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
        task = doc["tasks"]["recognition"]
        name, prep = task["file"], task.get("preprocessing", {"mean": ONNX_MEAN, "std": ONNX_STD})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{manifest}: not a model package with a tasks.recognition entry ({exc!r})") from exc
    if doc.get("manifest_version") != 2:
        raise ModelLoadError(f"{manifest}: manifest_version must be 2, got {doc.get('manifest_version')!r}")
    path = (folder / name).resolve()
    if folder.resolve() not in path.parents or path.suffix.lower() != ".onnx":
        raise ModelLoadError(f"{manifest}: tasks.recognition.file {name!r} is not an .onnx inside the package")
    if prep == "embedded":
        return path, 0.0, 1.0
    try:
        return path, float(prep["mean"]), float(prep["std"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{manifest}: tasks.recognition.preprocessing {prep!r} is not 'embedded' "
                             "or {mean, std}") from exc


def _open_session(path: Path, device: str):
    import onnxruntime

    if not path.is_file():
        raise ModelLoadError(f"{path}: no such ONNX file")
    available = onnxruntime.get_available_providers()
    providers = ["CPUExecutionProvider"]
    if device != "cpu" and "CUDAExecutionProvider" in available:
        providers.insert(0, "CUDAExecutionProvider")
    from ..runtime import ort_session_options

    try:
        return onnxruntime.InferenceSession(str(path), ort_session_options(), providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for invalid graphs
        raise ModelLoadError(f"{path}: onnxruntime cannot load this file: {exc}") from exc


def _check_recognition_model(session, path: Path) -> tuple[int, int | None]:
    """(input size, embedding size) of a recognition model, else ModelLoadError saying what is wrong."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    shape = inputs[0].shape if inputs else []
    problems = []
    if len(inputs) != 1 or len(shape) != 4 or shape[1] != 3:
        problems.append(f"inputs {[(i.name, i.shape) for i in inputs]} (expected one [N,3,H,W] image input)")
    elif inputs[0].type not in _NUMPY_DTYPES:
        problems.append(f"input type {inputs[0].type} (expected float or float16)")
    if len(outputs) != 1 or len(outputs[0].shape) != 2:
        problems.append(f"outputs {[(o.name, o.shape) for o in outputs]} (expected one [N,D] embedding)")
    if problems:
        raise ModelLoadError(f"{path}: not a face recognition model: " + "; ".join(problems))
    height, width = shape[2], shape[3]
    if not isinstance(height, int) or not isinstance(width, int):
        height = width = 112  # dynamic spatial axes: InsightFace's aligned crop size
    if height != width:
        raise ModelLoadError(f"{path}: not a face recognition model: input {height}x{width} is not square")
    dim = outputs[0].shape[1]
    return height, dim if isinstance(dim, int) else None
