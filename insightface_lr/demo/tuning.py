"""The same small search for every distilling method, chosen on the validation split.

Each method other than ``none`` trains one student per candidate (seed :data:`TUNE_SEED`, the tuning regime's
data, the headline LR size, ``settings.tune_epochs`` or the full student budget) and keeps the candidate whose
student verifies best on ``val.bin`` (identities carved from the training faces; FaceBN off). Ties go to the
first candidate (the smaller weight). The test sets are never looked at. ``none`` has no term: nothing to tune,
so it is never disadvantaged by a search the others get. The candidates are either the term's weights
``settings.tune_weights`` (cells named ``..._w<weight>``) or a named grid of :mod:`.grids` (the weight and the
term's own fields; cells named ``..._c<index>``). Choices and every candidate's accuracy go to
``tune/choices.json`` and from there into ``results.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes
from .cells import StudentCell, parse_cell
from .grids import GRIDS, Candidate, candidate_label
from .settings import DemoSettings

TUNE_SEED = 100  # not one of the reported seeds: a choice made on seed 0 would favour seed 0's numbers


def candidates(settings: DemoSettings, method: str) -> tuple[Candidate, ...]:
    """The candidates ``method`` is tuned over (empty for ``none``)."""
    if method == "none":
        return ()
    if settings.tune_grid:
        return GRIDS[settings.tune_grid][method]
    return tuple({"weight": float(w)} for w in settings.tune_weights)


def candidate_of(settings: DemoSettings, cell: StudentCell) -> Candidate | None:
    """The candidate a tuning cell trains (None for a reported student)."""
    if cell.candidate is not None:
        return candidates(settings, cell.method)[cell.candidate]
    return None if cell.weight is None else {"weight": cell.weight}


def tuning_cells(settings: DemoSettings) -> list[StudentCell]:
    """One student per (distilling method, candidate)."""
    cells = []
    for m in settings.methods:
        for index, candidate in enumerate(candidates(settings, m)):
            named = {"candidate": index} if settings.tune_grid else {"weight": candidate["weight"]}
            cells.append(StudentCell(m, settings.headline_size, TUNE_SEED, settings.tune_regime, **named))
    return cells


def choose_weights(settings: DemoSettings, out: Path, names: list[str]) -> dict[str, Any]:
    """Read every candidate's val accuracy, write and return ``{method: {"weight", "fields", "label",
    "val_accuracy", "candidates": {label: accuracy}}}`` (empty when the settings have no tuning grid)."""
    found: dict[str, list[tuple[Candidate, float]]] = {}
    for name in names:
        cell = parse_cell(name)
        records = json.loads((out / "eval" / f"{name}.json").read_text(encoding="utf-8"))["records"]
        (record,) = [r for r in records if r["bin"] == "val" and r["facebn"] == "off" and r["status"] == "ok"]
        found.setdefault(cell.method, []).append((candidate_of(settings, cell), 100.0 * record["accuracy_mean"]))
    choices = {}
    for method, tried in found.items():
        order = {candidate_label(c): i for i, c in enumerate(candidates(settings, method))}
        tried.sort(key=lambda ca: order.get(candidate_label(ca[0]), len(order)))
        best, accuracy = max(tried, key=lambda ca: ca[1])  # max keeps the first on ties
        choices[method] = {"weight": best["weight"], "fields": {k: v for k, v in best.items() if k != "weight"},
                           "label": candidate_label(best), "val_accuracy": accuracy,
                           "candidates": {candidate_label(c): a for c, a in tried}}
    if names:
        atomic_write_bytes(out / "tune" / "choices.json", (json.dumps(choices, indent=1) + "\n").encode())
    return choices


def chosen(out: Path, method: str) -> Candidate | None:
    """The candidate chosen for ``method`` (None: no tuning was run, the recipe's values stay)."""
    path = out / "tune" / "choices.json"
    if not path.is_file():
        return None
    choice = json.loads(path.read_text(encoding="utf-8")).get(method)
    return None if choice is None else {"weight": float(choice["weight"]), **choice.get("fields", {})}
