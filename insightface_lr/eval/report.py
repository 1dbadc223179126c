"""Resolution sweep: verification of several models on several ``.bin`` sets at several probe sizes, with
FaceBN off and on; written as ``report.md`` (tables), ``results.json`` (every number) and PNG plots.

One cell = (model, bin, size, FaceBN mode) and is exactly
:func:`insightface_lr.eval.lowres.lowres_verification` with that model function, so a cell can be re-checked
by one direct call. FaceBN is rebuilt from the source statistics for every cell: ``online`` starts afresh at
each size, ``calibrate`` makes one pass over the same set's faces degraded to that size (unlabeled target
faces, labels never used). In ``hr-lr`` mode the HR gallery is embedded once per (model, bin) by the plain
model: HR faces are what the source statistics describe, so the gallery needs no adaptation.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.pixels import normalize_uint8
from ..data.verification_bin import load_bin_images
from ..devices import resolve_device
from ..errors import ConfigError
from .cell_cache import CellCache, array_digest, cell_key
from .facebn_modes import FACEBN_MODES, facebn_for_mode, facebn_spec
from .lowres import PAIR_MODES, embed_at_size, lowres_verification, probe_chain
from .model_loading import EvalModel, load_eval_model
from .paired import pack_bits
from .probe_sizes import BIN_FACE_SIZE, check_probe_sizes
from .probes import ProbeSets, model_probes, to_input_size
from .verification import ROC_THRESHOLDS

DEFAULT_SIZES = (112, 32, 24, 20, 16, 12, 8)


FAR_TARGET = 1e-3  # verification_metrics' default: InsightFace's VAL@FAR=1e-3
FAR_OFF_FACTOR = 2.0  # an achieved FAR more than this times the target is not "VAL at FAR=1e-3"
METRICS = ("accuracy_mean", "accuracy_std", "best_threshold", "val", "val_std", "far", "xnorm")


@dataclass(frozen=True)
class SweepConfig:
    """What :func:`run_sweep` evaluates. ``momentum``: FaceBN online ``m`` (METHODS.md default 0.1);
    ``include_bn1d``: also adapt the final BatchNorm1d; ``image_size``: side the ``.bin`` faces are decoded to."""

    sizes: tuple[int, ...] = DEFAULT_SIZES
    facebn_modes: tuple[str, ...] = ("off", "batch")
    pair_mode: str = "lr-lr"
    batch_size: int = 64
    momentum: float = 0.1
    include_bn1d: bool = False
    image_size: int = BIN_FACE_SIZE
    calibrate_passes: int | str = "exact"  # FaceBN calibrate: passes over the set ("exact": independent of batch_size)
    facebn_sizes: tuple[int, ...] = ()  # the sizes adapting FaceBN modes are evaluated at (empty: every size)

    def cell_modes(self, size: int) -> tuple[str, ...]:
        """The FaceBN modes evaluated at probe ``size`` ("off" at every size)."""
        if not self.facebn_sizes or int(size) in self.facebn_sizes:
            return self.facebn_modes
        return tuple(m for m in self.facebn_modes if m == "off")

    def __post_init__(self) -> None:
        if not self.sizes or any(int(s) < 1 for s in self.sizes):
            raise ConfigError(f"sizes: expected positive pixel sizes, got {self.sizes!r}")
        check_probe_sizes(self.sizes, self.image_size)
        for mode in self.facebn_modes:
            try:
                facebn_spec(mode)
            except ConfigError as exc:
                raise ConfigError(f"facebn modes {self.facebn_modes!r}: {exc}") from None
        if not self.facebn_modes or len(set(self.facebn_modes)) != len(self.facebn_modes):
            raise ConfigError(f"facebn modes: expected distinct values of {FACEBN_MODES}, got {self.facebn_modes!r}")
        if self.pair_mode not in PAIR_MODES:
            raise ConfigError(f"pair mode: expected one of {PAIR_MODES}, got {self.pair_mode!r}")
        if self.batch_size < 2:  # FaceBN batch statistics need two faces; InsightFace batches are larger anyway
            raise ConfigError(f"batch size: expected >= 2, got {self.batch_size}")


def run_sweep(
    models: Mapping[str, str | Path | EvalModel],
    bins: Sequence[str | Path],
    sizes: Sequence[int] = DEFAULT_SIZES,
    facebn_modes: Sequence[str] = ("off", "batch"),
    pair_mode: str = "lr-lr",
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = False,
    network: str | None = None,
    config: SweepConfig | None = None,
    cache: CellCache | None = None,
) -> dict[str, Any]:
    """Evaluate every (model, bin, size, FaceBN mode) cell; returns a JSON-ready dict.

    ``results["records"]``: one dict per cell with ``model, bin, size, facebn, pair_mode, status`` ("ok" or
    "n/a"), the :data:`METRICS`, ``fold_accuracy``/``fold_threshold`` [10], ``tpr``/``fpr`` [T] on
    ``results["roc_thresholds"]`` and ``seconds``; a cell whose model input is bit-identical to an earlier
    size's (see :func:`probe_chain`) copies it and adds ``same_input_as_size``. ``config`` (if given)
    overrides the keyword options. ``cache``: finished cells are stored there as they complete and
    found there by a re-run with the same inputs (see :mod:`.cell_cache`).
    Each bin's images are decoded once and kept only while that bin is evaluated.
    """
    cfg = config or SweepConfig(tuple(int(s) for s in sizes), tuple(facebn_modes), pair_mode, int(batch_size))
    dev = resolve_device(device)
    start = time.perf_counter()
    loaded = [replace(m, name=name) if isinstance(m, EvalModel) else load_eval_model(m, network, dev, name)
              for name, m in models.items()]  # the dict key names the model in every table
    bin_names = unique_names([Path(b).stem for b in bins])
    records: list[dict[str, Any]] = []
    bin_info: dict[str, Any] = {}
    cells = sum(len(cfg.cell_modes(z)) for z in cfg.sizes)
    with _progress(len(loaded) * len(bins) * cells, progress) as bar:
        for bin_name, path in zip(bin_names, bins, strict=True):
            images, issame = load_bin_images(path, cfg.image_size)
            bin_info[bin_name] = {"path": str(path), "pairs": int(issame.size), "positives": int(issame.sum())}
            faces = array_digest(images, issame) if cache is not None else None
            probes = ProbeSets(images)  # degraded once per size, for every model and FaceBN mode
            probes.prepare(cfg.sizes)
            for model in loaded:
                key = cell_key("verification", model, faces, cfg)
                records += _sweep_one(model, bin_name, probes, issame, cfg, dev, bar, cache if key else None, key)
    return {
        "records": records,
        "models": {m.name: _model_info(m) for m in loaded},
        "bins": bin_info,
        "config": {**asdict(cfg), "device": str(dev)},
        "roc_thresholds": ROC_THRESHOLDS.tolist(),
        "hardware": hardware_info(dev),
        "wall_time_s": time.perf_counter() - start,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _sweep_one(model: EvalModel, bin_name: str, probes: ProbeSets, issame: np.ndarray, cfg: SweepConfig,
               device: torch.device, bar: Any, cache: CellCache | None = None,
               key: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """All (size, FaceBN mode) cells of one model on one bin; cells found in ``cache`` under ``key`` are reused."""
    hr: list[np.ndarray] = []
    images = probes.images

    def gallery() -> np.ndarray | None:  # the HR gallery: at most once per (model, bin), only if a cell needs it
        if cfg.pair_mode == "hr-lr" and not hr:
            hr.append(embed_at_size(model.fn, images, images.shape[1], model.input_size, cfg.batch_size, device))
        return hr[0] if hr else None

    out, done = [], {}
    for size in cfg.sizes:
        chain = probe_chain(images.shape[1], size, model.input_size)
        for mode in cfg.cell_modes(size):
            bar.set_postfix_str(f"{model.name} {bin_name} {size}px facebn={mode}", refresh=False)
            if (chain, mode) in done:  # bit-identical model input: the same numbers, without recomputing them
                same = done[(chain, mode)]
                out.append({**same, "size": int(size), "seconds": 0.0, "same_input_as_size": same["size"]})
            else:
                fields = {**key, "size": int(size), "facebn": mode} if cache is not None and key else None
                cached = cache.get(fields) if fields else None
                if cached is None:
                    cached = evaluate_cell(model, bin_name, images, issame, size, mode, cfg, device, gallery(),
                                           probes.at(size, model.input_size), probes.distinct)
                    if fields:
                        cache.put(fields, cached)
                done[(chain, mode)] = {**cached, "model": model.name, "bin": bin_name}
                out.append(done[(chain, mode)])
            bar.update(1)
    return out


def evaluate_cell(model: EvalModel, bin_name: str, images: np.ndarray, issame: np.ndarray, size: int, mode: str,
                  cfg: SweepConfig, device: torch.device, hr_embeddings: np.ndarray | None = None,
                  probes: np.ndarray | None = None,
                  distinct: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """One record: :func:`lowres_verification` of ``model`` (wrapped by FaceBN ``mode`` unless "off");
    ``probes``: ``images`` already degraded to ``size`` for this model (:func:`.probes.model_probes`);
    ``distinct``: :func:`.lowres.distinct_faces` of ``images`` (each repeated face embedded once)."""
    record: dict[str, Any] = {"model": model.name, "bin": bin_name, "size": int(size), "facebn": mode,
                              "pair_mode": cfg.pair_mode}
    if mode != "off" and not model.supports_facebn:
        return {**record, "status": "n/a", "note": model.facebn_reason(), **dict.fromkeys(METRICS)}
    tic = time.perf_counter()
    low = model_probes(images, size, model.input_size) if probes is None else probes
    # a repeated face is embedded once unless the mode normalises with the test batch's own statistics; FaceBN
    # calibrates on each distinct face once (a face in five pairs is not five faces of the camera's statistics)
    per_face = mode == "off" or facebn_spec(mode)[0] == "calibrate"
    calibration = low[distinct[0]] if per_face and distinct is not None else low
    fn = model.fn if mode == "off" else facebn_model_fn(model, mode, calibration, model.input_size, cfg, device)
    result = lowres_verification(fn, images, issame, size, model.input_size, cfg.pair_mode, cfg.batch_size,
                                 device, hr_embeddings=hr_embeddings, probes=low,
                                 distinct=distinct if per_face else None)
    values = result.to_dict()
    values.pop("thresholds")  # identical for every cell: stored once as results["roc_thresholds"]
    for name in ("pair_correct", "pair_accept"):  # hex bits (eval.paired): what paired intervals are made of
        values[name] = pack_bits(np.asarray(values[name], dtype=bool))
    values.update(pairs=int(issame.size), pair_same=pack_bits(issame))
    return {**record, "status": "ok", "note": "", **values, "seconds": time.perf_counter() - tic}


def facebn_model_fn(model: EvalModel, mode: str, probes: np.ndarray, input_size: int, cfg: SweepConfig,
                    device: torch.device):
    """``x -> embeddings`` through a fresh FaceBN of ``model.module``; ``calibrate`` first passes over
    ``probes`` (uint8 LR faces) resized to ``input_size``, exactly as the evaluation will see them."""
    calibration = _Reiterable(lambda: calibration_batches(probes, input_size, cfg.batch_size, device))
    return facebn_fn(model, mode, cfg.momentum, cfg.include_bn1d,
                     calibration if facebn_spec(mode)[0] == "calibrate" else None, cfg.calibrate_passes)


def facebn_fn(model: EvalModel, mode: str, momentum: float = 0.1, include_bn1d: bool = False,
              calibration: Iterable[torch.Tensor] | None = None, passes: int | str = 1):
    """``x -> embeddings`` through a fresh FaceBN of ``model.module`` (``mode`` may carry a prior and a depth,
    ``prior:64``, ``calibrate@0.25``);
    ``calibration`` (normalised batches, as the evaluation will see them; re-iterable when ``passes > 1``) is
    passed first in ``calibrate`` mode."""
    assert model.module is not None
    facebn = facebn_for_mode(model.module, mode, momentum=momentum, include_bn1d=include_bn1d)
    if facebn.mode == "calibrate":
        facebn.calibrate(calibration if calibration is not None else [], passes=passes)

    def run(x: torch.Tensor) -> torch.Tensor:
        out = facebn(x)
        return out[0] if isinstance(out, (tuple, list)) else out  # mbf with norm_output returns (emb, norm)

    return run


class _Reiterable:
    """An iterable that makes a fresh generator each time (FaceBN's later calibration passes re-read the set)."""

    def __init__(self, make: Callable[[], Iterator[torch.Tensor]]) -> None:
        self.make = make

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self.make()


def calibration_batches(probes: np.ndarray, input_size: int, batch_size: int,
                        device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
    """Normalised ``[B, 3, input_size, input_size]`` batches of uint8 LR ``probes`` [N,s,s,3] (:func:`lr_probes`)
    resized to the model input, as the evaluation sees them."""
    for start in range(0, len(probes), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(probes[start:start + batch_size])).to(device)
        yield to_input_size(normalize_uint8(x.permute(0, 3, 1, 2)), input_size)


def _model_info(model: EvalModel) -> dict[str, Any]:
    return {"source": model.source, "kind": model.kind, "input_size": model.input_size,
            "embedding_size": model.embedding_size, "supports_facebn": model.supports_facebn}


def unique_names(names: Sequence[str]) -> list[str]:
    """``names`` made distinct (``lfw``, ``lfw`` -> ``lfw``, ``lfw_2``), in order."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def hardware_info(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Where the numbers were measured: CPU model, cores, GPU, library versions."""
    info = {"cpu": _cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "device": str(device), "gpu": None}
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.processor() or platform.machine()
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else platform.processor() or platform.machine()


class _NoBar:
    def set_postfix_str(self, *args: Any, **kwargs: Any) -> None: ...

    def update(self, n: int = 1) -> None: ...


class _progress:
    """tqdm over the sweep's cells when ``enabled`` (stderr), a silent stand-in otherwise."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled

    def __enter__(self):
        if not self.enabled:
            self.bar = None
            return _NoBar()
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, desc="eval cells", unit="cell")
        return self.bar

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()


# --- writing ---------------------------------------------------------------------------------------------
def markdown_tables(results: Mapping[str, Any], metrics: Sequence[str] = ("accuracy_mean",)) -> str:
    """Per bin and metric (``accuracy_mean`` and/or ``val``), a markdown table: rows (model, FaceBN mode),
    columns probe sizes; cells in % as mean ± std over the folds ("n/a" where FaceBN does not apply)."""
    return "\n".join(_table(results, bin_name, metric) for bin_name in results["bins"] for metric in metrics)


def far_is_off(record: Mapping[str, Any]) -> bool:
    """True when the FAR a cell reached on its held-out folds is far above :data:`FAR_TARGET` (e.g. a
    collapsed model whose pairs all have distance 0 accepts everything: FAR 1.0, VAL 100 %)."""
    return record.get("far") is not None and record["far"] > FAR_OFF_FACTOR * FAR_TARGET


def _table(results: Mapping[str, Any], bin_name: str, metric: str) -> str:
    cfg, info = results["config"], results["bins"][bin_name]
    title = {"accuracy_mean": "accuracy (%), mean ± std over 10 folds",
             "val": f"VAL@FAR={FAR_TARGET:g} (%), with the FAR reached on the held-out folds"}[metric]
    spread = {"accuracy_mean": "accuracy_std", "val": "val_std"}[metric]
    lines = [f"### {bin_name}: {title}, {info['pairs']} pairs ({cfg['pair_mode']})", "",
             "| model | FaceBN | " + " | ".join(f"{s} px" for s in cfg["sizes"]) + " |",
             "|---|---|" + "---:|" * len(cfg["sizes"])]
    cells = {(r["model"], r["facebn"], r["size"]): r for r in results["records"] if r["bin"] == bin_name}
    for model in results["models"]:
        for mode in cfg["facebn_modes"]:
            row = [_cell_text(cells.get((model, mode, s)), metric, spread) for s in cfg["sizes"]]
            lines.append(f"| {model} | {mode} | " + " | ".join(row) + " |")
    off = [r for r in cells.values() if far_is_off(r)]
    if metric == "val" and off:
        worst = max(r["far"] for r in off)
        lines += ["", f"Warning: in {len(off)} cell(s) marked `!` the FAR reached is far above the {FAR_TARGET:g} "
                      f"target (up to {worst:.3g}): the threshold set on the training folds does not hold "
                      f"FAR={FAR_TARGET:g} (too few impostor pairs to resolve it, or ties such as embeddings "
                      f"collapsed to one point), so their VAL is not a VAL@FAR={FAR_TARGET:g} and not comparable."]
    return "\n".join(lines) + "\n"


def _cell_text(record: Mapping[str, Any] | None, metric: str, spread: str) -> str:
    if record is None or record.get(metric) is None:
        return "n/a"
    text = f"{100 * record[metric]:.2f} ± {100 * record[spread]:.2f}"
    if metric == "val":
        text += f" (FAR {record['far']:.1e}{' !' if far_is_off(record) else ''})"
    return text


def report_markdown(results: Mapping[str, Any], plots: Sequence[Path] = ()) -> str:
    """The whole ``report.md``: tables, notes on n/a cells, plots, hardware and wall time."""
    hw, cfg = results["hardware"], results["config"]
    parts = ["# Low-resolution verification sweep", "",
             f"Probes down-sampled (antialiased bicubic) to each size, then resized to the model input; "
             f"FaceBN modes: {', '.join(cfg['facebn_modes'])}; batch size {cfg['batch_size']}.", "",
             markdown_tables(results, ("accuracy_mean", "val"))]
    notes = sorted({f"- {r['model']}: {r['note']}" for r in results["records"] if r["status"] != "ok"})
    if notes:
        parts += ["Notes:", *notes, ""]
    if plots:
        parts += ["## Plots", "", *[f"![{p.stem}]({p.name})" for p in plots], ""]
    parts += ["## Run", "", f"- device: {cfg['device']} (GPU: {hw['gpu'] or 'none'}); CPU: {hw['cpu']}, "
              f"{hw['cpu_count']} cores, torch {hw['torch']} ({hw['torch_threads']} threads)",
              f"- wall time: {results['wall_time_s']:.1f} s; created {results['created']}", ""]
    return "\n".join(parts)


def write_report(results: Mapping[str, Any], out_dir: str | Path, roc_size: int | None = None,
                 plots: bool = True) -> dict[str, Path]:
    """Write ``report.md``, ``results.json`` and (``plots``) the PNGs into ``out_dir``, each atomically.

    ``roc_size``: probe size of the ROC plot (default: the smallest swept size). Returns name -> path.
    """
    from .plots import write_atomic, write_plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if plots:
        written.update(write_plots(results, out, roc_size))
    json_text = json.dumps(results, indent=1, allow_nan=False)
    write_atomic(out / "results.json", json_text.encode())
    written["results.json"] = out / "results.json"
    md = report_markdown(results, [p for p in written.values() if p.suffix == ".png"])
    write_atomic(out / "report.md", md.encode())
    written["report.md"] = out / "report.md"
    return written
