"""``demo --faces``: the same pipeline on a user's image folder and .bin (tiny synthetic faces stand in for
real ones): identity splits, tuning on val.bin, budgets, both regimes, report, resume."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from insightface_lr.data.image_codec import encode_jpeg
from insightface_lr.data.synthetic import SyntheticFaceConfig, generate_faces, write_synthetic_dataset
from insightface_lr.demo.pipeline import DemoPipeline
from insightface_lr.demo.settings import make_settings
from insightface_lr.errors import ConfigError


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    faces = root / "faces"
    images, labels = generate_faces(SyntheticFaceConfig(num_identities=10, images_per_identity=4, seed=3))
    for k, (image, label) in enumerate(zip(images, labels.tolist(), strict=True)):
        folder = faces / f"person_{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{k:03d}.jpg").write_bytes(encode_jpeg(image))
    test_bin = write_synthetic_dataset(root / "bins", train_ids=2, test_ids=4, images_per_identity=3, pairs=20,
                                       seed=5).test_bin
    settings = make_settings("tiny", faces=str(faces), test_bins=(str(test_bin),), val_fraction=0.3,
                             val_pairs_per_fold=2, tune_weights=(1.0, 4.0), budget_epochs=(1,), student_epochs=2,
                             methods=("none", "aird"), lr_sizes=(16,), facebn_extra=("prior:16", "calibrate"))
    out = root / "out"
    summary = DemoPipeline(out, settings, device="cpu", progress=False).run()
    return out, settings, summary


def test_real_mode_splits_identities_tunes_on_val_and_reports_both_regimes(real_run):
    out, settings, summary = real_run
    data = json.loads((out / "data" / "complete.json").read_text())
    assert data["identities"] == 10 and data["val_identities"] == 3 and data["train_identities"] == 7
    assert data["subset_identities"] == 4  # round(0.5 * 7)
    results = json.loads((out / "results.json").read_text())
    # tuning: every distilling method, every weight, on val only; the choice is the best val accuracy
    choice = results["tuning"]["aird"]
    assert set(choice["candidates"]) == {"w1", "w4"}
    assert choice["val_accuracy"] == max(choice["candidates"].values())
    assert "none" not in results["tuning"]
    tuned = [r for r in results["records"] if r["weight"] is not None]
    assert tuned and {r["bin"] for r in tuned} == {"val"} and {r["regime"] for r in tuned} == {"subset"}
    # the final students were trained with the chosen weight
    bins = {r["bin"] for r in results["records"] if r["weight"] is None}
    assert bins == {"test", "val"}  # the user's test set by its own name, and the validation split
    regimes = {(r["method"], r["regime"]) for r in results["records"] if r["weight"] is None and not r["epochs"]}
    assert {("aird", "same"), ("aird", "subset"), ("none", "same"), ("none", "subset")} <= regimes
    assert {r["facebn"] for r in results["records"] if r["weight"] is None} == {"off", "calibrate@0.25",
                                                                                 "prior:16", "calibrate"}
    budgets = {(r["method"], r["regime"], r["epochs"]) for r in results["records"] if r["epochs"]}
    assert budgets == {(m, g, 1) for m in ("none", "aird") for g in ("same", "subset")}
    report = (out / "report.md").read_text()
    for heading in ("## Tuning", "## Budgets", "## FaceBN modes: test, regime subset", "regime subset"):
        assert heading in report
    assert "Real faces:" in report and "val.bin" in report


def test_real_mode_resumes_without_redoing_anything(real_run):
    out, settings, summary = real_run
    again = DemoPipeline(out, settings, device="cpu", progress=False)
    result = again.run()
    assert again.ran == []
    key = lambda rs: sorted(json.dumps(r["accuracy_mean"]) + r["bin"] + str(r["weight"]) for r in rs)  # noqa: E731
    assert key(result["records"]) == key(summary["records"])


def test_real_mode_settings_errors(tmp_path):
    with pytest.raises(ConfigError, match="--test-bin"):
        make_settings("real", faces=str(tmp_path))
    with pytest.raises(ConfigError, match="validation split"):
        make_settings("tiny", tune_weights=(1.0,))
    with pytest.raises(ConfigError, match="student-fraction"):
        make_settings("tiny", student_fraction=1.0)


def test_cli_demo_flags_need_faces(tmp_path, capsys):
    from insightface_lr.cli import main

    assert main(["demo", "--test-bin", "x.bin", "--out", str(tmp_path / "o")]) == 2
    assert "--faces" in capsys.readouterr().err


def test_extend_adds_seeds_and_budget_runs_without_redoing_finished_cells(real_run, tmp_path):
    import shutil
    from dataclasses import replace

    out, settings, summary = real_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, symlinks=True)
    more = replace(settings, seeds=(0, 1), budget_seeds=(0, 1))
    with pytest.raises(ConfigError, match="other settings.*--extend"):
        DemoPipeline(copy, more, device="cpu", progress=False).run()
    pipeline = DemoPipeline(copy, more, device="cpu", progress=False, extend=True)
    result = pipeline.run()
    # only seed 1's students (both regimes) and budget runs were made; nothing of seed 0 again
    assert pipeline.ran and all(stage.split()[-1].split("_")[2] == "s1" for stage in pipeline.ran)
    budgets = {(r["method"], r["regime"], r["seed"]) for r in result["records"] if r["epochs"]}
    assert budgets == {(m, g, s) for m in ("none", "aird") for g in ("same", "subset") for s in (0, 1)}
    old = {json.dumps([r["model"], r["bin"], r["size"], r["facebn"], r["accuracy_mean"]]) for r in summary["records"]}
    assert old <= {json.dumps([r["model"], r["bin"], r["size"], r["facebn"], r["accuracy_mean"]])
                   for r in result["records"]}
    assert json.loads((copy / "settings.json").read_text())["budget_seeds"] == [0, 1]
    report = (copy / "report.md").read_text()
    assert "## Budgets (seeds 0, 1; FaceBN off)" in report and "| subset | aird - none | test |" in report
    # extended again with the same settings: nothing to do
    again = DemoPipeline(copy, more, device="cpu", progress=False, extend=True)
    again.run()
    assert again.ran == []


@pytest.mark.parametrize("change, message", [
    ({"seeds": (1,)}, "seeds \\[0\\] -> \\[1\\]: only additions"),
    ({"student_epochs": 3}, "student_epochs \\(2 -> 3\\) cannot change"),
    ({"regimes": ("same",)}, "regimes .*only additions"),
])
def test_extend_refuses_anything_but_additions(real_run, change, message):
    from dataclasses import replace

    from insightface_lr.demo.settings import extended

    _, settings, _ = real_run
    with pytest.raises(ConfigError, match=message):
        extended(settings, replace(settings, **change))


def test_extend_tuning_regime_must_stay():
    from dataclasses import replace

    from insightface_lr.demo.settings import extended

    recorded = make_settings("tiny", regimes=("same",))
    with pytest.raises(ConfigError, match="weight tuning from regime 'same' to 'subset'"):
        extended(recorded, replace(recorded, regimes=("same", "subset")))
    assert extended(recorded, replace(recorded, seeds=(0, 4))).seeds == (0, 4)


def test_settings_of_an_older_folder_read_with_defaults_and_unknown_fields_refused():
    from insightface_lr.demo.settings import DemoSettings

    fields = make_settings("tiny").to_dict()
    del fields["budget_seeds"]  # a folder written before the field existed
    assert DemoSettings.from_dict(json.loads(json.dumps(fields))) == make_settings("tiny")
    with pytest.raises(ConfigError, match="settings.json: unknown demo setting.*'colour'"):
        DemoSettings.from_dict({**fields, "colour": 1}, source="settings.json")


def test_cli_extend_needs_a_recorded_demo(tmp_path, capsys):
    from insightface_lr.cli import main

    assert main(["demo", "--extend", "--seeds", "0,1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "demo --extend" in err and "settings.json not found" in err


def test_cli_methods_flag_chooses_and_extends_methods(tmp_path):
    """``demo --methods`` picks the compared methods; with --extend it may only add methods after the recorded."""
    import argparse

    from insightface_lr.commands import demo as demo_command
    from insightface_lr.demo.settings import extended

    parser = argparse.ArgumentParser()
    demo_command.add_arguments(parser)
    args = parser.parse_args(["--quick", "--methods", "none,aird", "--out", str(tmp_path / "o")])
    settings = make_settings(demo_command._preset(args), **demo_command._real_fields(args))
    assert settings.methods == ("none", "aird")
    assert (settings.facebn_extra, settings.facebn_sizes) == ((), (16,))  # the main job: what its tables show
    full = parser.parse_args(["--quick", "--full-sweep"])
    full_settings = make_settings(demo_command._preset(full), **demo_command._real_fields(full))
    assert (full_settings.facebn_extra, full_settings.facebn_sizes) == (("batch",), ())
    recorded = make_settings("tiny", methods=("none", "aird"))
    assert extended(recorded, replace(recorded, methods=("none", "aird", "kd"))).methods == ("none", "aird", "kd")
    with pytest.raises(ConfigError, match="methods .*only additions"):
        extended(recorded, replace(recorded, methods=("aird", "none")))
