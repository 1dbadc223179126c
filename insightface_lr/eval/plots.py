"""PNG plots of a resolution sweep (the dict of :func:`insightface_lr.eval.report.run_sweep`).

Per bin: accuracy vs probe resolution (one colour per model; FaceBN off solid, on dashed), FaceBN gain per
size (accuracy points, on minus off), and ROC curves (TPR vs FPR) at one size. Figures are drawn on an
explicit Agg canvas (no pyplot, no global backend switch, so importing this never disturbs a user's
interactive matplotlib) and written atomically.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .facebn_modes import facebn_spec

# FaceBN off solid, every "on" mode dashed (with a distinct dash pattern when several are swept)
LINESTYLES = {"off": "-", "batch": "--", "online": (0, (6, 2, 1, 2)), "calibrate": (0, (3, 2)), "prior": ":"}


def _linestyle(mode: str) -> Any:
    """By the mode's name (``calibrate@0.25`` draws as ``calibrate``; its label says the rest)."""
    return LINESTYLES.get(facebn_spec(mode)[0], "-.")


def _figure(width: float = 6.4, height: float = 4.4):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _ok(records: Sequence[Mapping[str, Any]], bin_name: str) -> list[Mapping[str, Any]]:
    return [r for r in records if r["bin"] == bin_name and r["status"] == "ok"]


def _colours(models: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {m: cmap(i % 10) for i, m in enumerate(models)}


def accuracy_vs_resolution(results: Mapping[str, Any], bin_name: str):
    """Accuracy (%) vs probe size (log2 axis) per (model, FaceBN mode); returns a matplotlib Figure."""
    fig = _figure()
    ax = fig.add_subplot()
    records = _ok(results["records"], bin_name)
    colours = _colours(list(results["models"]))
    for model in results["models"]:
        for mode in results["config"]["facebn_modes"]:
            points = sorted((r["size"], 100 * r["accuracy_mean"]) for r in records
                            if r["model"] == model and r["facebn"] == mode)
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", color=colours[model], linestyle=_linestyle(mode),
                        label=f"{model}, FaceBN {mode}")
    sizes = sorted(results["config"]["sizes"])
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("probe resolution (px)")
    ax.set_ylabel("verification accuracy (%)")
    ax.set_title(f"{bin_name}: accuracy vs resolution ({results['config']['pair_mode']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def facebn_gain(results: Mapping[str, Any], bin_name: str):
    """Grouped bars: accuracy points gained by each FaceBN mode over "off", per size; None without pairs."""
    records = {(r["model"], r["facebn"], r["size"]): r["accuracy_mean"] for r in _ok(results["records"], bin_name)}
    sizes = list(results["config"]["sizes"])
    series = []
    for model in results["models"]:
        for mode in (m for m in results["config"]["facebn_modes"] if m != "off"):
            gains = [100 * (records[model, mode, s] - records[model, "off", s])
                     if (model, mode, s) in records and (model, "off", s) in records else float("nan")
                     for s in sizes]
            if any(g == g for g in gains):  # at least one non-NaN (NaN != NaN)
                series.append((f"{model}, FaceBN {mode}", gains))
    if not series:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    width = 0.8 / len(series)
    for i, (label, gains) in enumerate(series):
        ax.bar([k + (i - (len(series) - 1) / 2) * width for k in range(len(sizes))], gains, width, label=label)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(sizes)), [str(s) for s in sizes])
    ax.set_xlabel("probe resolution (px)")
    ax.set_ylabel("FaceBN gain (accuracy points)")
    ax.set_title(f"{bin_name}: FaceBN on minus off")
    ax.legend(fontsize="small")
    return fig


def roc_curves(results: Mapping[str, Any], bin_name: str, size: int):
    """TPR vs FPR (10-fold means) of every (model, FaceBN mode) at ``size`` px; returns a Figure."""
    fig = _figure(5.6, 5.0)
    ax = fig.add_subplot()
    colours = _colours(list(results["models"]))
    for r in _ok(results["records"], bin_name):
        if r["size"] == size:
            ax.plot(r["fpr"], r["tpr"], color=colours[r["model"]], linestyle=_linestyle(r["facebn"]),
                    label=f"{r['model']}, FaceBN {r['facebn']} (acc {100 * r['accuracy_mean']:.1f}%)")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.6, linestyle=":", label="chance")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"{bin_name}: ROC at {size} px ({results['config']['pair_mode']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    return fig


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary sibling, then rename it onto ``path``: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; reports are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_png(fig, path: str | Path) -> Path:
    """Render ``fig`` to PNG bytes and write them atomically to ``path``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return write_atomic(path, buffer.getvalue())


def safe_stem(name: str) -> str:
    """A file-name-safe version of a bin/model name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "set"


def write_plots(results: Mapping[str, Any], out_dir: str | Path, roc_size: int | None = None) -> dict[str, Path]:
    """All plots of every bin into ``out_dir``; ``roc_size`` defaults to the smallest swept size."""
    sizes = results["config"]["sizes"]
    roc_size = int(roc_size) if roc_size is not None else min(sizes)
    if roc_size not in sizes:
        from ..errors import ConfigError

        raise ConfigError(f"ROC size {roc_size} px was not swept; choose one of {list(sizes)}")
    out, written = Path(out_dir), {}
    for bin_name in results["bins"]:
        stem = safe_stem(bin_name)
        figures = {f"accuracy_vs_resolution_{stem}.png": accuracy_vs_resolution(results, bin_name),
                   f"facebn_gain_{stem}.png": facebn_gain(results, bin_name),
                   f"roc_{stem}_{roc_size}px.png": roc_curves(results, bin_name, roc_size)}
        for name, fig in figures.items():
            if fig is not None:
                written[name] = save_png(fig, out / name)
    return written
