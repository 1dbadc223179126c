"""InsightFace's 1:1 verification protocol (LFW, CFP-FP, AgeDB-30 ``.bin`` sets), vectorised.

Re-states ``recognition/arcface_torch/eval/verification.py`` of InsightFace so that our numbers are
comparable with published tables:

* pair ``i`` is rows ``2i`` and ``2i+1`` of the embedding matrix; embeddings are L2-normalised and
  compared by squared Euclidean distance ``d = ||e1 - e2||^2`` (in [0, 4]); a pair is predicted
  "same" when ``d < threshold`` (strict);
* 10 contiguous folds, as ``sklearn.model_selection.KFold(n_splits=10, shuffle=False)`` makes them
  (the first ``P % 10`` folds hold one extra pair); ``nrof_folds=1`` trains and tests on all pairs;
* accuracy: on each fold the threshold of ``np.arange(0, 4, 0.01)`` with the best accuracy on the
  other nine folds (first one on ties, like ``np.argmax``) is applied to the held-out fold;
  reported as mean and (population) std over folds; TPR/FPR curves are fold means;
* VAL@FAR: on the training folds the FAR curve over ``np.arange(0, 4, 0.001)`` is inverted at
  ``far_target`` by the linear spline of ``scipy.interpolate.interp1d(kind='slinear')`` (at an
  exact hit, the LAST threshold with that FAR; between two FAR levels, linear between the last
  threshold of the lower level and the first of the upper one); threshold 0 when the target FAR is
  never reached; VAL and FAR are then measured on the held-out fold;
* flip test: embeddings of the image and of its horizontal mirror are summed, then normalised;
  XNorm is the mean norm of all unnormalised embeddings (both views).

Where InsightFace would divide by zero (a fold with no positive or no negative pair) the rate is 0,
so degenerate sets give finite numbers instead of NaN or an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from insightface_lr.errors import ConfigError, DataFormatError

ROC_THRESHOLDS = np.arange(0, 4, 0.01)
VAL_THRESHOLDS = np.arange(0, 4, 0.001)


@dataclass(frozen=True)
class VerificationResult:
    """Metrics of one verification set; ``tpr``/``fpr`` are fold means on ``thresholds`` [T]."""

    accuracy_mean: float
    accuracy_std: float
    best_threshold: float  # mean over folds of the threshold picked on the training folds
    val: float
    val_std: float
    far: float
    xnorm: float
    tpr: np.ndarray
    fpr: np.ndarray
    thresholds: np.ndarray
    fold_accuracy: np.ndarray  # [F]
    fold_threshold: np.ndarray  # [F]
    # per pair [P], at the thresholds the protocol chose for the pair's fold: judged right (accuracy), and
    # accepted at the VAL@FAR threshold; the paired bootstrap of two models reads these (eval.paired)
    pair_correct: np.ndarray
    pair_accept: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (arrays become lists of floats)."""
        out = asdict(self)
        return {k: (v.tolist() if isinstance(v, np.ndarray) else float(v)) for k, v in out.items()}


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation of ``x`` [N, D] in float64; all-zero rows stay zero (as sklearn)."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm == 0, 1.0, norm)


def fuse_flip(emb: np.ndarray, emb_flip: np.ndarray) -> np.ndarray:
    """Flip-test fusion: ``normalize(emb + emb_flip)``; both [N, D] unnormalised, returns [N, D]."""
    emb, emb_flip = np.asarray(emb), np.asarray(emb_flip)
    if emb.shape != emb_flip.shape:
        raise DataFormatError(f"fuse_flip: shapes differ, {emb.shape} vs {emb_flip.shape}")
    return l2_normalize(emb.astype(np.float64) + emb_flip)


