"""``student.pt`` records the modules that register its backbone, so that ``eval``/``export``/``load_student``
rebuild a plugin student in a fresh process (``--plugins`` names more modules to import)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers_train import run_cli, tiny_args

from insightface_lr.models.teacher import save_student


@pytest.fixture(scope="module")
def plugin_student(tiny_data, plugin_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plugin_student")
    result = run_cli(tiny_args(tiny_data, out, "--max-steps", "2", "--no-progress"), plugin_dir)
    assert result.returncode == 0, result.stderr
    return out / "student.pt"


def eval_and_export(model: Path, data: Path, plugin_dir: Path, tmp_path: Path, *extra: str) -> None:
    """Both commands in fresh processes (the plugin is importable, as on the user's machine, never imported)."""
    evaluated = run_cli(["eval", "--model", str(model), "--bins", str(data / "test.bin"), "--sizes", "16",
                         "--out", str(tmp_path / "report"), "--no-plots", "--quiet", "--device", "cpu", *extra],
                        plugin_dir)
    assert evaluated.returncode == 0, evaluated.stderr
    assert (tmp_path / "report" / "results.json").is_file()
    onnx = tmp_path / "student.onnx"
    exported = run_cli(["export", "--model", str(model), "--out", str(onnx), *extra], plugin_dir)
    assert exported.returncode == 0, exported.stderr
    assert onnx.stat().st_size > 0


def test_student_records_its_plugins(plugin_student) -> None:
    assert torch.load(plugin_student, weights_only=True)["plugins"] == ["tiny_plugin_backbone"]


def test_plugin_student_is_evaluated_and_exported_from_a_fresh_process(plugin_student, tiny_data, plugin_dir,
                                                                       tmp_path) -> None:
    eval_and_export(plugin_student, tiny_data, plugin_dir, tmp_path)


def test_plugins_flag_imports_modules_a_file_does_not_record(plugin_student, tiny_data, plugin_dir,
                                                             tmp_path) -> None:
    payload = torch.load(plugin_student, weights_only=True)
    payload.pop("plugins")  # as written before students recorded their plugins
    bare = tmp_path / "bare.pt"
    torch.save(payload, bare)
    failed = run_cli(["export", "--model", str(bare), "--out", str(tmp_path / "x.onnx")], plugin_dir)
    assert failed.returncode == 2 and "tiny_mlp_test" in failed.stderr
    eval_and_export(bare, tiny_data, plugin_dir, tmp_path, "--plugins", "tiny_plugin_backbone")


def test_demo_teacher_net_is_evaluated_and_exported_from_a_fresh_process(tiny_data, plugin_dir, tmp_path) -> None:
    from insightface_lr.demo import nets  # registers demo_hr_net (not a built-in backbone)

    model = nets.demo_hr_net(embedding_size=16, input_size=112).eval()
    path = save_student(tmp_path / "demo_teacher.pt", model, network="demo_hr_net")
    assert torch.load(path, weights_only=True)["plugins"] == ["insightface_lr.demo.nets"]
    eval_and_export(path, tiny_data, plugin_dir, tmp_path)
