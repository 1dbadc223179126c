"""Identity-level splits of a labelled face set, open-set verification pairs, and the subsets written out.

Two uses, both from the real-data demo (``insightface-lr demo --faces``):

- a *validation split* carved from the training identities, for tuning: whole identities are held out and
  turned into 10 folds of genuine + impostor pairs (an open-set ``.bin``, like LFW), so settings are never
  chosen on the test pairs;
- the *teacher knows more* regime: the students train on a seeded fraction of the identities the teacher
  saw (the bridge paper's cross-dataset setting).

Every split takes whole identities: no person is ever on both sides. Every draw is seeded and depends only on
the sorted label set, never on file order or the machine.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataFormatError


def split_identities(labels: Sequence[int], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(chosen, rest): sorted identity labels, ``round(fraction * K)`` of the K identities chosen by a seeded
    permutation (at least 1, and at least 1 left over when ``fraction < 1``)."""
    identities = np.unique(np.asarray(labels, dtype=np.int64))
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"identity fraction: expected a value in (0, 1], got {fraction!r}")
    k = len(identities)
    count = k if fraction == 1.0 else min(max(1, round(fraction * k)), k - 1)
    if count < 1:
        raise DataFormatError("identity split: the set holds no identity")
    order = np.random.default_rng(seed).permutation(k)
    return np.sort(identities[order[:count]]), np.sort(identities[order[count:]])


def verification_pairs(labels: Sequence[int], pairs_per_fold: int, seed: int, folds: int = 10) -> np.ndarray:
    """``[folds * pairs_per_fold, 3]`` rows ``(index_a, index_b, same)`` over the faces of ``labels``.

    Each fold holds ``pairs_per_fold // 2`` genuine pairs then as many impostor pairs (InsightFace's 10-fold
    protocol splits the pair list into contiguous folds, so every fold is balanced). Genuine pairs are two
    distinct faces of one identity with >= 2 faces; impostor pairs two faces of two identities.
    """
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    by_id = {int(i): np.flatnonzero(labels == i) for i in np.unique(labels)}
    multi = [i for i, faces in by_id.items() if len(faces) >= 2]
    if not multi or len(by_id) < 2:
        raise DataFormatError("verification pairs need >= 2 identities, one of them with >= 2 faces")
    half = pairs_per_fold // 2
    if half < 1:
        raise ConfigError(f"pairs per fold: expected >= 2, got {pairs_per_fold}")
    ids = np.array(sorted(by_id))
    rows = []
    for _ in range(folds):
        for person in rng.choice(multi, size=half):
            a, b = rng.choice(by_id[int(person)], size=2, replace=False)
            rows.append((a, b, 1))
        for p, q in (rng.choice(ids, size=2, replace=False) for _ in range(half)):
            rows.append((rng.choice(by_id[int(p)]), rng.choice(by_id[int(q)]), 0))
    return np.asarray(rows, dtype=np.int64)


def relabel(labels: Sequence[int], identities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the faces of ``identities``, their labels renumbered ``0 .. len(identities) - 1``)."""
    labels = np.asarray(labels, dtype=np.int64)
    keep = np.flatnonzero(np.isin(labels, identities))
    return keep, np.searchsorted(np.sort(identities), labels[keep])


def write_subset_rec(source, out_dir: str | os.PathLike, identities: np.ndarray) -> Path:
    """``out_dir/train.rec`` (+ .idx, property) with the faces of ``identities`` of ``source`` (a
    :class:`~insightface_lr.data.faces.FaceSource`), labels renumbered from 0; the bytes are copied as stored."""
    from .recordio import write_rec_dataset

    keep, labels = relabel(source.labels, identities)
    if not len(keep):
        raise DataFormatError(f"{source.path}: no face of the chosen identities")
    return write_rec_dataset(out_dir, (source.encoded(int(i)) for i in keep), labels.tolist(),
                             image_size=source.image_size)


def write_pairs_bin(source, path: str | os.PathLike, identities: np.ndarray, pairs_per_fold: int,
                    seed: int) -> Path:
    """An InsightFace ``.bin`` of ``10 x pairs_per_fold`` open-set pairs among the faces of ``identities``."""
    from .verification_bin import write_bin

    keep, labels = relabel(source.labels, identities)
    rows = verification_pairs(labels, pairs_per_fold, seed)
    images = [source.encoded(int(keep[i])) for pair in rows[:, :2] for i in pair]
    return write_bin(path, images, [bool(s) for s in rows[:, 2]])
