"""An output folder belongs to one run: its effective config, recorded in ``run.json`` and every checkpoint.

A new run in a folder that holds another run is refused (its checkpoints would be rotated away, or
resumed under the wrong config) unless ``--resume`` continues that run or ``--overwrite`` replaces it.
``--resume`` refuses a config that differs in any field that changes training; the fields in
:data:`NON_TRAINING_FIELDS` (where files go, how often to log/validate/save, the device, plugin imports)
may change between the parts of one run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes
from ..errors import ConfigError
from .checkpoint import CheckpointFolder
from .config import TrainConfig
from .distributed import DistContext, barrier

RUN_FILE = "run.json"
# files and folders a run leaves in its output (``--overwrite`` removes them; the teacher cache is kept:
# it is keyed by the teacher and the data, so it is valid for any run)
RUN_OUTPUTS = ("checkpoints", "student.pt", "metrics.jsonl", "training.log", "tensorboard", RUN_FILE)
# fields that do not change what is trained: they may differ between a run and its resumption
NON_TRAINING_FIELDS = frozenset({
    "output", "num_workers", "frequent", "verbose", "device", "resume", "overwrite", "checkpoint_every",
    "val_targets", "val_sizes", "facebn", "plugins", "max_num_classes", "save_all_states",
    "teacher_cache_dir",  # where the shared cache lives, not what it holds (the key is teacher + data + dtype)
})


def plain_config(cfg: TrainConfig) -> dict[str, Any]:
    """The config as JSON-safe plain values (tuples as lists), loadable with ``weights_only=True``."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=list))


def training_fields(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in NON_TRAINING_FIELDS}


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 of the fields that change training (two parts of one run have the same hash)."""
    text = json.dumps(training_fields(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def run_record(cfg: TrainConfig) -> dict[str, Any]:
    """What a checkpoint and ``run.json`` store about the run: ``{"config": {...}, "hash": "..."}``."""
    config = plain_config(cfg)
    return {"config": config, "hash": config_hash(config)}


def changed_fields(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Training fields whose values differ (a field missing from an older record counts as its default)."""
    defaults = plain_config(TrainConfig())
    names = sorted(set(training_fields(recorded)) | set(training_fields(current)))
    return [n for n in names if recorded.get(n, defaults.get(n)) != current.get(n, defaults.get(n))]


def check_resumable(recorded: Mapping[str, Any], cfg: TrainConfig, where: Path) -> None:
    """Refuse to resume the run recorded in ``where`` under a config that trains something else."""
    current = plain_config(cfg)
    changed = changed_fields(recorded.get("config", {}), current)
    if changed:
        was = recorded.get("config", {})
        diffs = ", ".join(f"`{n}` ({was.get(n)!r} -> {current.get(n)!r})" for n in changed)
        raise ConfigError(f"--resume: {where} was trained with another config; changed field(s): {diffs}. "
                          "Resume with the run's own settings, use a new --output, or pass --overwrite")


def holds_a_run(output: Path) -> bool:
    """True when ``output`` has a run record, a checkpoint, a saved student or a metrics log."""
    checkpoints = output / "checkpoints"
    return (any((output / name).exists() for name in (RUN_FILE, "student.pt", "metrics.jsonl"))
            or (checkpoints.is_dir() and any(checkpoints.glob("step*_rank*.pt"))))


def refuse_other_run(output: Path) -> None:
    """A new run (no ``--resume``/``--overwrite``) in a folder that holds a run is a :class:`ConfigError`."""
    if holds_a_run(output):
        raise ConfigError(f"--output {output}: the folder holds another run ({RUN_FILE}/checkpoints/student.pt); "
                          "continue it with --resume, replace it with --overwrite, or choose another --output")


def clear_run(output: Path) -> None:
    """``--overwrite``: remove the previous run's outputs (not the teacher cache)."""
    for name in RUN_OUTPUTS:
        path = output / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def read_run_file(output: Path) -> dict[str, Any] | None:
    path = output / RUN_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable run record ({exc}); pass --overwrite to replace the run") from None
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise ConfigError(f"{path}: expected {{'config': {{...}}, 'hash': ...}}; pass --overwrite to replace it")
    return record


def write_run_file(output: Path, record: Mapping[str, Any]) -> None:
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(output / RUN_FILE, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())


def claim_output(cfg: TrainConfig, output: Path, checkpoints: CheckpointFolder, ctx: DistContext,
                 device: Any) -> dict | None:
    """Make ``output`` this run's before any costly work: refuse a folder holding another run
    (``--overwrite``: clear it); with ``--resume``, the state of the newest checkpoint after checking that it
    was trained with this config (None: start afresh, said on stderr)."""
    state = None
    if cfg.overwrite:
        if ctx.is_main:
            clear_run(output)
    elif cfg.resume:
        state = checkpoints.load_latest(map_location=device)
        recorded = state.get("run") if state is not None else read_run_file(output)
        if recorded is not None:
            check_resumable(recorded, cfg, output)
        if state is None:
            notice(ctx, f"--resume: no checkpoint in {checkpoints.root}; starting from step 0")
    else:
        refuse_other_run(output)
    barrier(ctx)  # every rank has looked at the folder before rank 0 records this run in it
    return state


def notice(ctx: DistContext, message: str) -> None:
    """One line on stderr from rank 0 (``insightface-lr train: ...``)."""
    if ctx.is_main:
        print(f"insightface-lr train: {message}", file=sys.stderr, flush=True)
