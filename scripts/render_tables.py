"""Render every results table of the README and docs/ from the committed summary of the run that produced it.

    python scripts/render_tables.py           # rewrite the tables in place
    python scripts/render_tables.py --check   # exit 1, naming each table that disagrees with its summary

A table lives between ``<!-- table:NAME -->`` and ``<!-- /table:NAME -->`` in README.md or any docs/*.md; its
text is ``TABLES[NAME]``'s function applied to the summary JSON it names (a demo's ``results.json`` without its
``records``). Numbers are never typed: a new run replaces the summary, this script the tables. A marker whose name
has no renderer yet must be empty (a placeholder). To add a table: write ``def my_table(summary) -> str`` and
add ``"my_name": Table("docs/.../summary.json", my_table)`` to :data:`TABLES`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SMALL_GOAL = 86.0  # issue 32: the two-step tiny student's goal on dev.bin at 16 px (the bar: the teacher as it is)
MARKED = re.compile(r"(<!-- table:([\w-]+) -->\n)(.*?)(<!-- /table:\2 -->)", re.DOTALL)


@dataclass(frozen=True)
class Table:
    """A table: the summary JSON it is made from (relative to the repository) and the function that writes it."""

    summary: str
    render: Callable[[dict[str, Any]], str]


def _fmt(a: dict[str, Any] | None) -> str:
    if a is None:
        return "n/a"
    return f"{a['mean']:.1f} ± {a['std']:.1f}" if a["n"] > 1 else f"{a['mean']:.1f}"


def _cell(summary: dict[str, Any], method: str, regime: str, bin_name: str, facebn: str) -> dict | None:
    size = summary["settings"]["headline_size"]
    for a in summary["aggregate"]:
        if (a["method"], a["bin"], a["size"], a["facebn"]) == (method, bin_name, size, facebn) and (
                a["regime"] == ("teacher" if method == "teacher" else regime)) and (
                method == "teacher" or a["lr_size"] == size):
            return a
    return None


def synthetic_table(summary: dict[str, Any], regime: str) -> str:
    """The demo's own headline table (report.md, the command's output) for ``regime``: 16-px students probed at
    16 px on test.bin and the shifted set, FaceBN off and the default mode, mean ± std over seeds."""
    from insightface_lr.demo.summary import headline_table

    return headline_table(summary, regime=regime)


def real_table(summary: dict[str, Any], regime: str, facebn: str, weights: bool) -> str:
    """``demo --faces``: 16-px students of ``regime`` on each test bin (FaceBN off and ``facebn``) and val.bin;
    ``weights``: a column with each method's weight chosen on val.bin."""
    from insightface_lr.demo.summary import METHODS, report_bins

    s = summary["settings"]
    tests = [b for b in report_bins(s) if b != "val"]
    head = [f"method ({s['headline_size']} px, regime {regime})", "seeds"] + (["chosen weight"] if weights else [])
    head += [col for b in tests for col in (f"{b}.bin", f"{b}.bin + FaceBN {facebn}")] + ["val.bin"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for m in ["teacher"] + [m for m in METHODS if m in s["methods"]]:
        cells = [_cell(summary, m, regime, b, f) for b in tests for f in ("off", facebn)]
        cells.append(_cell(summary, m, regime, "val", "off"))
        chosen = summary.get("tuning", {}).get(m, {}).get("weight")
        name = "teacher (112-px model, probed at 16 px)" if m == "teacher" else m
        row = [name, str(max((c["n"] for c in cells if c), default=0))]
        row += [f"{chosen:g}" if chosen is not None else ""] if weights else []
        lines.append("| " + " | ".join(row + [_fmt(c) for c in cells]) + " |")
    return "\n".join(lines) + "\n"


def _gap(summary: dict[str, Any], left: tuple[str, str, str], right: tuple[str, str, str], regime: str) -> str:
    """``left - right`` for (method, set, FaceBN mode) cells of ``regime``: the difference of means and the
    per-seed differences (the noise it must be read against)."""
    a, b = _cell(summary, *left[:1], regime, *left[1:]), _cell(summary, *right[:1], regime, *right[1:])
    if a is None or b is None:
        return "n/a"
    by_seed = dict(zip(b["seeds"], b["values"], strict=True))
    diffs = [v - by_seed[seed] for seed, v in zip(a["seeds"], a["values"], strict=True) if seed in by_seed]
    per_seed = "/".join(f"{d:+.1f}" for d in diffs)
    return f"{a['mean'] - b['mean']:+.1f} ({per_seed})" if len(diffs) > 1 else f"{a['mean'] - b['mean']:+.1f}"


def gaps_table(summary: dict[str, Any]) -> str:
    """The differences the demo is about, per regime, at the headline size: each distilling method against
    ``none`` and ``aird`` against ``kd`` (test set, FaceBN off), and FaceBN's gain on the shifted set."""
    s = summary["settings"]
    first, on = ("test", s["facebn_mode"])
    rows = [(f"{m} - none", (m, first, "off"), ("none", first, "off")) for m in s["methods"] if m != "none"]
    rows.append(("aird - kd", ("aird", first, "off"), ("kd", first, "off")))
    rows += [(f"FaceBN {on} gain, {m}, shifted set", (m, "shifted", on), (m, "shifted", "off"))
             for m in ("none", "aird") if m in s["methods"]]
    regimes = s["regimes"]
    lines = [f"| points at {s['headline_size']} px (per seed) | " + " | ".join(f"regime {r}" for r in regimes) + " |",
             "|---|" + "---:|" * len(regimes)]
    lines += [f"| {name} | " + " | ".join(_gap(summary, left, right, r) for r in regimes) + " |"
              for name, left, right in rows]
    return "\n".join(lines) + "\n"


def pretrained_table(summary: dict[str, Any]) -> str:
    """``demo --faces --teacher PRETRAINED``: the pretrained teacher as it is (112 px and the headline size, each
    FaceBN mode), then every method fine-tuned from it (``bridge``: a tiny student distilled from it) at the
    headline size on each test bin: mean ± std over seeds, the weight chosen on val.bin, the difference to ``none``
    with its per-seed values, and the students with the headline FaceBN mode."""
    from insightface_lr.demo.summary import METHODS, report_bins

    s, h, on = summary["settings"], summary["settings"]["headline_size"], summary["settings"]["facebn_mode"]
    tests, regime = [b for b in report_bins(s) if b != "val"], s["regimes"][0]
    head = [f"model ({h} px unless named)", "seeds", "chosen on val.bin"]
    head += [col for b in tests for col in (f"{b}.bin", "- none (per seed)", f"{b}.bin + FaceBN {on}")]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for size, mode in [(112, "off")] + [(h, m) for m in dict.fromkeys(["off", on, *s.get("facebn_extra", ())])]:
        found = [next((a for a in summary["aggregate"] if (a["method"], a["bin"], a["size"], a["facebn"]) ==
                       ("teacher", b, size, mode)), None) for b in tests]
        if any(found):
            name = "teacher as it is" + (f", {size} px" if size != h else "") + (f", FaceBN {mode}" if mode != "off"
                                                                                else "")
            lines.append("| " + " | ".join([name, "1", ""] + [x for c in found for x in (_fmt(c), "", "")]) + " |")
    for m in [m for m in METHODS if m in s["methods"]]:
        tuned = summary.get("tuning", {}).get(m, {})
        chosen = tuned.get("label") or (f"w{tuned['weight']:g}" if tuned.get("weight") is not None else "")
        cells = [(_fmt(_cell(summary, m, regime, b, "off")),
                  "" if m == "none" else _gap(summary, (m, b, "off"), ("none", b, "off"), regime),
                  _fmt(_cell(summary, m, regime, b, on)) if _cell(summary, m, regime, b, on) else "")
                 for b in tests]
        n = max((c["n"] for b in tests if (c := _cell(summary, m, regime, b, "off"))), default=0)
        name = {"bridge": f"bridge (tiny student, native {h} px)",
                "bridge2": f"bridge2 (tiny student, native {h} px, from none)"}.get(m, m)
        row = [name, str(n), chosen] + [x for c in cells for x in c]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def claims_list(summary: dict[str, Any]) -> str:
    """The run's own checks (report.md's "Claims"): each with both means, the per-seed differences and the
    verdict, as :func:`insightface_lr.demo.summary.claim_text` words them."""
    from insightface_lr.demo.summary import claim_text

    return "".join(f"- {claim_text(c)}\n" for c in summary["claims"])


def run_time(summary: dict[str, Any]) -> str:
    """The run's measured time and machine, as its summary recorded them (wall time of the command that finished
    it, and the stages' own total)."""
    run, hw = summary["run"], summary["run"]["hardware"]
    wall = run["wall_time_s"]
    return (f"Measured: **{wall / 60:.1f} min** wall ({wall:.0f} s; stages {run['total_stage_seconds']:.0f} s) on "
            f"{hw['cpu_count']} {hw['cpu']} cores ({hw['device']}), `--jobs {run.get('jobs', '?')}`, "
            f"{hw['torch_threads']} torch thread(s) per job, torch {hw['torch']}.\n")


def int8_sentence(summary: dict[str, Any]) -> str:
    """``benchmarks/int8.py``'s measurement of ``export --int8`` on a real-face student: size and the accuracy
    change against the float32 graph on each set (and the export's own held-out check)."""
    size, sets = summary["file_mb"], [summary[k] for k in ("synthetic", "real") if summary.get(k)]
    changes = []
    for s in sets:
        acc = s["accuracy"]
        for z in acc["int8"]:
            pair = s.get("paired", {}).get(str(z))
            interval = f" [{pair['low']:+.2f}, {pair['high']:+.2f}]" if pair else ""
            changes.append(f"{acc['int8'][z] - acc['float32'][z]:+.2f}{interval} points on `{Path(s['bin']).name}` "
                           f"at {z} px")
    held = summary["heldout_check"]
    bound = 0.5 + held.get("standard_error", 0.0)  # the command's default --int8-max-drop plus the check's s.e.
    verdict = "accepts" if -held["change"] <= bound else "refuses"
    return (f"Measured on a `bridge_student` distilled from the pretrained MobileFaceNet on real faces: the int8 "
            f"package is {size['int8']:.2f} MB ({size['float32']:.2f} MB float32); int8 - float32 (paired 95 % "
            f"interval where measured): "
            f"{', '.join(changes)}; the export's own check on held-out calibration identities "
            f"{held['change']:+.2f} points, so `export --int8` with its defaults {verdict} it.\n")


def real_gaps(summary: dict[str, Any], regime: str) -> str:
    """``demo --faces``: each method against ``none`` and ``aird`` against ``kd`` on the first test bin at the
    headline size (FaceBN off), with the per-seed differences."""
    from insightface_lr.demo.summary import report_bins

    first = report_bins(summary["settings"])[0]
    pairs = [(m, "none") for m in summary["settings"]["methods"] if m != "none"] + [("aird", "kd")]
    cells = [f"`{a}` - `{b}` {_gap(summary, (a, first, 'off'), (b, first, 'off'), regime)}" for a, b in pairs]
    return f"Per-seed differences on `{first}.bin` (regime {regime}): " + "; ".join(cells) + ".\n"


def aird_vs_kd(summary: dict[str, Any]) -> str:
    """One line: ``aird`` against ``kd`` on the first test bin at the headline size, with the per-seed values."""
    from insightface_lr.demo.summary import report_bins

    first, regime = report_bins(summary["settings"])[0], summary["settings"]["regimes"][0]
    return f"`aird` - `kd` on `{first}.bin`: {_gap(summary, ('aird', first, 'off'), ('kd', first, 'off'), regime)}.\n"


def pretrained_paired(summary: dict[str, Any]) -> str:
    """Every method - none (and aird - kd) on the first test bin: accuracy and VAL@FAR=1e-3 at the headline size
    and over sizes, each with its paired 95 % interval and verdict (insightface_lr.demo.comparisons)."""
    from insightface_lr.demo.comparisons import paired_table

    return paired_table(summary, summary["settings"]["regimes"][0])


def pretrained_sizes(summary: dict[str, Any]) -> str:
    """Every model at every probe size, its mean over sizes and its 112-px change against the teacher."""
    from insightface_lr.demo.comparisons import sizes_table
    from insightface_lr.demo.summary import report_bins

    s = summary["settings"]
    return sizes_table(summary, report_bins(s)[0], s["regimes"][0])


def pretrained_verdict(summary: dict[str, Any]) -> str:
    """The issue's bar in words: ``aird`` - ``none`` at the headline size on the first test bin (>= the run's
    margin with the interval above 0), ``aird`` - ``kd``, and the best method against ``none``."""
    from insightface_lr.demo.comparisons import find, interval_text
    from insightface_lr.demo.summary import report_bins

    s = summary["settings"]
    where, first, margin = f"{s['headline_size']} px", report_bins(s)[0], s["aird_margin"]
    comps = summary.get("comparisons", [])
    aird, kd = find(comps, "aird", "none", where), find(comps, "aird", "kd", where)
    if aird is None:
        return "No paired comparison of `aird` and `none` in this run.\n"
    holds = aird["difference"] >= margin and aird["verdict"] == "better"
    shown = [c for c in comps if c["right"] == "none" and c["where"] == where and c["metric"] == "accuracy"
             and c["verdict"] == "better"]
    best = ", ".join(f"`{c['left']}` {interval_text(c)}" for c in shown) or "none of them"
    none, teacher_hr = _cell(summary, "none", s["regimes"][0], first, "off"), _hr_teacher(summary, first)
    gap = (f" The plain fine-tune reaches {none['mean']:.1f} at {where}, {teacher_hr - none['mean']:.1f} points "
           f"below the teacher's own {teacher_hr:.1f} at 112 px." if none and teacher_hr is not None else "")
    return (f"On `{first}.bin` at {where} over {aird['seeds']} seeds: `aird` - `none` {interval_text(aird)} "
            f"(the bar, >= +{margin:g} with the interval above 0, {'holds' if holds else 'does NOT hold'}); "
            f"`aird` - `kd` {interval_text(kd)}. Shown better than the plain fine-tune in accuracy at {where}: "
            f"{best}.{gap}\n")


def _hr_teacher(summary: dict[str, Any], bin_name: str) -> float | None:
    """The teacher's own accuracy at 112 px on ``bin_name`` (FaceBN off)."""
    return next((a["mean"] for a in summary["aggregate"] if (a["method"], a["bin"], a["size"], a["facebn"]) ==
                 ("teacher", bin_name, 112, "off")), None)


def pretrained_small(summary: dict[str, Any]) -> str:
    """Issue 32's bar in words: the two-step tiny student (``bridge2``) - the teacher as it is at the headline size
    on the first test bin, with its interval, and its mean accuracy at the headline size against the goal."""
    from insightface_lr.demo.comparisons import find, interval_text
    from insightface_lr.demo.summary import report_bins

    s = summary["settings"]
    h, first = s["headline_size"], report_bins(s)[0]
    small = find(summary.get("comparisons", []), "bridge2", "teacher", f"{h} px")
    if small is None:
        return "No two-step tiny student (`bridge2`) in this run.\n"
    mean = _cell(summary, "bridge2", s["regimes"][0], first, "off")
    reached = mean is not None and mean["mean"] >= SMALL_GOAL
    return (f"The two-step tiny student (`bridge2`, native {h} px) on `{first}.bin` at {h} px over "
            f"{small['seeds']} seeds: {_fmt(mean)}; minus the teacher as it is {interval_text(small)}; the goal, a "
            f"mean of {SMALL_GOAL:g} or more, {'holds' if reached else 'is not reached'}.\n")


def pretrained_time(summary: dict[str, Any]) -> str:
    """The comparison's whole wall time (every invocation of a run resumed across sessions) and machine, and how
    much of it ran beside other work (a load average above the run's own threads + 1 at its start or while it
    ran, or marked ``beside_other_work`` where the load was not logged but the other work is known) or with its
    load unknown (time logged before loads were): such time is not an idle measurement."""
    run, hw = summary["run"], summary["run"]["hardware"]
    total = run.get("wall_total_s", run["wall_time_s"])
    invocations = run.get("invocations") or []
    threads = run.get("threads_per_job", hw["torch_threads"])  # the workers' threads, not the main process's
    own = run.get("jobs", 1) * threads
    loads = [[x for x in (i.get("load_average_at_start"), i.get("load_average_max")) if x is not None]
             for i in invocations]
    beside = [i.get("beside_other_work") or bool(x and max(x) > own + 1) for i, x in zip(invocations, loads,
                                                                                          strict=True)]
    shared = sum(i["seconds"] for i, b in zip(invocations, beside, strict=True) if b)
    unknown = sum(i["seconds"] for i, x, b in zip(invocations, loads, beside, strict=True) if not x and not b)
    idle = total - shared - unknown
    return (f"The whole comparison took **{total / 3600:.2f} h** wall ({max(len(invocations), 1)} invocation(s) of "
            f"the same command, resumed) on {hw['cpu_count']} {hw['cpu']} cores, `--jobs {run.get('jobs', '?')}`, "
            f"{threads} torch thread(s) per job, torch {hw['torch']}: {idle / 3600:.2f} h of it alone "
            f"on the box, {shared / 3600:.2f} h beside other work (load average above {own + 1}), "
            f"{unknown / 3600:.2f} h with the load not logged.\n")


TABLES: dict[str, Table] = {
    # the main command as the README states it (regime subset, timed), and the same run extended to both regimes
    "synthetic": Table("docs/demo/summary.json", partial(synthetic_table, regime="subset")),
    "synthetic_time": Table("docs/demo/summary.json", run_time),
    "synthetic_gaps": Table("docs/demo/both/summary.json", gaps_table),
    "synthetic_same": Table("docs/demo/both/summary.json", partial(synthetic_table, regime="same")),
    "synthetic_both_subset": Table("docs/demo/both/summary.json", partial(synthetic_table, regime="subset")),
    "pretrained": Table("docs/pretrained/summary.json", pretrained_table),
    "int8": Table("docs/int8/summary.json", int8_sentence),
    "pretrained_aird_kd": Table("docs/pretrained/summary.json", aird_vs_kd),
    # issue 30's comparison (summaries with per-pair comparisons): paired intervals, every size, the verdict
    "pretrained_paired": Table("docs/pretrained/summary.json", pretrained_paired),
    "pretrained_sizes": Table("docs/pretrained/summary.json", pretrained_sizes),
    "pretrained_verdict": Table("docs/pretrained/summary.json", pretrained_verdict),
    "pretrained_time": Table("docs/pretrained/summary.json", pretrained_time),
    "pretrained_small": Table("docs/pretrained/summary.json", pretrained_small),
    "synthetic_claims": Table("docs/demo/both/summary.json", claims_list),
    "real_subset": Table("docs/real_faces/summary.json",
                         partial(real_table, regime="subset", facebn="calibrate", weights=True)),
    "real_subset_gaps": Table("docs/real_faces/summary.json", partial(real_gaps, regime="subset")),
    "real_same": Table("docs/real_faces/summary.json", partial(real_table, regime="same", facebn="batch",
                                                               weights=False)),
}


def documents(root: Path) -> list[Path]:
    """README.md and every Markdown file of docs/ (not the generated API reference)."""
    docs = sorted(p for p in (root / "docs").rglob("*.md") if "api" not in p.relative_to(root / "docs").parts[:1])
    return [root / "README.md", *docs]


def rendered(text: str, root: Path, where: str) -> tuple[str, list[str]]:
    """``text`` with every marked table re-rendered, and the faults found (unknown tables with content)."""
    faults: list[str] = []
    cache: dict[str, dict[str, Any]] = {}

    def replace(match: re.Match) -> str:
        opening, name, body, closing = match.group(1), match.group(2), match.group(3), match.group(4)
        table = TABLES.get(name)
        if table is None:
            if body.strip():
                faults.append(f"{where}: table {name!r} has content but no renderer in scripts/render_tables.py")
            return match.group(0)
        if not (root / table.summary).is_file():
            faults.append(f"{where}: table {name!r}: its summary {table.summary} does not exist (publish the run "
                          "with scripts/publish_run.py)")
            return match.group(0)
        if table.summary not in cache:
            cache[table.summary] = json.loads((root / table.summary).read_text(encoding="utf-8"))
        return opening + table.render(cache[table.summary]) + closing

    return MARKED.sub(replace, text), faults


def check(root: Path = ROOT) -> list[str]:
    """One line per table (or marker) of ``root``'s documents that disagrees with its summary."""
    faults: list[str] = []
    for path in documents(root):
        text = path.read_text(encoding="utf-8")
        new, found = rendered(text, root, path.name)
        faults += found
        old_tables = {m.group(2): m.group(3) for m in MARKED.finditer(text)}
        faults += [f"{path.relative_to(root)}: table {name!r} differs from {TABLES[name].summary}; run "
                   f"python scripts/render_tables.py" for name, body in
                   ((m.group(2), m.group(3)) for m in MARKED.finditer(new)) if old_tables.get(name) != body]
    return faults


def render(root: Path = ROOT) -> list[Path]:
    """Rewrite every marked table in place; returns the files that changed."""
    changed = []
    for path in documents(root):
        text = path.read_text(encoding="utf-8")
        new, _ = rendered(text, root, path.name)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when a table disagrees")
    args = parser.parse_args(argv)
    if args.check:
        faults = check()
        for fault in faults:
            print(f"render_tables: {fault}", file=sys.stderr)
        return 1 if faults else 0
    for path in render():
        print(f"render_tables: rewrote {path.relative_to(ROOT)}")
    faults = check()
    for fault in faults:
        print(f"render_tables: {fault}", file=sys.stderr)
    return 1 if faults else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
