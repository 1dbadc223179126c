"""Static int8 quantisation of an exported graph: ONNX Runtime QDQ format, per-channel int8 weights.

``export --int8 --calibrate FACES``: the float graph of :func:`~insightface_lr.models.export.export_onnx`
(112 input, in-graph resize stem, BN folded) gets QuantizeLinear/DequantizeLinear pairs around its convs and
its final Gemm; activation ranges come from running the graph on the calibration faces, shown to it as it sees
faces in use: a low-resolution student's faces are first made its native-size 8-bit probes, then enlarged to
the graph input, exactly as the evaluation (and an up-sampled small face in insightface) reaches it
(:func:`insightface_lr.eval.int8_check.calibration_inputs`).
Weights: int8, one scale per output channel (a depthwise filter's range differs
by orders of magnitude between channels; ORT has no per-channel activation scales); activations: uint8 with a
zero point (the PReLU outputs are far from symmetric), ranges at the 99.99th percentile of each tensor's values
(ORT's Percentile calibration: the few extreme values MinMax spends the 256 levels on cost more than clipping
them). Kept in float: the resize stem (a fixed resampling of the pixels; rounding there would move every face),
the first :data:`FLOAT_CONVS` convs, and the PReLUs and residual Adds (each int8 tensor between them is one more
rounding of the activations). ONNX Runtime runs the QDQ graph as integer convs (QLinearConv), and insightface
loads it like any model.

Why (BENCHMARKS.md section 7; a 16-px ``bridge_student`` trained on real faces, mean cosine distance int8 vs
float32 on dev.bin's 16-px probes): MinMax ranges of HR faces 0.0092; of the LR probes 0.0085; with the percentile
0.0039; with the first three convs and the PReLU/Add float 0.0022. Per layer, quantising one conv alone costs
0.0009-0.0016 for the first three (they see the most detailed maps), 0.0001-0.0007 for each later one and 0.00015
for the final Gemm (BN folded into it): no single layer is the cause. The accuracy change of one calibration on a
1,200-pair set still moves by several tenths of a point either way (the 10-fold threshold choice flips pairs), so
:func:`quantize_int8` has it measured on held-out faces (:class:`Int8Calibration`, whose check lives in
:mod:`insightface_lr.eval.int8_check`) and refuses a graph that loses more than the user's bound plus the check's
own standard error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError

QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")  # PRelu and the residual Adds run in float between DequantizeLinear/Quantize
FLOAT_CONVS = 3  # the network's first convs (after the resize stem) stay float: each moves the embedding most
STEM_PREFIX = "/stem/"  # node names of ExportGraph.stem in the TorchScript exporter's naming
MAX_COSINE_DISTANCE = 0.1  # int8 vs float on the calibration faces: beyond this the quantisation is broken
PERCENTILE = 99.99  # activation ranges: this percentile of each tensor's values (module docstring)
MAX_ACCURACY_DROP = 0.5  # points of held-out verification accuracy int8 may lose by default (export --int8-max-drop)
MIN_CHECK_PAIRS = 20  # fewer held-out pairs than this: no accuracy is measured (the report says so)


@dataclass
class Int8Calibration:
    """What :func:`quantize_int8` calibrates on (``inputs``, graph inputs) and checks the int8 graph against:
    ``heldout`` graph inputs ``[2P,3,S,S]`` of ``P`` pairs (rows 2i, 2i+1; ``issame`` [P]) from faces it was not
    calibrated on (:func:`heldout_pairs`), and the most verification accuracy it may lose, ``max_drop`` points
    beyond the check's own standard error (inf: report only; see :mod:`insightface_lr.eval.int8_check`), in
    batches of ``batch_size``. ``report`` is filled by :func:`quantize_int8`."""

    inputs: np.ndarray
    heldout: np.ndarray | None = None
    issame: np.ndarray | None = None
    max_drop: float = MAX_ACCURACY_DROP
    batch_size: int = 64  # faces per calibration batch
    report: dict[str, Any] = field(default_factory=dict)
    # the held-out accuracy check, ``check(float_path, int8_path, calibration) -> report``, raising ConfigError
    # when int8 loses too much: :func:`insightface_lr.eval.int8_check.check_heldout`, handed in by the caller
    # because measuring verification accuracy is the evaluation's (a layer above this one)
    check: Callable[[Path, Path, Int8Calibration], dict[str, Any]] | None = None


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over an in-memory array, in batches of one size (ORT's
    histogram calibrators fail on a shorter last batch): the last ``len % batch_size`` inputs are left out."""

    def __init__(self, name: str, inputs: np.ndarray, batch_size: int) -> None:
        self.name, self.inputs, self.batch_size = name, inputs, max(1, min(batch_size, len(inputs)))
        self._iter = self._batches()

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self.inputs) - self.batch_size + 1, self.batch_size):
            yield {self.name: self.inputs[start : start + self.batch_size]}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = self._batches()


