"""Every method against the baseline, paired over the same seeds and test pairs, with a 95 % interval.

One statistic for every demo (synthetic, real faces, pretrained): :func:`insightface_lr.eval.paired.
paired_difference` on the per-pair outcomes each record keeps. A row is a model variant, ``(method, FaceBN
mode)``: ``aird + FaceBN`` is aird's students evaluated with the headline FaceBN mode (the AIRD paper's second
step). Each comparison is made on the first reported set, per regime, for accuracy and VAL@FAR=1e-3, at the
headline size and over every probe size the students were evaluated at (the per-pair outcomes averaged over
sizes: one number, the mean over sizes, and its interval). The students' 112-px accuracy is compared with the
teacher's (a model with one run is paired with every seed of the other): does the LR training forget HR faces?
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..eval.paired import paired_difference, unpack_bits
from ..eval.verification import kfold_ids

METRICS = {"accuracy": "pair_correct", "val": "pair_accept"}
Variant = tuple[str, str]  # (method, FaceBN mode)


def variant_name(variant: Variant) -> str:
    method, facebn = variant
    return method if facebn == "off" else f"{method} + FaceBN"


def _outcomes(records: list[dict[str, Any]], variant: Variant, regime: str, bin_name: str, sizes: tuple[int, ...],
              metric: str) -> dict[Any, np.ndarray]:
    """{seed: [P'] outcomes averaged over ``sizes``} of one variant (P' = genuine pairs for VAL); a seed missing
    a size (or a record without per-pair outcomes, made before they were kept) is left out."""
    method, facebn = variant
    found: dict[Any, dict[int, np.ndarray]] = {}
    for r in records:
        if (r["method"], r["facebn"], r["bin"]) != (method, facebn, bin_name) or r["size"] not in sizes:
            continue
        if r["status"] != "ok" or METRICS[metric] not in r or r.get("epochs") or r.get("weight") is not None \
                or r.get("candidate") is not None or (method != "teacher" and r.get("regime", "same") != regime):
            continue
        same = unpack_bits(r["pair_same"], r["pairs"])
        bits = unpack_bits(r[METRICS[metric]], r["pairs"])
        found.setdefault(r["seed"], {})[r["size"]] = bits[same] if metric == "val" else bits
    return {seed: np.mean([by_size[z] for z in sizes], axis=0) for seed, by_size in found.items()
            if set(by_size) == set(sizes)}


def _folds(records: list[dict[str, Any]], bin_name: str, metric: str) -> np.ndarray | None:
    """The protocol's 10 folds of the set's pairs (genuine pairs only for VAL)."""
    for r in records:
        if r["bin"] == bin_name and "pair_same" in r:
            folds = kfold_ids(r["pairs"], 10)
            return folds[unpack_bits(r["pair_same"], r["pairs"])] if metric == "val" else folds
    return None


def compare(records: list[dict[str, Any]], left: Variant, right: Variant, regime: str, bin_name: str,
            sizes: tuple[int, ...], metric: str) -> dict[str, Any] | None:
    """``left - right`` (points) over the seeds both have, with its interval; None when either lacks outcomes."""
    a = _outcomes(records, left, regime, bin_name, sizes, metric)
    b = _outcomes(records, right, regime, bin_name, sizes, metric)
    if None in a and len(a) == 1:  # a model of one run (the teacher) pairs with every seed of the other
        a = dict.fromkeys(b, a[None])
    if None in b and len(b) == 1:
        b = dict.fromkeys(a, b[None])
    seeds = sorted(set(a) & set(b), key=str)
    folds = _folds(records, bin_name, metric)
    if not seeds or folds is None:
        return None
    result = paired_difference(np.stack([a[s] for s in seeds]), np.stack([b[s] for s in seeds]), folds)
    return {"left": variant_name(left), "right": variant_name(right), "regime": regime, "bin": bin_name,
            "sizes": list(sizes), "metric": metric, **result.to_dict()}
