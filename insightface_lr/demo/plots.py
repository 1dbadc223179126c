"""The demo's two figures: accuracy vs probe resolution and FaceBN gain (both mean ± std over seeds).

Drawn on an explicit Agg canvas (no pyplot state), written atomically by :func:`insightface_lr.eval.plots.save_png`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .settings import METHODS


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _models(settings: dict[str, Any]) -> list[str]:
    return ["teacher"] + [m for m in METHODS if m in settings["methods"]]


def accuracy_figure(summary: dict[str, Any]):
    """One panel per set: accuracy vs probe size of the teacher and the headline-size students, mean over
    seeds (band: ± std)."""
    from matplotlib import colormaps

    s = summary["settings"]
    fig = _figure(11.0, 4.4)
    colours = {m: colormaps["tab10"](i % 10) for i, m in enumerate(_models(s))}
    for i, bin_name in enumerate(("test", "shifted")):
        ax = fig.add_subplot(1, 2, i + 1)
        for m in _models(s):
            lr = 112 if m == "teacher" else s["headline_size"]
            for f, style in (("off", "-"), (s["facebn_mode"], "--")):
                pts = sorted((a["size"], a["mean"], a["std"]) for a in summary["aggregate"]
                             if a["method"] == m and a["lr_size"] == lr and a["bin"] == bin_name and a["facebn"] == f)
                if pts:
                    xs, ys, sd = (np.array(v) for v in zip(*pts, strict=True))
                    ax.plot(xs, ys, style, marker="o", ms=3, color=colours[m], label=m if f == "off" else None)
                    ax.fill_between(xs, ys - sd, ys + sd, color=colours[m], alpha=0.12, linewidth=0)
        sizes = sorted(s["eval_sizes"])
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(z) for z in sizes])
        ax.minorticks_off()
        ax.set(xlabel="probe resolution (px)", ylabel="verification accuracy (%)",
               title=f"{bin_name}.bin (solid: FaceBN off, dashed: {s['facebn_mode']})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return fig


def facebn_figure(summary: dict[str, Any]):
    """Grouped bars: FaceBN gain (points) per method at the headline size, test and shifted, ± std over seeds."""
    s = summary["settings"]
    h, on = s["headline_size"], s["facebn_mode"]
    agg = {(a["method"], a["lr_size"], a["bin"], a["size"], a["facebn"]): a for a in summary["aggregate"]}
    models = _models(s)
    fig = _figure(7.5, 4.0)
    ax = fig.add_subplot()
    x = np.arange(len(models))
    for j, bin_name in enumerate(("test", "shifted")):
        gains, errs = [], []
        for m in models:
            lr = 112 if m == "teacher" else h
            off, adapted = agg.get((m, lr, bin_name, h, "off")), agg.get((m, lr, bin_name, h, on))
            if off is None or adapted is None:
                gains.append(np.nan)
                errs.append(0.0)
                continue
            diff = np.array(adapted["values"]) - np.array(off["values"])
            gains.append(float(diff.mean()))
            errs.append(float(diff.std(ddof=1)) if len(diff) > 1 else 0.0)
        ax.bar(x + (j - 0.5) * 0.38, gains, 0.38, yerr=errs, capsize=3, label=f"{bin_name}.bin")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(x, models, rotation=30)
    ax.set(ylabel="accuracy gain (points)", title=f"FaceBN ({on}) gain at {h} px (mean ± std over seeds)")
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return fig


def write_demo_plots(summary: dict[str, Any], out: str | Path) -> dict[str, Path]:
    from ..eval.plots import save_png

    out = Path(out)
    return {"accuracy_vs_resolution.png": save_png(accuracy_figure(summary), out / "accuracy_vs_resolution.png"),
            "facebn_gain.png": save_png(facebn_figure(summary), out / "facebn_gain.png")}
