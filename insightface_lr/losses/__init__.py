"""Margin heads, PartialFC and distillation terms; importing this package registers them all."""

from __future__ import annotations

from . import aird, bank, baselines, bridge, ccface, distiller, margin, partial_fc  # noqa: F401  (registration)
from .distiller import DistillDims, Distiller, DistillInputs, build_distiller

__all__ = ["DistillDims", "DistillInputs", "Distiller", "build_distiller"]
