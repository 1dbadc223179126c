"""The same small search for every distilling method: its term's weight, chosen on the validation split.

Each method other than ``none`` trains one student per weight of ``settings.tune_weights`` (seed
:data:`TUNE_SEED`, the tuning regime's data, the headline LR size, the full student budget) and keeps the
weight whose student verifies best on ``val.bin`` (identities carved from the training faces; FaceBN off).
Ties go to the smaller weight. The test sets are never looked at. ``none`` has no term: nothing to tune, so
it is never disadvantaged by a search the others get. Choices and every candidate's accuracy go to
``tune/choices.json`` and from there into ``results.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes
from .settings import DemoSettings

TUNE_SEED = 100  # not one of the reported seeds: a choice made on seed 0 would favour seed 0's numbers


def tuning_cells(settings: DemoSettings) -> list:
    """One student per (distilling method, candidate weight)."""
    from .pipeline import StudentCell

    return [StudentCell(m, settings.headline_size, TUNE_SEED, settings.tune_regime, weight=w)
            for m in settings.methods if m != "none" for w in settings.tune_weights]


def choose_weights(settings: DemoSettings, out: Path, names: list[str]) -> dict[str, Any]:
    """Read every candidate's val accuracy, write and return ``{method: {"weight", "val_accuracy",
    "candidates": {weight: accuracy}}}`` (empty when the settings have no tuning grid)."""
    from .pipeline import parse_cell

    found: dict[str, dict[float, float]] = {}
    for name in names:
        cell = parse_cell(name)
        records = json.loads((out / "eval" / f"{name}.json").read_text(encoding="utf-8"))["records"]
        (record,) = [r for r in records if r["bin"] == "val" and r["facebn"] == "off" and r["status"] == "ok"]
        found.setdefault(cell.method, {})[cell.weight] = 100.0 * record["accuracy_mean"]
    choices = {}
    for method, candidates in found.items():
        best = max(sorted(candidates), key=lambda w: candidates[w])  # max keeps the first (smallest) on ties
        choices[method] = {"weight": best, "val_accuracy": candidates[best],
                           "candidates": {f"{w:g}": a for w, a in sorted(candidates.items())}}
    if names:
        atomic_write_bytes(out / "tune" / "choices.json", (json.dumps(choices, indent=1) + "\n").encode())
    return choices


def chosen_weight(out: Path, method: str) -> float | None:
    """The weight chosen for ``method`` (None: no tuning was run, the recipe's weight stays)."""
    path = out / "tune" / "choices.json"
    if not path.is_file():
        return None
    choice = json.loads(path.read_text(encoding="utf-8")).get(method)
    return None if choice is None else float(choice["weight"])
