"""Static int8 quantisation of an exported graph: ONNX Runtime QDQ format, per-channel int8 weights.

``export --int8 --calibrate FACES``: the float graph of :func:`~insightface_lr.models.export.export_onnx`
(112 input, in-graph resize stem, BN folded) gets QuantizeLinear/DequantizeLinear pairs around its convs and
its final Gemm; activation ranges come from running the graph on the calibration faces, shown to it exactly as
it sees faces in use (aligned crops resized to the graph input, normalised by ``data/pixels.py``, its stem taking them
down to the student's native size), so the ranges are those of low-resolution faces. Weights: int8, one scale
per output channel (a depthwise filter's range differs by orders of magnitude between channels); activations:
uint8 with a zero point (the PReLU outputs are far from symmetric). The resize stem stays float: its MatMuls
are a fixed resampling of the pixels, cheap next to the convs, and rounding there would move every face.
ONNX Runtime runs the QDQ graph as integer convs (QLinearConv), and insightface loads it like any model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ModelLoadError

QUANTIZED_OPS = ("Conv", "Gemm", "MatMul", "Add", "PRelu", "Flatten")
STEM_PREFIX = "/stem/"  # node names of ExportGraph.stem in the TorchScript exporter's naming
MAX_COSINE_DISTANCE = 0.1  # int8 vs float on the calibration faces: beyond this the quantisation is broken


def calibration_inputs(faces: np.ndarray, input_size: int) -> np.ndarray:
    """uint8 ``[N,H,W,3]`` RGB faces -> float32 ``[N,3,S,S]`` graph inputs (resized to ``input_size``)."""
    import torch

    from ..data.degrade import resize
    from ..data.pixels import normalize, to_unit

    if faces.ndim != 4 or faces.shape[-1] != 3 or faces.dtype != np.uint8 or len(faces) == 0:
        raise ConfigError(f"int8 calibration: expected uint8 faces [N,H,W,3], got {faces.dtype} {faces.shape}")
    x = to_unit(torch.from_numpy(np.ascontiguousarray(faces)).permute(0, 3, 1, 2))
    if x.shape[-1] != input_size or x.shape[-2] != input_size:
        x = resize(x, input_size, "bicubic")
    return normalize(x).numpy().astype(np.float32)


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over an in-memory array."""

    def __init__(self, name: str, inputs: np.ndarray, batch_size: int) -> None:
        self.name, self.inputs, self.batch_size = name, inputs, batch_size
        self._iter = self._batches()

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self.inputs), self.batch_size):
            yield {self.name: self.inputs[start : start + self.batch_size]}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = self._batches()


def quantize_int8(float_path: str | Path, int8_path: str | Path, inputs: np.ndarray, batch_size: int = 64) -> Path:
    """Write the QDQ int8 version of ``float_path`` to ``int8_path``, calibrated on ``inputs`` (graph inputs,
    :func:`calibration_inputs`); raises ModelLoadError when its embeddings of ``inputs`` are far from the
    float graph's (cosine distance above :data:`MAX_COSINE_DISTANCE`)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    int8_path = Path(int8_path)
    prepared = int8_path.with_name(int8_path.name + ".prep.onnx")
    try:
        with _quiet_root_logger():  # the quantiser logs advice on the root logger, not the user's concern
            # shape inference + constant folding: every bias becomes an initializer the quantiser can see
            quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
            proto = onnx.load(str(prepared))
            stem = [node.name for node in proto.graph.node if node.name.startswith(STEM_PREFIX)]
            quantize_static(
                str(prepared), str(int8_path), _Batches(proto.graph.input[0].name, inputs, batch_size),
                quant_format=QuantFormat.QDQ, op_types_to_quantize=list(QUANTIZED_OPS), per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=stem,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
            )
    finally:
        prepared.unlink(missing_ok=True)
    compact_names(int8_path)
    distance = embedding_distance(float_path, int8_path, inputs[: 4 * batch_size])
    if not distance <= MAX_COSINE_DISTANCE:
        raise ModelLoadError(f"{int8_path}: int8 graph disagrees with the float one (mean cosine distance "
                             f"{distance:.3f} > {MAX_COSINE_DISTANCE}); calibrate on faces like the ones in use")
    return Path(int8_path)


def embedding_distance(path_a: str | Path, path_b: str | Path, inputs: np.ndarray) -> float:
    """Mean cosine distance between the embeddings two graphs give ``inputs``."""
    import onnxruntime

    from ..runtime import ort_session_options

    outs = []
    for path in (path_a, path_b):
        session = onnxruntime.InferenceSession(str(path), ort_session_options(),
                                               providers=["CPUExecutionProvider"])
        outs.append(session.run(None, {session.get_inputs()[0].name: inputs})[0].astype(np.float64))
    a, b = (o / np.maximum(np.linalg.norm(o, axis=1, keepdims=True), 1e-12) for o in outs)
    return float(np.mean(1.0 - np.sum(a * b, axis=1)))


def compact_names(path: str | Path) -> None:
    """Rename every node and inner tensor of the graph at ``path`` to a short ``n<i>`` / ``t<i>``: the QDQ
    graph's generated names (``/model/body/body.7/body/body.3/Conv_output_0_scale``) are a fifth of the file.
    The graph's input and output keep their names (insightface reads them); no name starts with Sub/Mul."""
    import onnx

    proto = onnx.load(str(path))
    graph = proto.graph
    keep = {v.name for v in graph.input} | {v.name for v in graph.output} | {""}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        return name if name in keep else names.setdefault(name, f"t{len(names)}")

    for tensor in graph.initializer:
        tensor.name = short(tensor.name)
    for index, node in enumerate(graph.node):
        node.name = f"n{index}"
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    del graph.value_info[:]  # inferred shapes of inner tensors: onnxruntime infers them again on load
    onnx.save(proto, str(path))


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
