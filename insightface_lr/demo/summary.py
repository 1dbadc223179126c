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

from .comparisons import build_comparisons, find, paired_table, sizes_table
from .sets import report_bins
from .settings import METHODS, DemoSettings

KEY = ("method", "lr_size", "regime", "bin", "size", "facebn")


def is_reported(record: dict[str, Any]) -> bool:
    """A record of a reported model (not a tuning candidate nor a budget-curve run)."""
    return not record.get("epochs") and record.get("weight") is None and record.get("candidate") is None


def aggregate(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean/std (points) of ``accuracy_mean`` over seeds for every (method, lr_size, regime, bin, size, facebn)
    of the reported models."""
    groups: dict[tuple, list[tuple[Any, float]]] = defaultdict(list)
    for r in records:
        if r["status"] == "ok" and is_reported(r):
            r = {"regime": "same", **r} if r["method"] != "teacher" else {**r, "regime": "teacher"}
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


def check_claims(agg: list[dict[str, Any]], settings: DemoSettings,
                 comparisons: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The issue's "must show" items at the headline size (probe = training size), each with its numbers,
    per regime; on the first reported set (synthetic: test.bin; real: the first --test-bin). A claim that a
    method beats another by a margin also needs the paired interval (demo.comparisons) above 0."""
    table, h, on = _lookup(agg), settings.headline_size, settings.facebn_mode
    first = report_bins(settings.to_dict())[0]
    claims = []

    def cell(m: str, regime: str, b: str = first, f: str = "off") -> dict | None:
        return table.get((m, 112, "teacher", b, h, f) if m == "teacher" else (m, h, regime, b, h, f))

    def add(text: str, left: dict | None, right: dict | None, margin: float, at_most: bool = False,
            interval: dict | None = None) -> None:
        if left is None or right is None:
            return
        diff = left["mean"] - right["mean"]
        holds = diff >= -margin if at_most else diff >= margin
        if interval is not None and margin > 0 and not at_most:  # "beats by a margin" must also be shown
            holds = holds and interval["verdict"] == "better"
        claims.append({"claim": text, "difference": diff, "holds": bool(holds), "n": min(left["n"], right["n"]),
                       "left": left["mean"], "right": right["mean"], **paired_differences(left, right),
                       "interval": interval})

    for regime in settings.regimes:
        where = f"at {h} px ({first}, FaceBN off, regime {regime})"
        margin = settings.aird_margin
        paired = lambda m, r=regime: find(comparisons or [], "aird", m, f"{h} px", "accuracy", r)  # noqa: E731
        add(f"aird beats none by >= {margin:g} points {where}", cell("aird", regime), cell("none", regime), margin,
            interval=paired("none"))
        for baseline in ("kd", "feat", "rkd"):
            add(f"aird >= {baseline} {where}", cell("aird", regime), cell(baseline, regime), 0.0,
                interval=paired(baseline))
        for m in settings.methods:
            add(f"FaceBN ({on}) loses <= 0.3 points in-distribution for {m} at {h} px ({first}, regime {regime})",
                cell(m, regime, f=on), cell(m, regime), 0.3, at_most=True)
        if not settings.real:
            add(f"FaceBN ({on}) improves aird on the shifted set at {h} px (regime {regime})",
                cell("aird", regime, "shifted", on), cell("aird", regime, "shifted"), 1e-9)
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
    interval = claim.get("interval")
    if interval is not None:
        text += f"; paired 95 % interval [{interval['low']:+.1f}, {interval['high']:+.1f}], {interval['verdict']}"
    text += f"): **{'holds' if claim['holds'] else 'does NOT hold'}**"
    if std is not None and abs(claim["difference"]) <= std:
        text += " (the difference is within one std of the per-seed differences: a tie at this noise level)"
    return text


def build_summary(records: list[dict[str, Any]], settings: DemoSettings, timings: dict[str, float],
                  wall_time_s: float, device: str, ran: list[str]) -> dict[str, Any]:
    from ..eval.report import hardware_info

    agg = aggregate(records)
    comparisons = build_comparisons(records, settings.to_dict(), report_bins(settings.to_dict())[0])
    stage_total = lambda prefix: round(sum(v for k, v in timings.items() if k.startswith(prefix)), 1)  # noqa: E731
    return {
        "settings": settings.to_dict(), "records": records, "aggregate": agg, "comparisons": comparisons,
        "claims": check_claims(agg, settings, comparisons),
        "run": {"hardware": hardware_info(device), "wall_time_s": round(wall_time_s, 1),
                "stage_seconds": timings, "total_stage_seconds": round(sum(timings.values()), 1),
                "stage_totals": {p: stage_total(p) for p in ("data", "teacher", "bridge_g", "student", "eval")},
                "stages_run_now": ran},
    }


def _fmt(a: dict[str, Any] | None) -> str:
    if a is None:
        return "n/a"
    return f"{a['mean']:.1f} ± {a['std']:.1f}" if a["n"] > 1 else f"{a['mean']:.1f}"


def _row_key(m: str, lr: int, regime: str) -> tuple[str, int, str]:
    return (m, 112, "teacher") if m == "teacher" else (m, lr, regime)


def headline_table(summary: dict[str, Any], lr_size: int | None = None, regime: str | None = None) -> str:
    """Students trained at ``lr_size`` (default: the headline size) in ``regime`` (default: the first), probed
    at it: every set, FaceBN off/on, mean ± std over seeds; the teacher probed at the same size."""
    s = summary["settings"]
    h = s["headline_size"] if lr_size is None else lr_size
    regime = regime or s["regimes"][0]
    on, table, sets = s["facebn_mode"], _lookup(summary["aggregate"]), report_bins(s)
    lines = [f"| method ({h} px, {regime}) | seeds | " + " | ".join(f"{b} | {b} + FaceBN" for b in sets) + " |",
             "|---|---:|" + "---:|---:|" * len(sets)]
    for m in ["teacher"] + [m for m in METHODS if m in s["methods"]]:
        cells = [table.get((*_row_key(m, h, regime), b, h, f)) for b in sets for f in ("off", on)]
        n = max((c["n"] for c in cells if c), default=0)
        name = ("teacher (as it is)" if s.get("student_init") else "teacher (HR net)") if m == "teacher" else m
        lines.append(f"| {name} | {n} | " + " | ".join(_fmt(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def sweep_table(summary: dict[str, Any], bin_name: str, lr_size: int, regime: str) -> str:
    """Students of ``lr_size`` (and the teacher) at every probe size, every FaceBN mode, mean ± std over seeds."""
    s = summary["settings"]
    sizes, table = s["eval_sizes"], _lookup(summary["aggregate"])
    lines = ["| model | seeds | FaceBN | " + " | ".join(f"{z} px" for z in sizes) + " |",
             "|---|---:|---|" + "---:|" * len(sizes)]
    for m in ["teacher"] + [m for m in METHODS if m in s["methods"]]:
        for f in _modes(s):
            cells = [table.get((*_row_key(m, lr_size, regime), bin_name, z, f)) for z in sizes]
            n = max((c["n"] for c in cells if c), default=0)
            lines.append(f"| {m} | {n} | {f} | " + " | ".join(_fmt(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _modes(s: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(["off", s["facebn_mode"], *s.get("facebn_extra", ())]))


def facebn_table(summary: dict[str, Any], bin_name: str, regime: str) -> str:
    """Every FaceBN mode's change against FaceBN off (points, mean ± std of the per-seed differences) at the
    headline size: the cost in-distribution, the gain under shift."""
    s = summary["settings"]
    h, table, modes = s["headline_size"], _lookup(summary["aggregate"]), _modes(s)[1:]
    lines = [f"| method ({bin_name}, {h} px, {regime}) | off | " + " | ".join(f"{m} - off" for m in modes) + " |",
             "|---|---:|" + "---:|" * len(modes)]
    for m in ["teacher"] + [m for m in METHODS if m in s["methods"]]:
        off = table.get((*_row_key(m, h, regime), bin_name, h, "off"))
        cells = []
        for mode in modes:
            on = table.get((*_row_key(m, h, regime), bin_name, h, mode))
            d = paired_differences(on, off) if on and off else None
            cells.append("n/a" if d is None else _fmt_diff(d["seed_differences"]))
        lines.append(f"| {m} | {_fmt(off)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt_diff(diffs: list[float]) -> str:
    arr = np.array(diffs)
    return f"{arr.mean():+.1f} ± {arr.std(ddof=1):.1f}" if len(arr) > 1 else f"{arr.mean():+.1f}"


def budget_table(summary: dict[str, Any]) -> str:
    """none and aird at every budget (mean ± std over the budget seeds), per regime and set, and aird - none
    per seed: has none converged, and does the gap survive more steps?"""
    s = summary["settings"]
    h, sets, seeds = s["headline_size"], report_bins(s), s.get("budget_seeds") or s["seeds"][:1]
    budgets = sorted({*s["budget_epochs"], s["student_epochs"]})
    acc = {(r["method"], r.get("regime", "same"), r.get("epochs") or s["student_epochs"], r["bin"], r["seed"]):
           100.0 * r["accuracy_mean"] for r in summary["records"]
           if r["status"] == "ok" and r["seed"] in seeds and r["size"] == h and r["facebn"] == "off"
           and r["lr_size"] == h and r.get("weight") is None and r["method"] in ("none", "aird")}

    def cell(values: list[float], diff: bool = False) -> str:
        if len(values) < len(seeds):
            return "n/a"
        sign = "+" if diff else ""
        per_seed = f" ({'/'.join(f'{v:{sign}.1f}' for v in values)})" if diff and len(values) > 1 else ""
        return (_fmt_diff(values) if diff else _fmt_mean(values)) + per_seed

    lines = ["| regime | method | set | " + " | ".join(f"{e} epochs" for e in budgets) + " |",
             "|---|---|---|" + "---:|" * len(budgets)]
    for regime in s["regimes"]:
        for b in sets:
            got = {(m, e): [acc[(m, regime, e, b, z)] for z in seeds if (m, regime, e, b, z) in acc]
                   for m in ("none", "aird") for e in budgets}
            for m in ("none", "aird"):
                lines.append(f"| {regime} | {m} | {b} | " + " | ".join(cell(got[(m, e)]) for e in budgets) + " |")
            gaps = [cell([a - n for a, n in zip(got[("aird", e)], got[("none", e)], strict=False)], diff=True)
                    if len(got[("aird", e)]) == len(got[("none", e)]) else "n/a" for e in budgets]
            lines.append(f"| {regime} | aird - none | {b} | " + " | ".join(gaps) + " |")
    return "\n".join(lines) + "\n"


def _fmt_mean(values: list[float]) -> str:
    arr = np.array(values)
    return f"{arr.mean():.1f} ± {arr.std(ddof=1):.1f}" if len(arr) > 1 else f"{arr.mean():.1f}"


def tuning_table(summary: dict[str, Any]) -> str:
    """Every method's candidates (val accuracy at the headline size, in the grid's order) and the chosen one."""
    tuning = summary.get("tuning") or {}
    width = max((len(c["candidates"]) for c in tuning.values()), default=0)
    lines = ["| method | " + " | ".join(f"candidate {i + 1}" for i in range(width)) + " | chosen |",
             "|---|" + "---|" * (width + 1)]
    for m, c in tuning.items():
        label = c.get("label", f"w{c['weight']:g}")
        cells = [f"{name if name.startswith('w') else 'w' + name}: {acc:.1f}" for name, acc in c["candidates"].items()]
        lines.append(f"| {m} | " + " | ".join(cells + ["n/a"] * (width - len(cells))) + f" | {label} |")
    return "\n".join(lines) + "\n"


def _data_text(summary: dict[str, Any]) -> str:
    s, d = summary["settings"], summary.get("data", {})
    sub = (f" Regime *subset*: the students see {d.get('subset_identities')} of those identities "
           f"({d.get('subset_images')} faces, a seeded {s['student_fraction']:.0%}); the teacher saw them all."
           if "subset" in s["regimes"] else "")
    budget = (f"{s['student_epochs']} epochs" if s["student_epochs"] else f"{s['student_steps']} steps") + \
        f" of {s['batch_size']} faces"
    # files by their names: a committed report must not carry the paths of the machine that ran it
    teacher = Path(s["teacher_model"]).name if s["teacher_model"] else \
        f"demo_hr_net at 112 px, {s['teacher_epochs']} epochs"
    if s["faces"]:
        head = (f"Real faces: {Path(s['faces']).name} ({d.get('identities')} identities, {d.get('images')} faces); "
                f"{d.get('val_identities')} identities carved out as val.bin (tuning and budgets only), "
                f"{d.get('train_identities')} for training. Reported on "
                f"{', '.join(Path(b).name for b in s['test_bins'])}.")
    else:
        head = (f"Synthetic faces: {s['train_ids']} training identities x {s['images_per_identity']} images "
                f"(train.rec), {s['pairs']} verification pairs of {s['test_ids']} disjoint identities (test.bin) "
                "and the same pairs under another camera (shifted.bin: gamma, colour cast, contrast, blur, noise, "
                "JPEG).")
    students = (f"bridge_student at native {'/'.join(str(z) for z in s['lr_sizes'])} px, {budget}")
    if s.get("student_init") == "teacher":
        students = (f"fine-tunes of the teacher (a trainable copy: its network and input size; `none` is the plain "
                    f"low-resolution fine-tune) on faces shrunk to {'/'.join(map(str, s['finetune_lr_sizes']))} px "
                    f"and enlarged back, {budget}; `bridge`: {students}; `bridge2`: the same tiny student at "
                    f"native {s['headline_size']} px distilled from the `none` student of its seed seeing the same "
                    f"LR face (the two-step bridge, its recipe's epochs)")
    return (f"{head}{sub} Teacher: {teacher}. Students: {students}, seeds {s['seeds']}. Verification accuracy "
            "(%), 10-fold; mean ± std over seeds (sample std).")


PAIRED_NOTE = ("Each cell: the mean difference in points over the seeds both have, [its 95 % interval: a bootstrap "
               "over seeds and over pairs within the 10 folds, the same pairs for both models], and the verdict: "
               "**better** / **worse** when the interval excludes 0 (shown), tie when it holds 0 "
               "(docs/evaluation.md).")


def report_markdown(summary: dict[str, Any], plots: list[str]) -> str:
    s, run = summary["settings"], summary["run"]
    hw = run["hardware"]
    parts = [f"# insightface-lr demo ({s['preset']})", "", _data_text(summary), ""]
    for regime in s["regimes"]:
        parts += [f"## Headline: trained and probed at {s['headline_size']} px, regime {regime}", "",
                  headline_table(summary, regime=regime)]
    for regime in s["regimes"] if summary.get("comparisons") else []:
        parts += [f"## Paired differences: {report_bins(s)[0]}, regime {regime}", "", PAIRED_NOTE, "",
                  paired_table(summary, regime), f"## Every size: {report_bins(s)[0]}, regime {regime}", "",
                  sizes_table(summary, report_bins(s)[0], regime)]
    parts += ["## The issue's claims", "", *[f"- {claim_text(c)}" for c in summary["claims"]], ""]
    if summary.get("tuning"):
        parts += ["## Tuning (val.bin, FaceBN off, seed 100)", "", tuning_table(summary)]
    if s["budget_epochs"]:
        seeds = s.get("budget_seeds") or s["seeds"][:1]
        parts += [f"## Budgets (seeds {', '.join(map(str, seeds))}; FaceBN off)", "", budget_table(summary)]
    first = report_bins(s)[0]
    for regime in s["regimes"]:
        for b in report_bins(s):
            parts += [f"## FaceBN modes: {b}, regime {regime}", "", facebn_table(summary, b, regime)]
    for lr in (z for z in s["lr_sizes"] if z != s["headline_size"]):
        parts += [f"## Trained and probed at {lr} px", "", headline_table(summary, lr)]
    for regime in s["regimes"]:
        for lr in s["lr_sizes"] if regime == s["regimes"][0] else [s["headline_size"]]:
            for b in report_bins(s):
                parts += [f"## Sweep: {b}, students trained at {lr} px, regime {regime}", "",
                          sweep_table(summary, b, lr, regime)]
    parts += ["## Plots", "", *[f"![{Path(p).stem}]({Path(p).name})" for p in plots], ""]
    totals = ", ".join(f"{k} {v:.0f} s" for k, v in run["stage_totals"].items())
    parts += ["## Run", "", f"- CPU: {hw['cpu']}, {hw['cpu_count']} cores, torch {hw['torch']} "
              f"({hw['torch_threads']} thread(s) per job, {run.get('jobs', 1)} job(s) at once), device {hw['device']} "
              f"(GPU: {hw['gpu'] or 'none'})",
              f"- stage time (summed over stages and runs, kept across resumes): {run['total_stage_seconds']:.0f} s "
              f"({totals})",
              f"- wall time of the last invocation: {run['wall_time_s']:.0f} s", *_wall_lines(run),
              f"- claims checked on {first}", ""]
    return "\n".join(parts)


def _wall_lines(run: dict[str, Any]) -> list[str]:
    """The whole run's wall time over its invocations (a run resumed across sessions), with the load average
    each started under."""
    invocations = run.get("invocations") or []
    if not invocations:
        return []
    loads = ", ".join(f"{i['seconds']:.0f} s (load {i['load_average_at_start']})" for i in invocations)
    return [f"- wall time of the whole run: {run['wall_total_s']:.0f} s ({run['wall_total_s'] / 3600:.2f} h) over "
            f"{len(invocations)} invocation(s): {loads}"]


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
