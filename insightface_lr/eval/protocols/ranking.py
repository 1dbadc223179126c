"""1:N statistics of probes against a gallery too large for one score matrix (TinyFace: 3,728 probes x 157,871
gallery faces; QMUL-SurvFace: 182,159 x 60,294), computed a block of probes at a time.

Per probe: the rank of its best mate (:func:`insightface_lr.eval.identification.match_ranks`, ties counted
against the probe; 0 when it has no mate), its best mated score and its top score over the whole gallery.
CMC and open-set TPIR@FPIR then follow from these three vectors with the helpers of ``eval/identification.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..identification import _mated, average_precision, cmc_from_ranks, match_ranks, open_set_from_stats
from ..verification import l2_normalize

BLOCK_SCORES = 2**23  # probe rows per block x gallery size; bounds the float64 temporaries to ~64 MB each


@dataclass(frozen=True)
class ProbeStats:
    ranks: np.ndarray  # [Np] int, 0 = no mate in the gallery
    best_mated: np.ndarray  # [Np] float, -inf without a mate
    top_score: np.ndarray  # [Np] float
    ap: np.ndarray | None = None  # [Np] average precision (NaN without a mate), when asked for

    def cmc(self, ranks=(1, 5, 10, 20)) -> dict[int, float]:
        return cmc_from_ranks(self.ranks, ranks)

    def cmc_curve(self, max_rank: int = 50) -> list[float]:
        """Identification rate at ranks 1..max_rank (mated probes only)."""
        mated = self.ranks[self.ranks > 0]
        return [float((mated <= k).mean()) for k in range(1, max_rank + 1)]

    def mean_ap(self) -> float:
        """mAP over the probes that have a mate."""
        assert self.ap is not None, "probe_stats(..., with_ap=True) computes the average precisions"
        return float(np.nanmean(self.ap))

    def open_set(self, fpirs=(0.3, 0.2, 0.1), rank: int = 20) -> dict[float, dict[str, float]]:
        return open_set_from_stats(self.ranks, self.best_mated, self.top_score, fpirs, rank)


def probe_stats(probes: np.ndarray, probe_labels: np.ndarray, gallery: np.ndarray,
                gallery_labels: np.ndarray, with_ap: bool = False) -> ProbeStats:
    """:class:`ProbeStats` of ``probes`` [Np, D] against ``gallery`` [Ng, D] (labels < 0: distractors);
    ``with_ap``: also each probe's average precision (blocks shrink by the most mates any probe has)."""
    probe_labels, gallery_labels = np.asarray(probe_labels).ravel(), np.asarray(gallery_labels).ravel()
    mates = _most_mates(probe_labels, gallery_labels) if with_ap else 1
    block = max(1, BLOCK_SCORES // (max(len(gallery), 1) * mates))
    unit_probes, unit_gallery = (l2_normalize(x).astype(np.float32) for x in (probes, gallery))  # once, not per block
    ranks, best, top, ap = [], [], [], []
    for start in range(0, len(probes), block):  # blocks of probes; every block is vectorised
        scores = unit_probes[start:start + block] @ unit_gallery.T  # cosine (as cosine_scores), float32
        labels = probe_labels[start:start + block]
        ranks.append(match_ranks(scores, labels, gallery_labels))
        best.append(np.where(_mated(labels, gallery_labels), scores, -np.inf).max(axis=1))
        top.append(scores.max(axis=1))
        if with_ap:
            ap.append(average_precision(scores, labels, gallery_labels))
    return ProbeStats(np.concatenate(ranks), np.concatenate(best).astype(np.float64),
                      np.concatenate(top).astype(np.float64), np.concatenate(ap) if with_ap else None)


def _most_mates(probe_labels: np.ndarray, gallery_labels: np.ndarray) -> int:
    """The most gallery entries sharing one probe's identity (1 at least)."""
    ids, counts = np.unique(gallery_labels[gallery_labels >= 0], return_counts=True)
    found = counts[np.isin(ids, probe_labels)]
    return max(1, int(found.max()) if found.size else 1)
