"""An int8 graph checked as the evaluation sees faces: its calibration inputs and its held-out accuracy verdict.

``export --int8`` quantises with :mod:`insightface_lr.models.quantize` (a layer below this one) and hands it
:func:`check_heldout`, which measures 10-fold verification accuracy (:mod:`.verification`) on held-out pairs.

Why a standard error: a few hundred held-out pairs make a noisy check. On the README's real-face student it read
a change of -0.60 points while val.bin and dev.bin showed +0.07 and +0.42. Both graphs are scored on the same
pairs, so the noise of their difference is the paired one: with ``d_i = correct_int8_i - correct_float_i`` (each
pair right or wrong under its fold's threshold), the standard error of the accuracy change is
``100 * sqrt(var(d, ddof=1) / P)`` points. The graph is refused only when it loses more than ``max_drop`` *plus*
that standard error: a drop the check cannot tell from its own noise is reported, not refused.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..models.quantize import MIN_CHECK_PAIRS, Int8Calibration, embed_onnx
from .verification import kfold_ids, l2_normalize, verification_metrics


def calibration_inputs(faces: np.ndarray, input_size: int, probe_size: int | None = None) -> np.ndarray:
    """uint8 ``[N,H,W,3]`` RGB faces -> float32 ``[N,3,S,S]`` graph inputs of side ``input_size``.

    ``probe_size`` (a student's native input, smaller than the faces): the faces are first made 8-bit
    ``probe_size`` probes and then enlarged to the input, as the evaluation hands them to the graph
    (:mod:`insightface_lr.eval.probes`); otherwise they are resized to the input directly."""
    import torch

    from ..data.degrade import resize
    from ..data.pixels import normalize, normalize_uint8, to_unit
    from .probes import lr_probes, to_input_size

    if faces.ndim != 4 or faces.shape[-1] != 3 or faces.dtype != np.uint8 or len(faces) == 0:
        raise ConfigError(f"int8 calibration: expected uint8 faces [N,H,W,3], got {faces.dtype} {faces.shape}")
    if probe_size is not None and probe_size < min(faces.shape[1:3]) and faces.shape[1] == faces.shape[2]:
        low = torch.from_numpy(lr_probes(faces, int(probe_size))).permute(0, 3, 1, 2)
        return to_input_size(normalize_uint8(low.contiguous()), input_size).numpy().astype(np.float32)
    x = to_unit(torch.from_numpy(np.ascontiguousarray(faces)).permute(0, 3, 1, 2))
    if x.shape[-1] != input_size or x.shape[-2] != input_size:
        x = resize(x, input_size, "bicubic")
    return normalize(x).numpy().astype(np.float32)


def pair_correctness(path: str | Path, inputs: np.ndarray, issame: np.ndarray) -> tuple[float, np.ndarray]:
    """``(10-fold accuracy %, correct [P] bools)`` of the graph at ``path`` on pairs of graph inputs (rows 2i,
    2i+1), each face embedded with its mirror image as the evaluation does; a pair is correct when its distance
    is below its fold's threshold (chosen on the other folds) exactly when it is a genuine pair."""
    views = np.stack([embed_onnx(path, inputs), embed_onnx(path, np.ascontiguousarray(inputs[..., ::-1]))])
    issame = np.asarray(issame, dtype=bool)
    folds = min(10, len(issame))
    result = verification_metrics(views, issame, nrof_folds=folds)
    emb = l2_normalize(views.sum(axis=0))
    dist = np.sum(np.square(emb[0::2] - emb[1::2]), axis=1)
    correct = (dist < result.fold_threshold[kfold_ids(len(issame), folds)]) == issame
    return 100.0 * result.accuracy_mean, correct


def paired_standard_error(float_correct: np.ndarray, int8_correct: np.ndarray) -> float:
    """Standard error (points) of the accuracy change int8 - float32 measured on the same pairs."""
    d = np.asarray(int8_correct, dtype=np.float64) - np.asarray(float_correct, dtype=np.float64)
    if d.size < 2:
        return math.inf
    return 100.0 * math.sqrt(float(np.var(d, ddof=1)) / d.size)


def refuses(change: float, standard_error: float, max_drop: float) -> bool:
    """Whether a change of ``change`` points is a loss beyond ``max_drop`` by more than its standard error."""
    return bool(-change > max_drop + standard_error)


def check_heldout(float_path: str | Path, int8_path: str | Path, calibration: Int8Calibration) -> dict[str, Any]:
    """The held-out accuracies (%) of both graphs, their change and its standard error; ConfigError when the
    int8 graph loses more than ``max_drop`` plus that standard error (module docstring)."""
    pairs = 0 if calibration.issame is None else len(calibration.issame)
    if calibration.heldout is None or pairs < MIN_CHECK_PAIRS:
        return {"pairs": pairs}
    (float_acc, float_ok), (int8_acc, int8_ok) = (pair_correctness(p, calibration.heldout, calibration.issame)
                                                  for p in (float_path, int8_path))
    change, se = int8_acc - float_acc, paired_standard_error(float_ok, int8_ok)
    if refuses(change, se, calibration.max_drop):
        raise ConfigError(f"--int8: the int8 graph loses {-change:.2f} points of verification accuracy on {pairs} "
                          f"held-out pairs of the calibration faces (float32 {float_acc:.2f} %, int8 {int8_acc:.2f} "
                          f"%), more than --int8-max-drop {calibration.max_drop:g} plus the check's standard error "
                          f"{se:.2f} (paired, the same pairs for both); nothing written")
    return {"pairs": pairs, "float32": float_acc, "int8": int8_acc, "change": change, "standard_error": se}
