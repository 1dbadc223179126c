"""Protocol reports in the sweep's style: ``<protocol>.md`` (a table), ``<protocol>.json`` (every number) and
PNG plots (CMC and/or ROC curves, one line per model x size x FaceBN cell), each file written atomically."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..plots import _colours, _figure, _linestyle, safe_stem, save_png, write_atomic


def protocol_markdown(results: Mapping[str, Any]) -> str:
    """A table: rows (model, probe size, FaceBN mode), columns the protocol's metrics in %."""
    ok = [r for r in results["records"] if r["status"] == "ok"]
    columns = list(ok[0]["metrics"]) if ok else []
    data = ", ".join(f"{k} {v}" for k, v in results["data"].items())
    lines = [f"### {results['title']}", "", f"{results['root']}: {data}", "",
             "| model | probes | FaceBN | " + " | ".join(columns) + " |",
             "|---|---|---|" + "---:|" * len(columns)]
    for r in results["records"]:
        cells = [_percent(r["metrics"].get(c)) for c in columns]
        lines.append(f"| {r['model']} | {_size(r['size'])} | {r['facebn']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _size(size: int | str) -> str:
    return "native" if size == "native" else f"{size} px"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def curve_figure(results: Mapping[str, Any], kind: str):
    """CMC (rate vs rank) or ROC (TPR vs FPR, log FPR) of every ok cell; None when no cell has that curve."""
    cells = [r for r in results["records"] if r["status"] == "ok" and kind in r["curves"]]
    if not cells:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    colours = _colours(list(results["models"]))
    for r in cells:
        for label, curve in r["curves"][kind].items():
            name = f"{r['model']} {_size(r['size'])} FaceBN {r['facebn']}: {label}"
            style = dict(color=colours[r["model"]], linestyle=_linestyle(r["facebn"]), label=name)
            if kind == "cmc":
                ax.plot(range(1, len(curve) + 1), [100 * v for v in curve], marker=".", **style)
            else:
                ax.plot(curve["fpr"], [100 * v for v in curve["tpr"]], **style)
    if kind == "cmc":
        ax.set_xlabel("rank")
        ax.set_ylabel("identification rate (%)")
    else:
        ax.set_xscale("log")
        ax.set_xlabel("false accept rate")
        ax.set_ylabel("true accept rate (%)")
    ax.set_title(f"{results['protocol']}: {kind.upper()}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small")
    return fig


def report_markdown(results: Mapping[str, Any], plots: Sequence[Path] = ()) -> str:
    hw, cfg = results["hardware"], results["config"]
    notes = sorted({f"- {r['model']}: {r['note']}" for r in results["records"] if r["status"] != "ok"})
    parts = [f"# {results['protocol']}", "", protocol_markdown(results), *(["Notes:", *notes, ""] if notes else [])]
    if plots:
        parts += ["## Plots", "", *[f"![{p.stem}]({p.name})" for p in plots], ""]
    parts += ["## Run", "", f"- device: {cfg['device']} (GPU: {hw['gpu'] or 'none'}); CPU: {hw['cpu']}, "
              f"{hw['cpu_count']} cores, torch {hw['torch']}; batch {cfg['batch_size']}, {cfg['workers']} workers",
              f"- embeddings cache: {cfg['cache_dir']}",
              f"- wall time: {results['wall_time_s']:.1f} s; created {results['created']}", ""]
    return "\n".join(parts)


def write_protocol_report(results: Mapping[str, Any], out_dir: str | Path, plots: bool = True) -> dict[str, Path]:
    """``<protocol>.json``, ``<protocol>.md`` and (``plots``) ``<protocol>_cmc.png`` / ``<protocol>_roc.png``."""
    out, stem = Path(out_dir), safe_stem(results["protocol"])
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for kind in ("cmc", "roc") if plots else ():
        fig = curve_figure(results, kind)
        if fig is not None:
            written[f"{stem}_{kind}.png"] = save_png(fig, out / f"{stem}_{kind}.png")
    written[f"{stem}.json"] = write_atomic(out / f"{stem}.json",
                                           json.dumps(results, indent=1, allow_nan=False).encode())
    md = report_markdown(results, [p for p in written.values() if p.suffix == ".png"])
    written[f"{stem}.md"] = write_atomic(out / f"{stem}.md", md.encode())
    return written
