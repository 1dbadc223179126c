"""A demo student's identity: method, LR size, seed, regime and, for extra runs, budget or tuning candidate.

Its :attr:`StudentCell.name` names the student's folder and eval file (``aird_16px_s1``, ``kd_16px_s100_w4``,
``aird_16px_s100_c2``, ``none_16px_s0_subset_e20``); :func:`parse_cell` reads it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StudentCell:
    """One student: method, native LR size, seed, regime; ``epochs`` (budget curves), ``weight`` (a tuning
    candidate of a weight grid) and ``candidate`` (the index of a named grid's candidate) are set only for the
    extra runs, whose names carry them."""

    method: str
    lr_size: int
    seed: int
    regime: str = "same"
    epochs: int = 0  # 0: the settings' student budget
    weight: float | None = None  # a weight-grid tuning candidate's term weight; None: the chosen one
    candidate: int | None = None  # a named grid's candidate (demo/grids.py)

    @property
    def name(self) -> str:
        parts = [self.method, f"{self.lr_size}px", f"s{self.seed}"]
        parts += [self.regime] if self.regime != "same" else []
        parts += [f"e{self.epochs}"] if self.epochs else []
        parts += [f"w{self.weight:g}"] if self.weight is not None else []
        parts += [f"c{self.candidate}"] if self.candidate is not None else []
        return "_".join(parts)

    @property
    def is_tuning(self) -> bool:
        return self.weight is not None or self.candidate is not None

    @property
    def is_extra(self) -> bool:
        """A tuning or budget run: evaluated at the headline size only, not in the report's tables."""
        return bool(self.epochs) or self.is_tuning


def parse_cell(name: str) -> StudentCell:
    """The inverse of :attr:`StudentCell.name` (``aird_16px_s1_subset_e5`` -> its fields)."""
    method, size, seed, *rest = name.split("_")
    fields: dict[str, Any] = {}
    for token in rest:
        if token in ("same", "subset"):
            fields["regime"] = token
        elif token[:1] == "e" and token[1:].isdigit():
            fields["epochs"] = int(token[1:])
        elif token[:1] == "c" and token[1:].isdigit():
            fields["candidate"] = int(token[1:])
        elif token[:1] == "w":
            fields["weight"] = float(token[1:])
        else:
            raise ValueError(f"not a demo student name: {name!r}")
    return StudentCell(method, int(size.removesuffix("px")), int(seed.removeprefix("s")), **fields)
