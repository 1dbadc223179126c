"""The demo's numbers: per-cell records -> mean ± std over seeds, the issue's claims checked, report + plots.

A record is one :func:`insightface_lr.eval.report.evaluate_cell` result tagged with ``method``, ``lr_size``
(the student's training size; 112 for the teacher) and ``seed``. Aggregates group records over seeds;
``std`` is the sample standard deviation (ddof = 1; 0 with one seed), in accuracy points.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from .settings import METHODS, DemoSettings

KEY = ("method", "lr_size", "bin", "size", "facebn")


def aggregate(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean/std (points) of ``accuracy_mean`` over seeds for every (method, lr_size, bin, size, facebn)."""
    groups: dict[tuple, list[tuple[Any, float]]] = defaultdict(list)
    for r in records:
        if r["status"] == "ok":
            groups[tuple(r[k] for k in KEY)].append((r["seed"], 100.0 * r["accuracy_mean"]))
    out = []
    for key, values in sorted(groups.items(), key=lambda kv: str(kv[0])):
        acc = np.array([v for _, v in values])
        std = float(acc.std(ddof=1)) if len(acc) > 1 else 0.0
        out.append({**dict(zip(KEY, key, strict=True)), "mean": float(acc.mean()), "std": std, "n": len(acc),
                    "seeds": [s for s, _ in values], "values": acc.tolist()})
    return out


