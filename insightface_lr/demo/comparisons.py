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
# native low-resolution students (not copies of the teacher): each is also compared with the teacher as it is at
# the same probe sizes, the model it replaces on a small device (issue 32: beat it at 16 px)
SMALL_STUDENTS = ("bridge", "bridge2")
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


def build_comparisons(records: list[dict[str, Any]], settings: dict[str, Any], first_bin: str) -> list[dict[str, Any]]:
    """Every variant against ``none`` (aird against kd, a small native student against the teacher as it is, the
    teacher with FaceBN against without) on ``first_bin``, per regime: accuracy and VAL at the headline size and
    over the students' probe sizes; every variant's 112-px accuracy against the teacher's."""
    h, on = settings["headline_size"], settings["facebn_mode"]
    student_sizes = tuple(settings.get("student_eval_sizes") or settings["eval_sizes"])
    wheres = [(f"{h} px", (h,))] + ([("over sizes", student_sizes)] if len(student_sizes) > 1 else [])
    methods = list(settings["methods"])
    variants = [(m, "off") for m in methods] + [(m, on) for m in methods if _has(records, m, on)]
    pairs = [(v, ("none", "off")) for v in variants if v != ("none", "off")]
    pairs += [(("aird", "off"), ("kd", "off"))] if {"aird", "kd"} <= set(methods) else []
    pairs += [((m, "off"), ("teacher", "off")) for m in SMALL_STUDENTS if m in methods]
    pairs += [(("teacher", on), ("teacher", "off"))] if _has(records, "teacher", on) else []  # FaceBN alone
    out = []
    for regime in settings["regimes"]:
        for (left, right) in pairs:
            for where, sizes in wheres:
                for metric in METRICS:
                    found = compare(records, left, right, regime, first_bin, sizes, metric)
                    out += [{**found, "where": where}] if found else []
        if 112 in student_sizes:
            for v in variants:
                found = compare(records, v, ("teacher", "off"), regime, first_bin, (112,), "accuracy")
                out += [{**found, "where": "112 px"}] if found else []
    return out


def _has(records: list[dict[str, Any]], method: str, facebn: str) -> bool:
    """Whether reported students of ``method`` were evaluated with FaceBN ``facebn`` (an adapting mode)."""
    return facebn != "off" and any(r["method"] == method and r["facebn"] == facebn and r["status"] == "ok"
                                   and r.get("candidate") is None and r.get("weight") is None and not r.get("epochs")
                                   for r in records)


def interval_text(c: dict[str, Any] | None) -> str:
    """``+1.2 [+0.3, +2.1] better`` (shown) / ``+0.3 [-0.5, +1.1] tie``; n/a without a comparison."""
    if c is None:
        return "n/a"
    word = {"better": "**better**", "worse": "**worse**", "tie": "tie"}[c["verdict"]]
    return f"{c['difference']:+.1f} [{c['low']:+.1f}, {c['high']:+.1f}] {word}"


def find(comparisons: list[dict[str, Any]], left: str, right: str, where: str, metric: str = "accuracy",
         regime: str | None = None) -> dict[str, Any] | None:
    """The comparison ``left - right`` (variant names) ``where`` ("16 px", "over sizes", "112 px")."""
    for c in comparisons:
        if (c["left"], c["right"], c["where"], c["metric"]) == (left, right, where, metric) and (
                regime is None or c["regime"] == regime):
            return c
    return None


def paired_table(summary: dict[str, Any], regime: str) -> str:
    """Every variant - none (and aird - kd): accuracy and VAL@FAR=1e-3, at the headline size and over sizes."""
    comps = [c for c in summary.get("comparisons", []) if c["regime"] == regime and c["where"] != "112 px"]
    wheres = list(dict.fromkeys(c["where"] for c in comps))
    rows = list(dict.fromkeys((c["left"], c["right"]) for c in comps))
    head = [f"{w} {'accuracy' if m == 'accuracy' else 'VAL@FAR=1e-3'}" for w in wheres for m in METRICS]
    lines = ["| difference (points) | seeds | " + " | ".join(head) + " |", "|---|---:|" + "---|" * len(head)]
    for left, right in rows:
        cells = [find(comps, left, right, w, m) for w in wheres for m in METRICS]
        seeds = max((c["seeds"] for c in cells if c), default=0)
        lines.append(f"| {left} - {right} | {seeds} | " + " | ".join(interval_text(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def sizes_table(summary: dict[str, Any], bin_name: str, regime: str) -> str:
    """Every model's accuracy at every probe size (mean over seeds), its mean over sizes, and its 112-px change
    against the teacher with the paired interval: does LR training forget HR faces?"""
    s = summary["settings"]
    sizes = list(s.get("student_eval_sizes") or s["eval_sizes"])
    on, comps = s["facebn_mode"], summary.get("comparisons", [])
    means = {(a["method"], a["facebn"], a["size"]): a["mean"] for a in summary["aggregate"] if a["bin"] == bin_name
             and a["regime"] in (regime, "teacher") and a["lr_size"] in (s["headline_size"], 112)}
    variants = [("teacher", "off"), ("teacher", on)] + [(m, f) for m in s["methods"] for f in ("off", on)]
    lines = ["| model | " + " | ".join(f"{z} px" for z in sizes) + " | mean over sizes | 112 px - teacher |",
             "|---|" + "---:|" * (len(sizes) + 2)]
    for method, facebn in variants:
        values = [means.get((method, facebn, z)) for z in sizes]
        if all(v is None for v in values):  # e.g. a method whose students were not evaluated with FaceBN
            continue
        mean = f"{np.mean(values):.1f}" if None not in values else "n/a"
        name = variant_name((method, facebn))
        change = "" if method == "teacher" else interval_text(find(comps, name, "teacher", "112 px", regime=regime))
        lines.append(f"| {name} | " + " | ".join("n/a" if v is None else f"{v:.1f}" for v in values)
                     + f" | {mean} | {change} |")
    return "\n".join(lines) + "\n"
