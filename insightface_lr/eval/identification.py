"""1:N identification on precomputed embeddings: closed-set CMC and open-set DIR@FPIR.

Conventions (documented because papers differ):

* Scores are cosine similarities of L2-normalised embeddings (:func:`cosine_scores`); higher = more
  similar. Flip-fused probe embeddings (:func:`insightface_lr.eval.verification.fuse_flip`) can be
  passed straight in.
* Gallery labels ``< 0`` mark distractors (TinyFace's 153k distractor images, MegaFace style): they
  never match a probe but compete for every rank.
* The rank of a probe is 1 + the number of non-mated gallery entries scoring at least as high as its
  best mated entry. Ties count AGAINST the probe, so a collapsed model (all scores equal) scores
  rank-1 = 0 rather than 100 %. Several gallery images of one identity are allowed (best one counts).
* Average precision of a probe (TinyFace's mAP, person re-identification's convention): the mean, over its
  mated gallery entries, of the precision at each of them, ties again against the probe: at a mate scoring
  ``s``, precision = mates scoring >= ``s`` / all entries scoring >= ``s``. mAP = the mean over probes.
* Closed set (TinyFace protocol: every probe's identity is in the gallery, plus distractors):
  ``cmc`` = fraction of probes with rank <= k.
* Open set (NIST FRVT / IJB-C 1:N convention): probes whose label is not in the gallery are
  non-mated. The threshold at a target FPIR is set on the distribution of the non-mated probes'
  top-1 scores (not on individual impostor scores as InsightFace's ``ijb_1n.py`` does): with ``N``
  non-mated probes, the threshold is the ``(floor(FPIR * N) + 1)``-th highest of their top scores
  and a score must be strictly above it to raise an alarm. DIR = fraction of mated probes found at
  rank <= ``rank`` with their mated score above the threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from insightface_lr.errors import ConfigError, DataFormatError
from insightface_lr.eval.verification import l2_normalize


def cosine_scores(probe: Any, gallery: Any, chunk: int = 4096) -> np.ndarray:
    """Cosine similarity [Np, Ng] (float32) of probe [Np, D] and gallery [Ng, D] embeddings."""
    p = l2_normalize(probe).astype(np.float32)
    g = l2_normalize(gallery).astype(np.float32)
    if p.ndim != 2 or g.ndim != 2 or p.shape[1] != g.shape[1]:
        raise DataFormatError(f"probe and gallery must be [N, D] with equal D, got {p.shape}, {g.shape}")
    out = np.empty((p.shape[0], g.shape[0]), dtype=np.float32)
    for start in range(0, p.shape[0], chunk):  # row chunks bound the temporary memory
        out[start:start + chunk] = p[start:start + chunk] @ g.T
    return out


def _check(scores: Any, probe_labels: Any, gallery_labels: Any) -> tuple[np.ndarray, ...]:
    s = np.asarray(scores, dtype=np.float64)
    pl, gl = np.asarray(probe_labels).ravel(), np.asarray(gallery_labels).ravel()
    if s.ndim != 2 or s.shape != (pl.size, gl.size):
        raise DataFormatError(f"scores must be [Nprobe={pl.size}, Ngallery={gl.size}], got {s.shape}")
    if np.isnan(s).any():
        raise DataFormatError("scores contain NaN")
    return s, pl, gl


def _mated(pl: np.ndarray, gl: np.ndarray) -> np.ndarray:
    """[Np, Ng] True where the gallery entry has the probe's identity (distractors never match)."""
    return (pl[:, None] == gl[None, :]) & (gl >= 0)[None, :]


def match_ranks(scores: Any, probe_labels: Any, gallery_labels: Any) -> np.ndarray:
    """Rank [Np] (1 = best) of each probe's best mated gallery entry; 0 for probes with no mate."""
    s, pl, gl = _check(scores, probe_labels, gallery_labels)
    mated = _mated(pl, gl)
    best_mated = np.where(mated, s, -np.inf).max(axis=1)  # [Np]
    rank = 1 + ((s >= best_mated[:, None]) & ~mated).sum(axis=1)
    return np.where(mated.any(axis=1), rank, 0)


