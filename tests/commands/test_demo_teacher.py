"""``demo --faces --teacher``: the teacher is checked before any work, by the one model-path rule; an ONNX teacher
the students would start from is refused in one line (it cannot be fine-tuned)."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from insightface_lr import cli


def _onnx_teacher(folder: Path) -> Path:
    from insightface_lr.models.export import export_onnx

    path = folder / "teacher.onnx"
    export_onnx(nn.Sequential(nn.Flatten(), nn.Linear(3 * 112 * 112, 8)).eval(), path, input_size=112)
    return path


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*")}


@pytest.fixture
def no_pipeline(monkeypatch):
    """Any demo work (settings, pipeline) fails the test: the refusal must come first."""
    import insightface_lr.demo.pipeline as pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("the demo pipeline was started")

    monkeypatch.setattr(pipeline.DemoPipeline, "__init__", refuse)


def test_an_onnx_teacher_to_fine_tune_is_refused_before_any_work(tmp_path, capsys, no_pipeline) -> None:
    teacher = _onnx_teacher(tmp_path)
    (tmp_path / "faces").mkdir()
    before = _snapshot(tmp_path)
    code = cli.main(["demo", "--faces", str(tmp_path / "faces"), "--teacher", str(teacher), "--test-bin",
                     str(tmp_path / "t.bin"), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"--teacher {teacher}: an ONNX graph" in err and "--student-init scratch" in err
    assert _snapshot(tmp_path) == before and not (tmp_path / "out").exists()


def test_a_missing_teacher_names_what_is_accepted(tmp_path, capsys, no_pipeline) -> None:
    (tmp_path / "faces").mkdir()
    code = cli.main(["demo", "--faces", str(tmp_path / "faces"), "--teacher", str(tmp_path / "nope"),
                     "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "nope does not exist (expected a backbone.pth" in err and "MXNet checkpoint (its prefix" in err


def test_an_onnx_teacher_is_accepted_for_students_from_scratch(tmp_path, no_pipeline) -> None:
    # the refusal is about fine-tuning only: with --student-init scratch the ONNX teacher only teaches
    teacher = _onnx_teacher(tmp_path)
    (tmp_path / "faces").mkdir()
    with pytest.raises(AssertionError, match="pipeline was started"):
        cli.main(["demo", "--faces", str(tmp_path / "faces"), "--teacher", str(teacher), "--student-init",
                  "scratch", "--test-bin", str(tmp_path / "t.bin"), "--out", str(tmp_path / "out")])


def test_an_mxnet_prefix_is_a_teacher(tmp_path, no_pipeline) -> None:
    (tmp_path / "faces").mkdir()
    (tmp_path / "model-symbol.json").write_text("{}")  # the path rule only: loading is the pipeline's
    with pytest.raises(AssertionError, match="pipeline was started"):
        cli.main(["demo", "--faces", str(tmp_path / "faces"), "--teacher", str(tmp_path / "model"),
                  "--test-bin", str(tmp_path / "t.bin"), "--out", str(tmp_path / "out")])
