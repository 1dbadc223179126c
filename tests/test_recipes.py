"""Every shipped recipe loads through the arcface_torch config adapter and names registered parts."""

from __future__ import annotations

from pathlib import Path

import pytest

from insightface_lr.demo.pipeline import RECIPES as DEMO_RECIPES
from insightface_lr.losses.distiller import parse_spec
from insightface_lr.registry import BACKBONES, LOSSES, import_plugins
from insightface_lr.train.config import load_config

# the examples to copy (recipes/) and the demo's own, shipped inside the package
RECIPES = sorted(p for p in (Path(__file__).parents[1] / "recipes").rglob("*.py") if p.name != "base.py") + sorted(
    DEMO_RECIPES.glob("demo_*.py"))


def test_there_are_recipes_for_every_method() -> None:
    names = {p.stem for p in RECIPES}
    assert {"none", "kd", "feat", "rkd", "aird", "ccface", "bridge_step1", "bridge_step2", "teacher_r50"} <= names
    assert {"demo_teacher", "demo_bridge_step1", "demo_student"} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_loads_and_names_registered_parts(recipe: Path) -> None:
    cfg = load_config(recipe)
    import_plugins(cfg.plugins)
    assert cfg.network in BACKBONES.names()
    for term in parse_spec(cfg.distill):
        assert term in LOSSES.names()
    if recipe.stem.startswith("demo_"):
        return  # `insightface-lr demo` fills in its own data, teacher and method
    # a recipe for a named dataset states its classes; one for the user's own faces (0) reads them from the data
    assert cfg.rec and (cfg.num_classes > 0 or recipe.parent.name == "pretrained")
    if cfg.distill != "none":
        assert cfg.teacher


DATASET_FOLDERS = ("ms1mv3", "casia_webface")


def test_no_two_recipes_share_an_output_folder() -> None:
    outputs = {p: load_config(p).output for p in RECIPES if not p.stem.startswith("demo_")}
    assert len(set(outputs.values())) == len(outputs), outputs
    for path, output in outputs.items():
        assert output == f"work_dirs/{path.parent.name}/{path.stem}", (path, output)


@pytest.mark.parametrize("folder", DATASET_FOLDERS)
def test_recipes_chain_as_written(folder: str) -> None:
    """Every student reads exactly what the recipe it depends on writes (``<output>/student.pt``)."""
    root = Path(__file__).parents[1] / "recipes" / folder
    teacher_out = load_config(root / "teacher_r50.py").output
    for recipe in sorted(root.glob("*.py")):
        cfg = load_config(recipe)
        if recipe.stem in ("base", "teacher_r50") or cfg.distill == "none":
            continue
        upstream = "bridge_step1" if recipe.stem == "bridge_step2" else "teacher_r50"
        expected = load_config(root / f"{upstream}.py").output if upstream != "teacher_r50" else teacher_out
        assert cfg.teacher == f"{expected}/student.pt", (recipe.name, cfg.teacher)


def _tiny_flags(data: Path) -> list[str]:
    # what a test may change: the data, the scale (network width/size) and the number of steps
    return ["--rec", str(data), "--max-steps", "1", "--batch-size", "8", "--set", "num_classes=0",
            "--set", "num_image=0", "--set", "num_workers=0", "--set", "embedding_size=32", "--no-progress"]


def _run_chain(folder: str, tmp_path: Path, monkeypatch, teacher_net: list[str], student_net: list[str]) -> None:
    from insightface_lr.cli import main
    from insightface_lr.data.synthetic import write_synthetic_dataset

    root = Path(__file__).parents[1] / "recipes" / folder
    data = tmp_path / "data"
    write_synthetic_dataset(data, train_ids=6, test_ids=4, images_per_identity=6, pairs=20, seed=1)
    monkeypatch.chdir(tmp_path)  # the recipes' relative work_dirs land here
    # before the teacher exists the student refuses, naming the path it reads: the chain is real
    assert main(["train", str(root / "aird.py"), *_tiny_flags(data), *student_net]) == 2
    assert main(["train", str(root / "teacher_r50.py"), *_tiny_flags(data), *teacher_net]) == 0
    assert (tmp_path / "work_dirs" / folder / "teacher_r50" / "student.pt").is_file()
    assert main(["train", str(root / "aird.py"), *_tiny_flags(data), *student_net]) == 0  # no --teacher given
    student = tmp_path / "work_dirs" / folder / "aird" / "student.pt"
    assert main(["eval", "--model", str(student), "--bins", str(data / "test.bin"), "--sizes", "16,8", "--out",
                 str(tmp_path / "eval"), "--quiet", "--no-plots", "--device", "cpu"]) == 0
    assert (tmp_path / "eval" / "results.json").is_file()
    assert main(["export", "--model", str(student), "--out", str(tmp_path / "aird16.onnx")]) == 0
    assert (tmp_path / "aird16.onnx").stat().st_size > 0


def test_ms1mv3_recipes_chain_teacher_student_eval_export(tmp_path, monkeypatch, capsys) -> None:
    tiny = ["--network", "bridge_student"]
    _run_chain("ms1mv3", tmp_path, monkeypatch, tiny, [*tiny, "--student-input-size", "16"])
    err = capsys.readouterr().err
    assert "field `teacher`: work_dirs/ms1mv3/teacher_r50/student.pt does not exist" in err


@pytest.mark.slow
@pytest.mark.parametrize("folder", DATASET_FOLDERS)
def test_recipes_chain_with_their_own_networks(folder: str, tmp_path, monkeypatch) -> None:
    """The same chain with the recipes' networks as written (r50 teacher, mbf student): minutes on a CPU."""
    _run_chain(folder, tmp_path, monkeypatch, [], [])


def test_pretrained_bridge_step2_reads_what_finetune_lr_writes() -> None:
    """The pretrained pair: step 2's teacher is step 1's student (the LR fine-tune), seen at the LR view."""
    root = Path(__file__).parents[1] / "recipes" / "pretrained"
    step1, step2 = load_config(root / "finetune_lr.py"), load_config(root / "bridge_step2.py")
    assert step2.teacher == f"{step1.output}/student.pt" and step2.rec == step1.rec
    assert step2.teacher_view == "lr" and step2.lr_sizes == (step2.student_input_size,)
