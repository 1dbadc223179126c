"""Paired differences between two models on the same pairs and seeds, with a 95 % bootstrap interval.

What is compared: InsightFace's 10-fold protocol picks each model's threshold on nine folds and applies it to
the tenth, so once the protocol has run, a model's accuracy is the mean over folds of the mean of a 0/1 vector
(``pair_correct``: the pair is judged right) and its VAL@FAR the mean over folds of the genuine pairs'
``pair_accept``. Two models evaluated on the same pairs give a per-pair difference ``d[s, p]`` in {-1, 0, 1}
for every seed ``s`` they share; the reported difference is ``100 * mean_s mean_f mean_{p in f} d[s, p]``,
exactly the difference of the two protocol numbers (averaged over seeds).

The interval (docs/evaluation.md, "Paired differences"): a two-level percentile bootstrap that resamples the
seeds with replacement and, within each fold, the pairs with replacement, the same pair draws for every seed of
a replicate (the seeds were tested on the same pairs, so a hard pair is hard for all of them). Both sources of
noise are in it: which students the seeds trained (seed-level shifts) and which pairs the set happened to hold.
The thresholds stay the protocol's (part of each model's output); re-choosing them inside every replicate
would cost ~1000x and move little. A difference is **shown** only when the interval excludes 0; otherwise it
is a tie, said as such.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import DataFormatError

REPLICATES = 4000
LEVEL = 0.95


def pack_bits(bits: np.ndarray) -> str:
    """A 0/1 vector [P] as hex text (what a record stores: 1,200 pairs are 300 characters)."""
    return np.packbits(np.asarray(bits, dtype=bool)).tobytes().hex()


def unpack_bits(text: str, n: int) -> np.ndarray:
    """The inverse of :func:`pack_bits` for a vector of ``n`` entries (bool [n])."""
    raw = np.frombuffer(bytes.fromhex(text), dtype=np.uint8)
    if raw.size != (n + 7) // 8:
        raise DataFormatError(f"packed pair bits: expected {(n + 7) // 8} bytes for {n} pairs, got {raw.size}")
    return np.unpackbits(raw)[:n].astype(bool)


@dataclass(frozen=True)
class PairedDifference:
    """``left - right`` in points with its percentile bootstrap interval [``low``, ``high``]; ``verdict``:
    "better" / "worse" when the interval excludes 0 (shown), "tie" when it holds 0."""

    difference: float
    low: float
    high: float
    verdict: str
    seeds: int
    pairs: int
    per_seed: tuple[float, ...]

    @property
    def shown(self) -> bool:
        return self.verdict != "tie"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "per_seed": list(self.per_seed), "shown": self.shown}


def verdict(low: float, high: float) -> str:
    """"better" when the whole interval is above 0, "worse" when below, else "tie" (0 inside or on an end)."""
    return "better" if low > 0 else "worse" if high < 0 else "tie"


def paired_difference(left: np.ndarray, right: np.ndarray, folds: np.ndarray, replicates: int = REPLICATES,
                      level: float = LEVEL, rng_seed: int = 0) -> PairedDifference:
    """Paired difference of two models' per-pair outcomes.

    Args:
        left, right: [S, P] 0/1 (or any real) outcomes of the two models, row ``s`` = seed ``s`` of both (a
            model with one run, e.g. the teacher, is repeated over the other's seeds by the caller).
        folds: [P] fold index of every pair (pairs outside the comparison, e.g. impostors for VAL, removed).
        replicates, level, rng_seed: the bootstrap (fixed seed: the same inputs give the same interval).
    """
    left, right = np.atleast_2d(np.asarray(left, float)), np.atleast_2d(np.asarray(right, float))
    folds = np.asarray(folds)
    if left.shape != right.shape or left.shape[1] != folds.size or folds.size == 0:
        raise DataFormatError(f"paired_difference: outcomes {left.shape} and {right.shape} must be [seeds, pairs] "
                              f"with pairs = {folds.size} fold labels")
    diff = left - right
    fold_ids, fold_of = np.unique(folds, return_inverse=True)
    sizes = np.bincount(fold_of)
    pair_weight = 1.0 / (sizes[fold_of] * fold_ids.size)  # mean over folds of the within-fold means
    per_seed = 100.0 * diff @ pair_weight
    rng = np.random.default_rng(rng_seed)
    seed_w = rng.multinomial(diff.shape[0], np.full(diff.shape[0], 1.0 / diff.shape[0]), size=replicates)
    pair_w = np.zeros((replicates, folds.size))
    for f in range(fold_ids.size):  # one multinomial draw per fold: the pairs drawn with replacement within it
        members = np.flatnonzero(fold_of == f)
        pair_w[:, members] = rng.multinomial(members.size, np.full(members.size, 1.0 / members.size),
                                             size=replicates)
    values = 100.0 * np.einsum("bs,sp,bp->b", seed_w / diff.shape[0], diff, pair_w * pair_weight)
    values = np.round(values, 9)  # a replicate whose +1s and -1s cancel is 0, not +-1e-15 (the verdict reads sign)
    low, high = np.quantile(values, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    low, high = float(low), float(high)
    return PairedDifference(float(per_seed.mean()), low, high, verdict(low, high), int(diff.shape[0]),
                            int(folds.size), tuple(float(v) for v in per_seed))