def quantize_int8(float_path: str | Path, int8_path: str | Path, inputs: np.ndarray | Int8Calibration,
                  batch_size: int = 64) -> Path:
    """Write the QDQ int8 version of ``float_path`` to ``int8_path``, calibrated on ``inputs`` (graph inputs,
    :func:`~insightface_lr.eval.int8_check.calibration_inputs`, or an :class:`Int8Calibration`); raises
    ModelLoadError when its embeddings of the calibration inputs are far from the float graph's (cosine distance
    above :data:`MAX_COSINE_DISTANCE`), and whatever the calibration's ``check`` raises (ConfigError when it loses
    too much accuracy on the held-out pairs)."""
    calibration = (inputs if isinstance(inputs, Int8Calibration)
                   else Int8Calibration(np.asarray(inputs), batch_size=batch_size))
    inputs, batch_size = calibration.inputs, calibration.batch_size
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
            quantize_static(
                str(prepared), str(int8_path), _Batches(proto.graph.input[0].name, inputs, batch_size),
                quant_format=QuantFormat.QDQ, op_types_to_quantize=list(QUANTIZED_OPS), per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=float_nodes(proto),
                calibrate_method=CalibrationMethod.Percentile,
                extra_options={"WeightSymmetric": True, "ActivationSymmetric": False, "CalibPercentile": PERCENTILE},
            )
    finally:
        prepared.unlink(missing_ok=True)
    compact_names(int8_path)
    distance = embedding_distance(float_path, int8_path, inputs[: 4 * batch_size])
    if not distance <= MAX_COSINE_DISTANCE:
        raise ModelLoadError(f"{int8_path}: int8 graph disagrees with the float one (mean cosine distance "
                             f"{distance:.3f} > {MAX_COSINE_DISTANCE}); calibrate on faces like the ones in use")
    pairs = 0 if calibration.issame is None else len(calibration.issame)
    checked = calibration.check(float_path, int8_path, calibration) if calibration.check is not None else {}
    calibration.report = {"cosine_distance": distance, "pairs": pairs, **checked}
    return Path(int8_path)


def float_nodes(proto: Any) -> list[str]:
    """Nodes kept in float: the resize stem and the first :data:`FLOAT_CONVS` convs of the network after it."""
    stem = [node.name for node in proto.graph.node if node.name.startswith(STEM_PREFIX)]
    convs = [node.name for node in proto.graph.node if node.op_type == "Conv" and node.name not in stem]
    return stem + convs[:FLOAT_CONVS]


def heldout_pairs(faces: np.ndarray, labels: np.ndarray | None = None, issame: np.ndarray | None = None,
                  every: int = 5, max_pairs: int = 3000, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Split calibration faces into ``(calibration faces, held-out pair faces [2P,H,W,3], issame [P])``.

    ``labels`` (one identity per face): every ``every``-th identity is held out; its pairs are every same-identity
    pair and as many different-identity pairs, at most ``max_pairs`` in all, drawn with ``seed``. ``issame`` (the
    faces are a verification set's pairs, rows 2i, 2i+1): the last 1/``every`` of the pairs is held out. Neither:
    no held-out pairs (None, None)."""
    if issame is not None:
        keep = 2 * (len(issame) - len(issame) // every)
        return faces[:keep], faces[keep:], np.asarray(issame[keep // 2:], dtype=bool)
    if labels is None:
        return faces, None, None
    labels = np.asarray(labels)
    held = np.isin(labels, np.unique(labels)[::every])
    if held.all():  # a single identity: nothing would be left to calibrate on
        return faces, None, None
    index, rng = np.flatnonzero(held), np.random.default_rng(seed)
    same = np.array([(a, b) for i, a in enumerate(index) for b in index[i + 1:] if labels[a] == labels[b]],
                    dtype=np.int64).reshape(-1, 2)
    same = same[rng.permutation(len(same))[: max_pairs // 2]]
    other = rng.choice(index, size=(4 * len(same) + 8, 2))
    other = other[labels[other[:, 0]] != labels[other[:, 1]]][: len(same)]
    same = same[: len(other)]
    # alternating genuine / impostor, so that each of the 10 contiguous folds of the accuracy holds both
    pairs, flags = np.stack([same, other], axis=1).reshape(-1, 2), np.tile([True, False], len(same))
    return faces[~held], faces[pairs.reshape(-1)], flags


def embedding_distance(path_a: str | Path, path_b: str | Path, inputs: np.ndarray) -> float:
    """Mean cosine distance between the embeddings two graphs give ``inputs``."""
    a, b = (o / np.maximum(np.linalg.norm(o, axis=1, keepdims=True), 1e-12) for o in
            (embed_onnx(path_a, inputs), embed_onnx(path_b, inputs)))
    return float(np.mean(1.0 - np.sum(a * b, axis=1)))


def embed_onnx(path: str | Path, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """float64 ``[N, D]`` embeddings of graph inputs by the ONNX file at ``path`` (onnxruntime, CPU)."""
    import onnxruntime

    from ..runtime import ort_session_options

    session = onnxruntime.InferenceSession(str(path), ort_session_options(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: inputs[i : i + batch_size]})[0]
                           for i in range(0, len(inputs), batch_size)]).astype(np.float64)


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
    """The quantiser's advice on the root logger and its calibrators' progress (print() on stdout) silenced."""
    import contextlib
    import io

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)
