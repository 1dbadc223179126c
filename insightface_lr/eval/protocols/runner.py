"""Evaluate models on one protocol: every (model, probe size, FaceBN mode) cell, embeddings through the cache.

A cell embeds each face set of the benchmark (:class:`~.base.FaceSet`): sets on the probe side at the cell's
size and through the cell's FaceBN (built afresh per cell from the source statistics, as the sweep does;
``calibrate`` passes once over the probe-side faces at that size, labels unused), the other sets (galleries,
distractors) natively and without FaceBN, once per model, shared by every cell. ``"native"`` size means the
faces are only resized to the model input. The protocol then scores the cell from the embeddings.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...comma_lists import comma_list
from ...devices import resolve_device
from ...errors import ConfigError
from ..model_loading import EvalModel, load_eval_model
from ..report import FACEBN_MODES, _model_info, facebn_fn, facebn_spec, hardware_info
from . import get_protocol
from .base import Benchmark, Protocol
from .embed import EmbedOptions, calibration_batches, embed_set, inference_fn, model_digest, set_cache


@dataclass(frozen=True)
class ProtocolConfig:
    """What :func:`run_protocol` evaluates; ``sizes`` holds ``"native"`` and/or LR sizes in px."""

    sizes: tuple[int | str, ...] = ("native",)
    facebn_modes: tuple[str, ...] = ("off",)
    batch_size: int = 64
    workers: int = 2
    momentum: float = 0.1
    include_bn1d: bool = False

    def __post_init__(self) -> None:
        bad = [s for s in self.sizes if s != "native" and not (isinstance(s, int) and s >= 1)]
        if not self.sizes or bad:
            raise ConfigError(f"--sizes: expected 'native' and/or positive pixel sizes, got {list(self.sizes)}")
        if not self.facebn_modes:
            raise ConfigError(f"facebn modes: expected values of {FACEBN_MODES}, got {self.facebn_modes!r}")
        for mode in self.facebn_modes:
            facebn_spec(mode)  # prior:N, calibrate:N and @D forms too; ConfigError naming the mode
        if self.batch_size < 2 or self.workers < 0:
            raise ConfigError(f"--batch-size >= 2 and --workers >= 0 expected, got {self.batch_size}, {self.workers}")


def run_protocol(models: Mapping[str, str | Path | EvalModel], protocol: str, root: str | Path | Benchmark,
                 cache_dir: str | Path, config: ProtocolConfig | None = None, device: str | torch.device = "cpu",
                 progress: bool = False, network: str | None = None) -> dict[str, Any]:
    """Every cell of ``protocol`` read from ``root``; returns a JSON-ready dict (``records``: ``model, size,
    facebn, status, note, metrics, curves, seconds``). ``root`` may be the protocol's already read Benchmark."""
    cfg, dev, start = config or ProtocolConfig(), resolve_device(device), time.perf_counter()
    spec = get_protocol(protocol)
    bench = root if isinstance(root, Benchmark) else spec.read(Path(root))
    opts = EmbedOptions(Path(cache_dir), cfg.batch_size, cfg.workers, dev, progress=progress)
    loaded = [replace(m, name=name) if isinstance(m, EvalModel) else load_eval_model(m, network, dev, name)
              for name, m in models.items()]
    records = []
    for model in loaded:
        weights, plain = model_digest(model), _lazy(lambda m=model: inference_fn(m))
        for size in cfg.sizes:
            for mode in cfg.facebn_modes:
                records.append(protocol_cell(spec, bench, model, weights, size, mode, cfg, opts, plain))
    return {"protocol": spec.name, "title": spec.title, "root": str(bench.root), "data": dict(bench.info),
            "records": records, "models": {m.name: _model_info(m) for m in loaded},
            "config": {**asdict(cfg), "device": str(dev), "cache_dir": str(cache_dir)},
            "hardware": hardware_info(dev), "wall_time_s": time.perf_counter() - start,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def protocol_cell(spec: Protocol, bench: Benchmark, model: EvalModel, weights: str, size: int | str, mode: str,
                  cfg: ProtocolConfig, opts: EmbedOptions, plain: Callable | None = None) -> dict[str, Any]:
    """One record: the protocol's metrics of ``model`` with probes at ``size`` through FaceBN ``mode``;
    ``plain`` is the model's FaceBN-off function (default :func:`~.embed.inference_fn`)."""
    plain = plain or inference_fn(model)
    record: dict[str, Any] = {"model": model.name, "size": size, "facebn": mode}
    if mode != "off" and not model.supports_facebn:
        return {**record, "status": "n/a", "note": model.facebn_reason(), "metrics": {}, "curves": {}}
    tic = time.perf_counter()
    side = model.input_size if size == "native" else int(size)
    probe_sets = [s for s in bench.sets if s.probe_side]
    calibrates = mode != "off" and facebn_spec(mode)[0] == "calibrate"
    probe_fn = _lazy(lambda: plain if mode == "off" else facebn_fn(
        model, mode, cfg.momentum, cfg.include_bn1d,
        calibration_batches(probe_sets, side, model.input_size, opts) if calibrates else None))
    embeddings: dict[str, np.ndarray] = {}
    for face_set in bench.sets:
        probe = face_set.probe_side
        set_side = side if probe else model.input_size
        cell = f"{set_side}px-facebn_{mode if probe else 'off'}"
        cache = set_cache(opts, bench.protocol, model, weights, face_set, set_side, cell)
        fn = probe_fn if probe else plain
        embeddings[face_set.name] = embed_set(fn, model.input_size, face_set, set_side, cache, opts,
                                              resumable=not (probe and mode == "online"))
    scores = spec.score(bench, embeddings)
    return {**record, "status": "ok", "note": "", "metrics": scores.metrics, "curves": scores.curves,
            "seconds": time.perf_counter() - tic}


def _lazy(build: Callable[[], Callable]) -> Callable:
    """A model function built on first call only: a cell whose probe sets are all cached never builds (or
    calibrates) its FaceBN."""
    built: list[Callable] = []

    def call(x: torch.Tensor) -> torch.Tensor:
        if not built:
            built.append(build())
        return built[0](x)

    return call


def parse_sizes(text: str) -> tuple[int | str, ...]:
    """``"native,16,8"`` -> ``("native", 16, 8)`` (ConfigError naming the flag otherwise)."""
    items: Sequence[str] = comma_list(text)
    try:
        sizes = tuple(s if s == "native" else int(s) for s in items)
    except ValueError:
        raise ConfigError(f"--sizes: expected 'native' and/or pixel sizes like native,16,8, got {text!r}") from None
    if len(set(sizes)) != len(sizes):
        raise ConfigError(f"--sizes: expected distinct values, got {text!r}")
    ProtocolConfig(sizes=sizes)
    return sizes
