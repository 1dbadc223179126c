"""Every shipped recipe loads through the arcface_torch config adapter and names registered parts."""

from __future__ import annotations

from pathlib import Path

import pytest

from insightface_lr.losses.distiller import parse_spec
from insightface_lr.registry import BACKBONES, LOSSES, import_plugins
from insightface_lr.train.config import load_config

RECIPES = sorted(p for p in (Path(__file__).parents[1] / "recipes").rglob("*.py") if p.name != "base.py")


def test_there_are_recipes_for_every_method() -> None:
    names = {p.stem for p in RECIPES}
    assert {"none", "kd", "feat", "rkd", "aird", "ccface", "bridge_step1", "bridge_step2", "teacher_r50"} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_loads_and_names_registered_parts(recipe: Path) -> None:
    cfg = load_config(recipe)
    import_plugins(cfg.plugins)
    assert cfg.network in BACKBONES.names()
    for term in parse_spec(cfg.distill):
        assert term in LOSSES.names()
    if recipe.stem.startswith("demo_"):
        return  # `insightface-lr demo` fills in its own data, teacher and method
    assert cfg.num_classes > 0 and cfg.rec
    if cfg.distill != "none":
        assert cfg.teacher
