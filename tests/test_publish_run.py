"""scripts/publish_run.py: a finished demo folder's summary (no per-cell records), report and plots into docs/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def script(load_script):
    return load_script("publish_run")


def test_publish_drops_the_records_and_copies_report_and_plots(script, tmp_path) -> None:
    run, dest = tmp_path / "run", tmp_path / "docs" / "x"
    run.mkdir()
    results = {"settings": {"preset": "tiny"}, "aggregate": [{"mean": 80.0}], "claims": [], "records": [{"a": 1}]}
    (run / "results.json").write_text(json.dumps(results))
    (run / "report.md").write_text("# report\n")
    (run / "accuracy_vs_resolution.png").write_bytes(b"\x89PNG")
    written = script.publish(run, dest)
    assert sorted(p.name for p in written) == ["accuracy_vs_resolution.png", "report.md", "summary.json"]
    summary = json.loads((dest / "summary.json").read_text())
    assert summary == {k: v for k, v in results.items() if k != "records"}
    assert (dest / "report.md").read_text() == "# report\n"


def test_an_unfinished_run_is_refused_in_one_line(script, tmp_path) -> None:
    with pytest.raises(SystemExit, match="results.json not found"):
        script.publish(tmp_path, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_machine_paths_become_file_names(script, tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    settings = {"faces": "/work/pre/faces", "teacher_model": "/x/y/model", "test_bins": ["/a/dev.bin", "/b/lfw.bin"]}
    (run / "results.json").write_text(json.dumps({"settings": settings, "data": {"faces": "/work/pre/faces"}}))
    script.publish(run, tmp_path / "dest")
    summary = json.loads((tmp_path / "dest" / "summary.json").read_text())
    assert summary["settings"] == {"faces": "faces", "teacher_model": "model", "test_bins": ["dev.bin", "lfw.bin"]}
    assert summary["data"] == {"faces": "faces"}


def test_machine_paths_are_cut_from_the_published_report(script, tmp_path) -> None:
    run, dest = tmp_path / "run", tmp_path / "docs" / "x"
    run.mkdir()
    results = {"settings": {"faces": "/work/data/real", "test_bins": ["/home/me/sets/dev.bin"],
                            "url": "https://example.org/a/b"}}
    (run / "results.json").write_text(json.dumps(results))
    (run / "report.md").write_text("Real faces: /work/data/real (137 identities); 16 faces/s\n")
    script.publish(run, dest)
    assert json.loads((dest / "summary.json").read_text())["settings"] == {
        "faces": "real", "test_bins": ["dev.bin"], "url": "https://example.org/a/b"}  # known fields: file names
    assert (dest / "report.md").read_text() == "Real faces: …/data/real (137 identities); 16 faces/s\n"


def test_committed_reports_carry_no_machine_paths(script) -> None:
    reports = [*ROOT.glob("docs/**/summary.json"), *ROOT.glob("docs/**/report.md")]
    assert reports
    found = [f"{p.relative_to(ROOT)}: {m}" for p in reports for m in script.MACHINE_PATH.findall(p.read_text("utf-8"))]
    assert found == []