def average_precision(scores: Any, probe_labels: Any, gallery_labels: Any) -> np.ndarray:
    """Average precision [Np] of each probe over its ranked gallery (NaN for a probe with no mate); see the
    module docstring. Memory: [Np, M, Ng] comparisons, M the most mates of any probe here."""
    s, pl, gl = _check(scores, probe_labels, gallery_labels)
    mated = _mated(pl, gl)
    most = int(mated.sum(axis=1).max()) if mated.size else 0
    if most == 0:
        return np.full(len(pl), np.nan)
    masked = np.where(mated, s, -np.inf)
    mate_scores = -np.sort(-masked, axis=1)[:, :most]  # [Np, M] every probe's mated scores, -inf padded
    at_least = s[:, None, :] >= mate_scores[:, :, None]  # [Np, M, Ng]
    mates_above = (at_least & mated[:, None, :]).sum(axis=2)
    precision = mates_above / np.maximum(at_least.sum(axis=2), 1)
    valid = np.isfinite(mate_scores)
    with np.errstate(invalid="ignore"):
        return np.where(valid, precision, 0.0).sum(axis=1) / valid.sum(axis=1)


def cmc(scores: Any, probe_labels: Any, gallery_labels: Any,
        ranks: Sequence[int] = (1, 5, 20)) -> dict[int, float]:
    """Closed-set identification rate at each rank k: ``{k: fraction of probes with rank <= k}``.

    Every probe must have at least one mate in the gallery (closed set).
    """
    return cmc_from_ranks(match_ranks(scores, probe_labels, gallery_labels), ranks)


def cmc_from_ranks(r: np.ndarray, ranks: Sequence[int] = (1, 5, 20)) -> dict[int, float]:
    """:func:`cmc` from the probes' ranks [Np] (:func:`match_ranks`, possibly computed chunk by chunk)."""
    r = np.asarray(r)
    if r.size == 0 or (r == 0).any():
        raise DataFormatError(f"closed-set CMC needs a gallery mate for every probe; "
                              f"{int((r == 0).sum())} of {r.size} probes have none")
    if any(int(k) < 1 for k in ranks):
        raise ConfigError(f"ranks must be >= 1, got {list(ranks)}")
    return {int(k): float((r <= int(k)).mean()) for k in ranks}


def open_set(scores: Any, probe_labels: Any, gallery_labels: Any,
             fpirs: Sequence[float] = (1e-3, 1e-2, 1e-1), rank: int = 1) -> dict[float, dict[str, float]]:
    """Open-set DIR at each target FPIR: ``{fpir: {"dir", "threshold", "fpir"}}``.

    ``"fpir"`` is the false-positive identification rate actually reached on the non-mated probes
    (at most the target; ties may make it lower). See the module docstring for the convention.
    """
    s, pl, gl = _check(scores, probe_labels, gallery_labels)
    r = match_ranks(s, pl, gl)
    best_mated = np.where(_mated(pl, gl), s, -np.inf).max(axis=1)
    return open_set_from_stats(r, best_mated, s.max(axis=1), fpirs, rank)


def open_set_from_stats(ranks: np.ndarray, best_mated: np.ndarray, top_score: np.ndarray,
                        fpirs: Sequence[float] = (1e-3, 1e-2, 1e-1), rank: int = 1) -> dict[float, dict[str, float]]:
    """:func:`open_set` from per-probe statistics [Np]: rank of the best mate (0: non-mated probe), best mated
    score and top score over the whole gallery (so a gallery too large for one score matrix can be chunked)."""
    r, best_mated, top_score = (np.asarray(a).ravel() for a in (ranks, best_mated, top_score))
    mated_probe = r > 0
    n_non = int((~mated_probe).sum())
    if n_non == 0 or mated_probe.sum() == 0:
        raise DataFormatError(f"open-set evaluation needs mated and non-mated probes, got "
                              f"{int(mated_probe.sum())} mated and {n_non} non-mated")
    top_non = np.sort(top_score[~mated_probe])[::-1]  # [N_non] descending
    best_mated = best_mated[mated_probe]
    found = r[mated_probe] <= rank
    out: dict[float, dict[str, float]] = {}
    for fpir in fpirs:  # a handful of operating points, each O(N) vectorised
        if not 0.0 <= fpir <= 1.0:
            raise ConfigError(f"FPIR values must be in [0, 1], got {fpir}")
        # alarms allowed; the 1e-9 keeps 0.3 * 10 = 2.9999999999999996 at 3
        k = int(np.floor(fpir * n_non + 1e-9))
        thr = top_non[k] if k < n_non else -np.inf
        out[float(fpir)] = {"dir": float((found & (best_mated > thr)).mean()), "threshold": float(thr),
                            "fpir": float((top_non > thr).mean())}
    return out