def _lookup(agg: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    return {tuple(a[k] for k in KEY): a for a in agg}


def check_claims(agg: list[dict[str, Any]], settings: DemoSettings) -> list[dict[str, Any]]:
    """The issue's "must show" items at the headline size (probe = training size), each with its numbers."""
    table, h, on = _lookup(agg), settings.headline_size, settings.facebn_mode
    cell = lambda m, b="test", f="off": table.get((m, h, b, h, f))  # noqa: E731
    claims = []

    def add(text: str, left: dict | None, right: dict | None, margin: float) -> None:
        if left is None or right is None:
            return
        diff = left["mean"] - right["mean"]
        claims.append({"claim": text, "difference": diff, "holds": bool(diff >= margin),
                       "n": min(left["n"], right["n"]), "left": left["mean"], "right": right["mean"],
                       **paired_differences(left, right)})

    add(f"aird beats none by >= 3 points at {h} px (test, FaceBN off)", cell("aird"), cell("none"), 3.0)
    for baseline in ("kd", "feat", "rkd"):
        add(f"aird >= {baseline} at {h} px (test, FaceBN off)", cell("aird"), cell(baseline), 0.0)
    add(f"FaceBN ({on}) improves aird on the shifted set at {h} px", cell("aird", "shifted", on),
        cell("aird", "shifted"), 1e-9)
    return claims


def paired_differences(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    """Per-seed differences ``left - right`` (points) over the seeds both have, and their sample std: the
    noise a difference of means has to be read against (seeds share data, teacher and batch order)."""
    right_by_seed = dict(zip(right["seeds"], right["values"], strict=True))
    diffs = [v - right_by_seed[seed] for seed, v in zip(left["seeds"], left["values"], strict=True)
             if seed in right_by_seed]
    std = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else None
    return {"seed_differences": diffs, "difference_std": std}


def claim_text(claim: dict[str, Any]) -> str:
    """One line of the report: the claim, its numbers, per-seed differences and the verdict."""
    text = (f"{claim['claim']}: {claim['left']:.1f} vs {claim['right']:.1f} ({claim['difference']:+.1f} points, "
            f"{claim['n']} seed(s)")
    std = claim.get("difference_std")
    if std is not None:
        per_seed = ", ".join(f"{d:+.1f}" for d in claim["seed_differences"])
        text += f"; per seed {per_seed}, std {std:.1f}"
    text += f"): **{'holds' if claim['holds'] else 'does NOT hold'}**"
    if std is not None and abs(claim["difference"]) <= std:
        text += " (the difference is within one std of the per-seed differences: a tie at this noise level)"
    return text


def build_summary(records: list[dict[str, Any]], settings: DemoSettings, timings: dict[str, float],
                  wall_time_s: float, device: str, ran: list[str]) -> dict[str, Any]:
    from ..eval.report import hardware_info

    agg = aggregate(records)
    stage_total = lambda prefix: round(sum(v for k, v in timings.items() if k.startswith(prefix)), 1)  # noqa: E731
    return {
        "settings": settings.to_dict(), "records": records, "aggregate": agg,
        "claims": check_claims(agg, settings),
        "run": {"hardware": hardware_info(device), "wall_time_s": round(wall_time_s, 1),
                "stage_seconds": timings, "total_stage_seconds": round(sum(timings.values()), 1),
                "stage_totals": {p: stage_total(p) for p in ("data", "teacher", "bridge_g", "student", "eval")},
                "stages_run_now": ran},
    }


def _fmt(a: dict[str, Any] | None) -> str:
    if a is None:
        return "n/a"
    return f"{a['mean']:.1f} ± {a['std']:.1f}" if a["n"] > 1 else f"{a['mean']:.1f}"


def headline_table(summary: dict[str, Any], lr_size: int | None = None) -> str:
    """Students trained at ``lr_size`` (default: the headline size), probed at it: both sets, FaceBN off/on,
    mean ± std over seeds; the teacher probed at the same size."""
    s = summary["settings"]
    h = s["headline_size"] if lr_size is None else lr_size
    on, table = s["facebn_mode"], _lookup(summary["aggregate"])
    lines = [f"| method ({h} px) | seeds | test | test + FaceBN | shifted | shifted + FaceBN |",
             "|---|---:|---:|---:|---:|---:|"]
    for m in ["teacher"] + [m for m in METHODS if m in s["methods"]]:
        lr = 112 if m == "teacher" else h
        cells = [table.get((m, lr, b, h, f)) for b in ("test", "shifted") for f in ("off", on)]
        n = max((c["n"] for c in cells if c), default=0)
        name = "teacher (HR net)" if m == "teacher" else m
        lines.append(f"| {name} | {n} | " + " | ".join(_fmt(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def sweep_table(summary: dict[str, Any], bin_name: str, lr_size: int) -> str:
    """Students of ``lr_size`` (and the teacher) at every probe size, FaceBN off/on, mean ± std over seeds."""
    s = summary["settings"]
    sizes, table = s["eval_sizes"], _lookup(summary["aggregate"])
    lines = ["| model | seeds | FaceBN | " + " | ".join(f"{z} px" for z in sizes) + " |",
             "|---|---:|---|" + "---:|" * len(sizes)]
    for m, lr in [("teacher", 112)] + [(m, lr_size) for m in METHODS if m in s["methods"]]:
        for f in ("off", s["facebn_mode"]):
            cells = [table.get((m, lr, bin_name, z, f)) for z in sizes]
            n = max((c["n"] for c in cells if c), default=0)
            lines.append(f"| {m} | {n} | {f} | " + " | ".join(_fmt(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def report_markdown(summary: dict[str, Any], plots: list[str]) -> str:
    s, run = summary["settings"], summary["run"]
    hw = run["hardware"]
    parts = [f"# insightface-lr demo ({s['preset']})", "",
             f"Synthetic faces: {s['train_ids']} training identities x {s['images_per_identity']} images "
             f"(train.rec), {s['pairs']} verification pairs of {s['test_ids']} disjoint identities (test.bin) and "
             "the same pairs under another camera (shifted.bin: gamma, colour cast, contrast, blur, noise, JPEG). "
             f"Teacher: demo_hr_net at 112 px, {s['teacher_epochs']} epochs. Students: bridge_student at native "
             f"{'/'.join(str(z) for z in s['lr_sizes'])} px, {s['student_steps']} steps of {s['batch_size']} faces, "
             f"seeds {s['seeds']}. Verification accuracy (%), 10-fold; mean ± std over seeds (sample std).", "",
             f"## Headline: trained and probed at {s['headline_size']} px", "", headline_table(summary),
             "## The issue's claims", ""]
    parts += [f"- {claim_text(c)}" for c in summary["claims"]]
    parts.append("")
    for lr in (z for z in s["lr_sizes"] if z != s["headline_size"]):
        parts += [f"## Trained and probed at {lr} px", "", headline_table(summary, lr)]
    for lr in s["lr_sizes"]:
        for b in ("test", "shifted"):
            parts += [f"## Sweep: {b}.bin, students trained at {lr} px", "", sweep_table(summary, b, lr)]
    parts += ["## Plots", "", *[f"![{Path(p).stem}]({Path(p).name})" for p in plots], ""]
    totals = ", ".join(f"{k} {v:.0f} s" for k, v in run["stage_totals"].items())
    parts += ["## Run", "", f"- CPU: {hw['cpu']}, {hw['cpu_count']} cores, torch {hw['torch']} "
              f"({hw['torch_threads']} thread(s) per job, {run.get('jobs', 1)} job(s) at once), device {hw['device']} "
              f"(GPU: {hw['gpu'] or 'none'})",
              f"- stage time (summed over stages and runs, kept across resumes): {run['total_stage_seconds']:.0f} s "
              f"({totals})",
              f"- wall time of the last invocation: {run['wall_time_s']:.0f} s", ""]
    return "\n".join(parts)


def write_outputs(summary: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """``results.json``, ``report.md`` and the PNGs into ``out`` (atomically); prints the headline table."""
    from ..eval.plots import write_atomic
    from .plots import write_demo_plots

    out = Path(out)
    written = write_demo_plots(summary, out)
    write_atomic(out / "results.json", json.dumps(summary, indent=1, allow_nan=False).encode())
    write_atomic(out / "report.md", report_markdown(summary, [str(p) for p in written.values()]).encode())
    written.update({"results.json": out / "results.json", "report.md": out / "report.md"})
    return written
