"""Identification sweep: CMC rank-k of several models at several probe sizes, with FaceBN off and on; written
as ``identification.md`` (table) and ``identification.json`` (every number).

The benchmark is :mod:`insightface_lr.eval.identification_sets` on a user's data (an image folder with one
sub-folder per identity, or a ``train.rec``): the first ``gallery_per_id`` images of each identity form the
HR gallery, the rest are probes seen at each size, distractors (optional) join the gallery. A cell
(model, size, FaceBN "off") equals :func:`~insightface_lr.eval.identification_sets.identification_at_size`;
the faces are decoded once and the gallery is embedded once per model. FaceBN adapts the probe path only: the
HR gallery and distractors are what the source statistics describe (as the ``hr-lr`` verification mode
does), and ``calibrate`` passes once over the probes degraded to the cell's size, labels unused.
The protocol is closed-set (every probe has a mate, as in TinyFace), so DIR@FPIR, which needs probes of
identities absent from the gallery, is not part of it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..devices import resolve_device
from ..errors import ConfigError
from .cell_cache import CellCache, array_digest, cell_key
from .identification_sets import IdentificationSet, gallery_embeddings, load_identification_set, probe_cmc
from .model_loading import EvalModel, load_eval_model
from .probe_sizes import check_probe_sizes
from .probes import model_probes
from .report import SweepConfig, _model_info, _progress, facebn_model_fn, hardware_info

RANKS = (1, 5, 20)


@dataclass(frozen=True)
class IdentificationConfig:
    """What :func:`run_identification` evaluates; FaceBN fields as in :class:`~.report.SweepConfig`."""

    sizes: tuple[int, ...] = (112, 32, 24, 20, 16, 12, 8)
    facebn_modes: tuple[str, ...] = ("off",)
    gallery_per_id: int = 1
    ranks: tuple[int, ...] = RANKS
    batch_size: int = 64
    momentum: float = 0.1
    include_bn1d: bool = False

    def __post_init__(self) -> None:
        SweepConfig(sizes=self.sizes, facebn_modes=self.facebn_modes, batch_size=self.batch_size)  # same checks
        if self.gallery_per_id < 1:
            raise ConfigError(f"--gallery-per-id: expected >= 1 gallery image per identity, got {self.gallery_per_id}")
        if not self.ranks or min(self.ranks) < 1:
            raise ConfigError(f"ranks: expected positive integers, got {self.ranks!r}")


def _open_images(path: str | os.PathLike, flag: str, folder_dataset: type, expected: str) -> Dataset:
    """A ``.rec`` file or a folder holding ``train.rec`` -> RecordDataset; another folder -> ``folder_dataset``."""
    from ..data.datasets import RecordDataset

    path = Path(path)
    if (path.is_file() and path.suffix == ".rec") or (path / "train.rec").is_file():
        return RecordDataset(path)
    if path.is_dir():
        return folder_dataset(path)
    raise ConfigError(f"{flag}: {path} is neither a folder nor a .rec file (expected {expected})")


def open_face_set(path: str | os.PathLike, flag: str = "--identification") -> Dataset:
    """An image folder (one sub-folder per identity), a folder holding ``train.rec``, or a ``.rec`` file."""
    from ..data.datasets import ImageFolderDataset

    return _open_images(path, flag, ImageFolderDataset,
                        "an image folder with one sub-folder per identity, or a train.rec")


def open_distractors(path: str | os.PathLike, flag: str = "--distractors") -> Dataset:
    """Distractor faces: every image under a folder (flat or nested), or the images of a ``.rec``."""
    from ..data.datasets import ImageFilesDataset

    return _open_images(path, flag, ImageFilesDataset, "a folder of images, flat or nested, or a .rec")


def run_identification(
    models: Mapping[str, str | Path | EvalModel], data: str | Path, distractors: str | Path | None = None,
    config: IdentificationConfig | None = None, device: str | torch.device = "cpu", progress: bool = False,
    network: str | None = None, cache: CellCache | None = None,
) -> dict[str, Any]:
    """Every (model, size, FaceBN mode) cell; returns a JSON-ready dict (``records``: ``model, size, facebn,
    status, note, rank_<k>..., seconds``; ``data``: the split's sizes). ``cache``: finished cells are stored
    there as they complete and reused by a re-run with the same inputs (see :mod:`.cell_cache`)."""
    cfg = config or IdentificationConfig()
    dev = resolve_device(device)
    start = time.perf_counter()
    dataset = open_face_set(data)
    extra = open_distractors(distractors) if distractors is not None else None
    loaded = [replace(m, name=name) if isinstance(m, EvalModel) else load_eval_model(m, network, dev, name)
              for name, m in models.items()]  # the dict key names the model in every table
    faces = load_identification_set(dataset, dataset.labels, cfg.gallery_per_id, extra, source=str(data),
                                     distractor_source=str(distractors))
    check_probe_sizes(cfg.sizes, int(faces.gallery_images.shape[1]))
    digest = _faces_digest(faces) if cache is not None else None
    records: list[dict[str, Any]] = []
    with _progress(len(loaded) * len(cfg.sizes) * len(cfg.facebn_modes), progress) as bar:
        for model in loaded:
            records += _model_cells(model, faces, cfg, dev, bar, cache, cell_key("identification", model, digest, cfg))
    return {
        "records": records, "models": {m.name: _model_info(m) for m in loaded},
        "data": _data_info(faces, data, distractors, cfg), "config": {**asdict(cfg), "device": str(dev)},
        "hardware": hardware_info(dev), "wall_time_s": time.perf_counter() - start,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _faces_digest(faces: IdentificationSet) -> str:
    extra = () if faces.distractor_images is None else (faces.distractor_images,)
    return array_digest(faces.gallery_images, faces.gallery_labels, faces.probe_images, faces.probe_labels, *extra)


def _model_cells(model: EvalModel, faces: IdentificationSet, cfg: IdentificationConfig, device: torch.device,
                 bar: Any, cache: CellCache | None, key: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every (size, mode) cell of one model; the gallery is embedded once, and only if a cell is not cached."""
    gallery: list[np.ndarray] = []
    out = []
    for size in cfg.sizes:
        for mode in cfg.facebn_modes:
            bar.set_postfix_str(f"{model.name} {size}px facebn={mode}", refresh=False)
            fields = {**key, "size": int(size), "facebn": mode} if cache is not None and key else None
            record = cache.get(fields) if fields else None
            if record is None:
                if not gallery:
                    gallery.append(gallery_embeddings(model.fn, faces, model.input_size, cfg.batch_size, device))
                record = identification_cell(model, faces, gallery[0], size, mode, cfg, device)
                if fields:
                    cache.put(fields, record)
            out.append({**record, "model": model.name})
            bar.update(1)
    return out


def identification_cell(model: EvalModel, faces: IdentificationSet, gallery: np.ndarray, size: int, mode: str,
                        cfg: IdentificationConfig, device: torch.device) -> dict[str, Any]:
    """One record: CMC of the probes at ``size`` (through FaceBN ``mode`` unless "off") against ``gallery``."""
    record: dict[str, Any] = {"model": model.name, "size": int(size), "facebn": mode}
    keys = [f"rank_{k}" for k in cfg.ranks]
    if mode != "off" and not model.supports_facebn:
        return {**record, "status": "n/a", "note": model.facebn_reason(), **dict.fromkeys(keys)}
    tic = time.perf_counter()
    fn, low = model.fn, model_probes(faces.probe_images, size, model.input_size)
    if mode != "off":  # the verification path's FaceBN, built afresh for this cell from the probe faces
        bn_cfg = SweepConfig(sizes=(size,), facebn_modes=("off", mode), batch_size=cfg.batch_size,
                             momentum=cfg.momentum, include_bn1d=cfg.include_bn1d)
        fn = facebn_model_fn(model, mode, low, model.input_size, bn_cfg, device)
    result = probe_cmc(fn, faces, gallery, size, model.input_size, cfg.ranks, cfg.batch_size, device, lr_faces=low)
    return {**record, "status": "ok", "note": "", **{f"rank_{k}": v for k, v in result.items()},
            "seconds": time.perf_counter() - tic}


def _data_info(faces: IdentificationSet, data: str | Path, distractors: str | Path | None,
               cfg: IdentificationConfig) -> dict[str, Any]:
    n_extra = 0 if faces.distractor_images is None else len(faces.distractor_images)
    return {"path": str(data), "distractors_path": None if distractors is None else str(distractors),
            "identities": int(np.unique(faces.gallery_labels).size), "gallery": int(len(faces.gallery_labels)),
            "probes": int(len(faces.probe_labels)), "distractors": n_extra, "gallery_per_id": cfg.gallery_per_id,
            "hr_size": list(faces.gallery_images.shape[1:3]), "max_rank": max_rank(faces)}


def max_rank(faces: IdentificationSet) -> int:
    """The worst rank any probe can get: 1 + the gallery entries (distractors included) not of its identity.
    At a rank k >= this every probe is found whatever the model does, so rank-k says nothing."""
    ids, mates = np.unique(faces.gallery_labels, return_counts=True)
    probe_mates = mates[np.isin(ids, faces.probe_labels)]
    total = len(faces.all_gallery_labels)
    return int(total - (probe_mates.min() if probe_mates.size else 0) + 1)


def trivial_rank_note(k: int, info: Mapping[str, Any]) -> str:
    """The note beside a rank-k table whose k cannot fail on this gallery ("" when rank-k means something)."""
    if "max_rank" not in info or k < info["max_rank"]:
        return ""
    return (f"Note: rank-{k} is 100 % by construction here: the gallery holds {info['identities']} identities "
            f"({info['gallery']} faces + {info['distractors']} distractors), so every probe's mate is within "
            f"rank {info['max_rank']}; rank-{k} needs a larger gallery (or --distractors) to measure anything.")


def identification_markdown(results: Mapping[str, Any]) -> str:
    """A table per rank: rows (model, FaceBN mode), columns probe sizes, cells in % ("n/a" where FaceBN
    does not apply)."""
    cfg, info = results["config"], results["data"]
    head = (f"### identification on {Path(info['path']).name}: {info['probes']} LR probes vs {info['gallery']} "
            f"HR gallery faces ({info['identities']} identities, {info['gallery_per_id']} per identity) + "
            f"{info['distractors']} distractors, closed set")
    tables = [head, ""]
    cells = {(r["model"], r["facebn"], r["size"]): r for r in results["records"]}
    for k in cfg["ranks"]:
        note = trivial_rank_note(k, info)
        tables += [f"rank-{k} identification rate (%)", "", *([note, ""] if note else []),
                   "| model | FaceBN | " + " | ".join(f"{s} px" for s in cfg["sizes"]) + " |",
                   "|---|---|" + "---:|" * len(cfg["sizes"])]
        for model in results["models"]:
            for mode in cfg["facebn_modes"]:
                row = [_percent(cells.get((model, mode, s)), f"rank_{k}") for s in cfg["sizes"]]
                tables.append(f"| {model} | {mode} | " + " | ".join(row) + " |")
        tables.append("")
    return "\n".join(tables)


def _percent(record: Mapping[str, Any] | None, key: str) -> str:
    if record is None or record.get(key) is None:
        return "n/a"
    return f"{100 * record[key]:.2f}"


def write_identification_report(results: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """``identification.json`` and ``identification.md`` in ``out_dir``, each written atomically."""
    from ..atomic import atomic_write_bytes

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hw = results["hardware"]
    notes = sorted({f"- {r['model']}: {r['note']}" for r in results["records"] if r["status"] != "ok"})
    md = ["# Low-resolution identification", "", identification_markdown(results),
          *(["Notes:", *notes, ""] if notes else []),
          f"- device: {results['config']['device']} (GPU: {hw['gpu'] or 'none'}); CPU: {hw['cpu']}; "
          f"wall time {results['wall_time_s']:.1f} s; created {results['created']}", ""]
    json_path = atomic_write_bytes(out / "identification.json", json.dumps(results, indent=1, allow_nan=False).encode())
    md_path = atomic_write_bytes(out / "identification.md", "\n".join(md).encode())
    return {"identification.json": json_path, "identification.md": md_path}

