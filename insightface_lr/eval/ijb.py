"""IJB-B / IJB-C style 1:1 template verification: template pooling, pair scores, TAR@FAR.

Follows InsightFace's ``recognition/arcface_torch/eval_ijbc.py`` (and ``_evaluation_/ijb``):

1. image features: the original and flipped views are SUMMED without normalising (mode F2), so the
   feature norm acts as a quality weight (mode N1); ``normalize_images=True`` gives mode N0, and
   ``faceness`` multiplies each feature by its detector score (mode D1);
2. inside a template, the frames of one media (video) are averaged first, then the media features
   are summed (= averaged, up to the final normalisation) and L2-normalised;
3. a template pair's score is the dot product of the two normalised template features;
4. TAR@FAR from the ROC (``sklearn.metrics.roc_curve`` re-implemented in numpy, including its
   ``drop_intermediate`` pruning). InsightFace reports, for each FAR, the TPR of the ROC point whose
   FPR is NEAREST to it (largest TPR on ties) rather than an interpolation: ``method="insightface"``
   (default, comparable with published tables). ``method="interp"`` interpolates the ROC linearly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from insightface_lr.errors import ConfigError, DataFormatError
from insightface_lr.eval.verification import l2_normalize

IJB_FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def _image_features(features: Any, n: int) -> np.ndarray:
    """[N, D] or [V, N, D] (views summed) -> [N, D]."""
    f = np.asarray(features)
    f = f if np.issubdtype(f.dtype, np.floating) else f.astype(np.float64)
    f = f.sum(axis=0) if f.ndim == 3 else f
    if f.ndim != 2 or f.shape[0] != n:
        raise DataFormatError(f"features must be [N={n}, D] or [views, N, D], got {np.shape(features)}")
    return f


def pool_templates(features: Any, templates: Any, medias: Any, faceness: Any = None,
                   normalize_images: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Template features: media mean, then sum over medias, then L2 normalisation.

    Args:
        features: image features [N, D], or [V, N, D] views (e.g. original + flip) that are summed.
        templates, medias: [N] integer template id and media id of each image.
        faceness: optional [N] detector scores multiplied into the features (InsightFace D1).
        normalize_images: L2-normalise each image feature before pooling (InsightFace N0).
    Returns:
        template features [T, D] (float64, unit norm) and the sorted unique template ids [T].
    """
    t_ids, m_ids = np.asarray(templates).ravel(), np.asarray(medias).ravel()
    if t_ids.size != m_ids.size or t_ids.size == 0:
        raise DataFormatError(f"templates and medias must be equal-length, non-empty [N]; got "
                              f"{t_ids.size} and {m_ids.size}")
    f = _image_features(features, t_ids.size)
    if normalize_images:
        f = l2_normalize(f).astype(f.dtype)
    if faceness is not None:
        f = f * np.asarray(faceness, dtype=f.dtype).reshape(-1, 1)
    unique_t, t_idx = np.unique(t_ids, return_inverse=True)
    order = np.lexsort((m_ids, t_idx))  # images grouped by template, then media
    t_sorted, m_sorted = t_idx[order], m_ids[order]
    new_media = (t_sorted[1:] != t_sorted[:-1]) | (m_sorted[1:] != m_sorted[:-1])
    media_start = np.flatnonzero(np.r_[True, new_media])
    counts = np.diff(np.r_[media_start, t_sorted.size])
    # media means in the features' dtype (float32 for IJB-C's 227k x 512, as InsightFace's np.mean),
    # template sums in float64
    media_feat = (np.add.reduceat(f[order], media_start, axis=0) / counts[:, None]).astype(np.float64)
    media_t = t_sorted[media_start]
    template_start = np.flatnonzero(np.r_[True, media_t[1:] != media_t[:-1]])
    return l2_normalize(np.add.reduceat(media_feat, template_start, axis=0)), unique_t


