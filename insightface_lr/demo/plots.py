"""The demo's two figures: accuracy vs probe resolution and FaceBN gain (both mean ± std over seeds).

Drawn on an explicit Agg canvas (no pyplot state), written atomically by :func:`insightface_lr.eval.plots.save_png`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .sets import report_bins
from .settings import METHODS


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _models(settings: dict[str, Any]) -> list[str]:
    return ["teacher"] + [m for m in METHODS if m in settings["methods"]]


def _curve(summary: dict[str, Any], key: tuple) -> tuple[np.ndarray, ...] | None:
    """(sizes, mean, std) of one model/regime/set/FaceBN mode, sorted by probe size."""
    pts = sorted((a["size"], a["mean"], a["std"]) for a in summary["aggregate"]
                 if (a["method"], a["lr_size"], a["regime"], a["bin"], a["facebn"]) == key)
    return tuple(np.array(v) for v in zip(*pts, strict=True)) if pts else None


def _row(m: str, settings: dict[str, Any], regime: str) -> tuple[str, int, str]:
    return (m, 112, "teacher") if m == "teacher" else (m, settings["headline_size"], regime)


def accuracy_figure(summary: dict[str, Any], regime: str):
    """One panel per set: accuracy vs probe size (log axis) of the teacher and the headline-size students of
    ``regime``, FaceBN off, mean over seeds with a ± std band; one legend, outside the data."""
    from matplotlib import colormaps

    s = summary["settings"]
    sets = report_bins(s)
    fig = _figure(4.6 * len(sets) + 1.6, 4.2)
    colours = {m: colormaps["tab10"](i % 10) for i, m in enumerate(_models(s))}
    sizes = sorted(s["eval_sizes"])
    for i, bin_name in enumerate(sets):
        ax = fig.add_subplot(1, len(sets), i + 1)
        for m in _models(s):
            curve = _curve(summary, (*_row(m, s, regime), bin_name, "off"))
            if curve is None:
                continue
            xs, ys, sd = curve
            style = "--" if m == "teacher" else "-"
            ax.plot(xs, ys, style, marker="o", ms=3, color=colours[m], label=m if i == 0 else None)
            ax.fill_between(xs, ys - sd, ys + sd, color=colours[m], alpha=0.15, linewidth=0)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(z) for z in sizes])
        ax.minorticks_off()
        ax.set(xlabel="probe resolution (px, log scale)", ylabel="verification accuracy (%)",
               title=f"{bin_name} (FaceBN off)")
        ax.grid(alpha=0.3)
    fig.legend(loc="outside right center", fontsize="small", title=f"regime {regime}")
    return fig


def facebn_figure(summary: dict[str, Any], regime: str):
    """Grouped bars: the gain (points) of every FaceBN mode over FaceBN off per method at the headline size,
    one panel per set, mean ± std of the per-seed gains."""
    s = summary["settings"]
    h, sets, models = s["headline_size"], report_bins(s), _models(s)
    modes = [m for m in dict.fromkeys([s["facebn_mode"], *s.get("facebn_extra", ())])]
    agg = {(a["method"], a["lr_size"], a["regime"], a["bin"], a["size"], a["facebn"]): a for a in summary["aggregate"]}
    fig = _figure(4.6 * len(sets) + 1.6, 4.0)
    x, width = np.arange(len(models)), 0.8 / max(1, len(modes))
    for i, bin_name in enumerate(sets):
        ax = fig.add_subplot(1, len(sets), i + 1)
        for j, mode in enumerate(modes):
            gains, errs = [], []
            for m in models:
                off, on = (agg.get((*_row(m, s, regime), bin_name, h, f)) for f in ("off", mode))
                diff = np.array(on["values"]) - np.array(off["values"]) if off and on else np.array([np.nan])
                gains.append(float(diff.mean()))
                errs.append(float(diff.std(ddof=1)) if len(diff) > 1 else 0.0)
            ax.bar(x + (j - (len(modes) - 1) / 2) * width, gains, width, yerr=errs, capsize=2,
                   label=mode if i == 0 else None)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(x, models, rotation=30)
        ax.set(ylabel="gain over FaceBN off (points)", title=f"{bin_name} at {h} px")
        ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside right center", fontsize="small", title=f"FaceBN, regime {regime}")
    return fig


def write_demo_plots(summary: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """``accuracy_vs_resolution[_<regime>].png`` and ``facebn_gain[_<regime>].png``: one figure per regime (the
    first regime's files keep the plain names)."""
    from ..eval.plots import save_png

    out = Path(out)
    written = {}
    for k, regime in enumerate(summary["settings"]["regimes"]):
        suffix = "" if k == 0 else f"_{regime}"
        for stem, figure in (("accuracy_vs_resolution", accuracy_figure), ("facebn_gain", facebn_figure)):
            name = f"{stem}{suffix}.png"
            written[name] = save_png(figure(summary, regime), out / name)
    return written