def kfold_ids(n: int, n_folds: int) -> np.ndarray:
    """Fold index [n] of each sample for contiguous, unshuffled K folds (remainder in first folds)."""
    if not 1 <= n_folds <= max(n, 1):
        raise ConfigError(f"nrof_folds must be in [1, {n}] for {n} pairs, got {n_folds}")
    sizes = np.full(n_folds, n // n_folds)
    sizes[: n % n_folds] += 1
    return np.repeat(np.arange(n_folds), sizes)


def _fold_counts(dist: np.ndarray, issame: np.ndarray, folds: np.ndarray, n_folds: int,
                 thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per fold and threshold, the counts of positives / negatives with ``dist < t``: two [F, T].

    Equivalent to comparing every pair with every threshold, but through sorted cumulative counts so
    that memory is O(P * F) instead of O(P * T) (LFW's VAL grid is 4000 thresholds x 6000 pairs).
    """
    order = np.argsort(dist, kind="stable")
    below = np.searchsorted(dist[order], thresholds, side="left")  # [T] number of pairs with d < t
    onehot = np.zeros((dist.size + 1, n_folds), dtype=np.int64)
    onehot[np.arange(1, dist.size + 1), folds[order]] = 1
    pos = np.cumsum(onehot * np.r_[0, issame[order]][:, None], axis=0)  # [P+1, F]
    neg = np.cumsum(onehot, axis=0) - pos
    return pos[below].T, neg[below].T


def _rate(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den == 0`` (InsightFace's convention for TPR/FPR)."""
    den = np.asarray(den)
    return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def _train_counts(test: np.ndarray, n_folds: int) -> np.ndarray:
    """Counts on the training folds = all folds minus the held-out one (all folds when F == 1)."""
    return test if n_folds == 1 else test.sum(axis=0, keepdims=True) - test


def _class_sizes(issame: np.ndarray, folds: np.ndarray, n_folds: int) -> tuple[np.ndarray, np.ndarray]:
    """Numbers of positive and negative pairs in each fold: two [F] int arrays."""
    n_pos = np.bincount(folds[issame], minlength=n_folds)
    return n_pos, np.bincount(folds, minlength=n_folds) - n_pos


def _accuracy(dist: np.ndarray, issame: np.ndarray, folds: np.ndarray,
              n_folds: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """10-fold accuracy with the threshold chosen on the training folds; see module docstring."""
    tp, fp = _fold_counts(dist, issame, folds, n_folds, ROC_THRESHOLDS)  # [F, T]
    n_pos, n_neg = _class_sizes(issame, folds, n_folds)
    tp_tr, fp_tr = _train_counts(tp, n_folds), _train_counts(fp, n_folds)
    n_pos_tr, n_neg_tr = _train_counts(n_pos, n_folds), _train_counts(n_neg, n_folds)
    acc_train = (tp_tr + n_neg_tr[:, None] - fp_tr) / (n_pos_tr + n_neg_tr)[:, None]
    best = np.argmax(acc_train, axis=1)  # [F], first maximum as np.argmax in InsightFace
    rows = np.arange(n_folds)
    acc_test = (tp[rows, best] + n_neg - fp[rows, best]) / (n_pos + n_neg)
    tpr = _rate(tp, n_pos[:, None]).mean(axis=0)
    fpr = _rate(fp, n_neg[:, None]).mean(axis=0)
    return acc_test, ROC_THRESHOLDS[best], tpr, fpr


def _pair_correct(dist: np.ndarray, issame: np.ndarray, folds: np.ndarray, fold_threshold: np.ndarray) -> np.ndarray:
    """[P] bools: pair judged right at its fold's threshold (its fold mean is that fold's accuracy)."""
    return (dist < fold_threshold[folds]) == issame


def _invert_far(far: np.ndarray, thresholds: np.ndarray, target: float) -> np.ndarray:
    """Threshold [F] where each row of the non-decreasing ``far`` [F, T] reaches ``target``.

    Reproduces ``interp1d(far, thresholds, kind='slinear')(target)``: a degree-1 B-spline whose
    knots repeat where FAR is flat, so an exact hit returns the LAST threshold of the flat run.
    Rows that never reach ``target`` get threshold 0 (InsightFace's fallback). One deliberate
    difference: when ``target`` equals the row's maximum FAR (e.g. ``far_target=1``) scipy evaluates
    a zero-width knot interval and returns 0; we return the last threshold, as for any exact hit.
    (scipy >= 1.9 refuses the repeated FAR values altogether: deepinsight/insightface#2152.)
    """
    rows = np.arange(far.shape[0])
    j = (far <= target).sum(axis=1) - 1  # far[:, 0] == 0 <= target, so j >= 0
    j1 = np.minimum(j + 1, far.shape[1] - 1)
    x0, x1 = far[rows, j], far[rows, j1]
    gap = x1 - x0
    w = 1.0 / np.where(gap > 0, gap, 1.0)  # same operation order as scipy's de Boor evaluation
    interp = np.where(gap > 0, thresholds[j] * (w * (x1 - target)) + thresholds[j1] * (w * (target - x0)),
                      thresholds[j])
    return np.where(far.max(axis=1) >= target, interp, 0.0)


def _val_far(dist: np.ndarray, issame: np.ndarray, folds: np.ndarray, n_folds: int,
             far_target: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-fold VAL and FAR [F] at the threshold giving ``far_target`` on the training folds, and [P] whether
    each pair is accepted there."""
    _, fp = _fold_counts(dist, issame, folds, n_folds, VAL_THRESHOLDS)
    n_pos, n_neg = _class_sizes(issame, folds, n_folds)
    far_train = _rate(_train_counts(fp, n_folds), _train_counts(n_neg, n_folds)[:, None])
    threshold = _invert_far(far_train, VAL_THRESHOLDS, far_target)  # [F]
    accept = dist < threshold[folds]
    true_accept = np.bincount(folds[accept & issame], minlength=n_folds)
    false_accept = np.bincount(folds[accept & ~issame], minlength=n_folds)
    return _rate(true_accept, n_pos), _rate(false_accept, n_neg), accept


def _as_views(embeddings: Any) -> np.ndarray:
    """Embeddings as float64 [V, N, D] (V views of the same images, e.g. original and flip)."""
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim == 2:
        emb = emb[None]
    if emb.ndim != 3 or emb.shape[1] == 0:
        raise DataFormatError(f"embeddings must be [N, D] or [views, N, D], got shape {emb.shape}")
    if not np.isfinite(emb).all():
        raise DataFormatError("embeddings contain NaN or inf (did the model diverge?)")
    return emb


def verification_metrics(embeddings: Any, issame: Any, nrof_folds: int = 10,
                         far_target: float = 1e-3) -> VerificationResult:
    """InsightFace verification metrics of a pair list.

    Args:
        embeddings: unnormalised [2P, D] (pair i = rows 2i, 2i+1), or [V, 2P, D] for V views of the
            same images (original, horizontal flip), which are summed before normalising.
        issame: [P] bools, True for a genuine pair.
        nrof_folds: number of contiguous folds (10 in InsightFace).
        far_target: false-accept rate at which VAL is reported.
    """
    views = _as_views(embeddings)
    same = np.asarray(issame)
    if same.ndim != 1 or views.shape[1] != 2 * same.size or not np.isin(same, (0, 1)).all():
        raise DataFormatError(f"issame must be [P] bools with P = {views.shape[1]} / 2 embeddings, "
                              f"got shape {same.shape}")
    if not 0.0 < far_target <= 1.0:
        raise ConfigError(f"far_target must be in (0, 1], got {far_target}")
    same = same.astype(bool)
    xnorm = float(np.linalg.norm(views, axis=-1).mean())
    emb = l2_normalize(views.sum(axis=0))
    dist = np.sum(np.square(emb[0::2] - emb[1::2]), axis=1)
    folds = kfold_ids(same.size, nrof_folds)
    acc, fold_thr, tpr, fpr = _accuracy(dist, same, folds, nrof_folds)
    val, far, accept = _val_far(dist, same, folds, nrof_folds, far_target)
    return VerificationResult(
        accuracy_mean=float(acc.mean()), accuracy_std=float(acc.std()),
        best_threshold=float(fold_thr.mean()), val=float(val.mean()), val_std=float(val.std()),
        far=float(far.mean()), xnorm=xnorm, tpr=tpr, fpr=fpr, thresholds=ROC_THRESHOLDS.copy(),
        fold_accuracy=acc, fold_threshold=fold_thr, pair_correct=_pair_correct(dist, same, folds, fold_thr),
        pair_accept=accept)


def _to_model_input(batch: Any, device: Any) -> Any:
    """uint8 [B,H,W,3] / [B,3,H,W] -> float [B,3,H,W] in [-1, 1]; float tensors pass unchanged."""
    import torch

    from ..data.pixels import normalize_uint8

    x = torch.as_tensor(batch).to(device)
    if x.dtype == torch.uint8:
        if x.shape[-1] == 3 and x.shape[1] != 3:
            x = x.permute(0, 3, 1, 2)
        return normalize_uint8(x)
    return x.float()


def embed_pairs(model_fn: Callable[[Any], Any], images: Any, batch_size: int = 64, flip: bool = True,
                device: Any = "cpu", progress: bool = False,
                preprocess: Callable[[Any], Any] | None = None) -> np.ndarray:
    """Embed a verification set in batches: returns float32 [V, N, D], V = 2 with ``flip`` else 1.

    Args:
        model_fn: maps a float tensor [B, 3, H, W] (normalised to [-1, 1]) to embeddings [B, D].
            Put the model in the mode you want (``eval()``, FaceBN) before calling.
        images: uint8 [N, H, W, 3] (or [N, 3, H, W]) array/tensor, or an already normalised float
            tensor [N, 3, H, W].
        flip: also embed the horizontal mirror (view 1) for InsightFace's flip test.
        preprocess: applied once per batch (normalised float in, out) before both views, e.g. the LR
            degradation, so a mirrored view costs one model pass and no second degradation.

    The last batch is the window of the final ``batch_size`` images (as InsightFace does) so that
    models using batch statistics (FaceBN ``batch`` mode) never see a tiny tail batch.
    """
    import torch
    from tqdm import tqdm

    n = len(images)
    if n == 0 or batch_size < 1:
        raise ConfigError(f"embed_pairs needs images and batch_size >= 1, got N={n}, batch_size={batch_size}")
    out: np.ndarray | None = None
    views = (False, True) if flip else (False,)
    with torch.no_grad():
        for start in tqdm(range(0, n, batch_size), disable=not progress, desc="embedding"):
            stop = min(start + batch_size, n)
            lo = max(stop - batch_size, 0)  # full-size window ending at `stop`
            x = _to_model_input(images[lo:stop], device)
            if preprocess is not None:
                x = preprocess(x)
            for v, mirrored in enumerate(views):
                feat = model_fn(torch.flip(x, dims=[3]) if mirrored else x)
                feat = feat.detach().float().cpu().numpy()[start - lo:]
                if out is None:
                    out = np.empty((len(views), n, feat.shape[1]), dtype=np.float32)
                out[v, start:stop] = feat
    assert out is not None
    return out