def template_pair_scores(template_feats: np.ndarray, unique_templates: Any, t1: Any, t2: Any,
                         chunk: int = 100_000) -> np.ndarray:
    """Cosine score [P] of each template pair (t1[i], t2[i]); gathered in chunks to bound memory."""
    ids = np.asarray(unique_templates)
    rows = []
    for name, t in (("t1", t1), ("t2", t2)):
        t = np.asarray(t).ravel()
        pos = np.clip(np.searchsorted(ids, t), 0, max(ids.size - 1, 0))
        missing = t[ids[pos] != t] if ids.size else t
        if missing.size:
            raise DataFormatError(f"pair list {name} names {missing.size} template ids that have no "
                                  f"images, e.g. {np.unique(missing)[:5].tolist()}")
        rows.append(pos)
    a, b = rows
    if a.size != b.size:
        raise DataFormatError(f"t1 and t2 differ in length: {a.size} vs {b.size}")
    out = np.empty(a.size, dtype=np.float64)
    for start in range(0, a.size, chunk):
        sl = slice(start, start + chunk)
        out[sl] = np.einsum("ij,ij->i", template_feats[a[sl]], template_feats[b[sl]])
    return out


def roc_curve(labels: Any, scores: Any, drop_intermediate: bool = True
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC as ``sklearn.metrics.roc_curve``: (fpr, tpr, thresholds), thresholds decreasing from inf.

    A point per distinct score (cumulative TP/FP counts over scores sorted descending), collinear
    intermediate points dropped when ``drop_intermediate``, and (0, 0) prepended.
    """
    y = np.asarray(labels).ravel().astype(bool)
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.size != s.size:
        raise DataFormatError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if y.all() or not y.any():
        raise DataFormatError("ROC needs both genuine (1) and impostor (0) pairs in the labels")
    order = np.argsort(s, kind="mergesort")[::-1]
    s, y = s[order], y[order]
    last_of_score = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.cumsum(y)[last_of_score]
    fps = 1 + last_of_score - tps
    thresholds = s[last_of_score]
    if drop_intermediate and tps.size > 2:
        corner = np.r_[True, (np.diff(fps, 2) != 0) | (np.diff(tps, 2) != 0), True]
        tps, fps, thresholds = tps[corner], fps[corner], thresholds[corner]
    tps, fps = np.r_[0, tps], np.r_[0, fps]
    return fps / fps[-1], tps / tps[-1], np.r_[np.inf, thresholds]


def tar_at_far(scores: Any, labels: Any, fars: Sequence[float] = IJB_FARS,
               method: str = "insightface") -> dict[float, float]:
    """TAR at each FAR: ``{far: tar}`` (see the module docstring for ``method``)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    out: dict[float, float] = {}
    if method == "interp":
        keep = np.r_[fpr[1:] != fpr[:-1], True]  # per FPR value, its highest TPR
        return {float(f): float(np.interp(f, fpr[keep], tpr[keep])) for f in fars}
    if method != "insightface":
        raise ConfigError(f"tar_at_far method must be 'insightface' or 'interp', got {method!r}")
    for far in fars:  # a handful of operating points, each one vectorised over the ROC
        gap = np.abs(fpr - far)
        idx = fpr.size - 1 - int(np.argmin(gap[::-1]))  # nearest FPR, last (highest TPR) on ties
        out[float(far)] = float(tpr[idx])
    return out


def ijb_tar_at_far(features: Any, templates: Any, medias: Any, t1: Any, t2: Any, labels: Any,
                   faceness: Any = None, normalize_images: bool = False, fars: Sequence[float] = IJB_FARS,
                   method: str = "insightface") -> dict[float, float]:
    """Whole IJB 1:1 evaluation from image features: pooling, pair scores, then TAR@FAR."""
    feats, ids = pool_templates(features, templates, medias, faceness, normalize_images)
    return tar_at_far(template_pair_scores(feats, ids, t1, t2), labels, fars, method)
