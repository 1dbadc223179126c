"""``demo --faces --teacher PRETRAINED``: every method but bridge fine-tunes a copy of the teacher (tiny faces and
a tiny BatchNorm network stand in for real ones); the teacher is swept with every FaceBN mode, the students with
the headline mode; the aird claim uses the pretrained margin."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from insightface_lr.data.image_codec import encode_jpeg
from insightface_lr.data.synthetic import SyntheticFaceConfig, generate_faces, write_synthetic_dataset
from insightface_lr.demo.grids import GRIDS
from insightface_lr.demo.pipeline import DemoPipeline
from insightface_lr.demo.settings import make_settings
from insightface_lr.errors import ConfigError
from insightface_lr.models.student_file import load_student, save_student


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory):
    from insightface_lr.demo.nets import DemoHRNet

    root = tmp_path_factory.mktemp("pretrained")
    faces = root / "faces"
    images, labels = generate_faces(SyntheticFaceConfig(num_identities=8, images_per_identity=4, seed=3))
    for k, (image, label) in enumerate(zip(images, labels.tolist(), strict=True)):
        folder = faces / f"person_{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{k:03d}.jpg").write_bytes(encode_jpeg(image))
    test_bin = write_synthetic_dataset(root / "bins", train_ids=2, test_ids=4, images_per_identity=3, pairs=20,
                                       seed=5).test_bin
    torch.manual_seed(0)
    teacher = save_student(root / "pretrained.pt", DemoHRNet(embedding_size=128).eval(), network="demo_hr_net",
                           plugins=["insightface_lr.demo.nets"])
    settings = make_settings("pretrained", faces=str(faces), test_bins=(str(test_bin),), teacher_model=str(teacher),
                             val_fraction=0.3, val_pairs_per_fold=2, tune_weights=(0.3, 1.0), student_epochs=1,
                             methods=("none", "aird", "bridge"), seeds=(0,), batch_size=8, eval_batch_size=8,
                             bridge_epochs=1, finetune_lr_sizes=(12, 16), eval_sizes=(112, 16),
                             facebn_extra=("batch",), tune_grid="", tune_epochs=0, student_facebn_methods=None,
                             student_eval_sizes=(16,))
    out = root / "out"
    summary = DemoPipeline(out, settings, device="cpu", progress=False).run()
    return out, settings, summary, teacher


def test_students_fine_tune_the_teacher_and_bridge_stays_tiny(pretrained_run) -> None:
    out, _settings, _summary, teacher = pretrained_run
    start, _ = load_student(teacher)
    for method in ("none", "aird"):
        student, meta = load_student(out / "students" / f"{method}_16px_s0" / "student.pt")
        assert type(student).__name__ == "DemoHRNet" and student.input_size == 112 and student.embedding_size == 128
        assert meta["started_from"]["student_init"] == "teacher" and meta["started_from"]["source"] == str(teacher)
        assert any(not torch.equal(v, start.state_dict()[k]) for k, v in student.state_dict().items())
    bridge, meta = load_student(out / "students" / "bridge_16px_s0" / "student.pt")
    assert type(bridge).__name__ == "BridgeStudent" and bridge.input_size == 16 and meta["started_from"] is None
    tuned = json.loads((out / "tune" / "choices.json").read_text())
    assert set(tuned) == {"aird", "bridge"} and set(tuned["aird"]["candidates"]) == {"w0.3", "w1"}


def test_teacher_gets_every_facebn_mode_students_the_headline_one(pretrained_run) -> None:
    out, settings, summary, _ = pretrained_run
    modes = lambda m: {r["facebn"] for r in summary["records"] if r["method"] == m and r["weight"] is None}  # noqa: E731
    assert modes("teacher") == {"off", settings.facebn_mode, "batch"}
    assert modes("none") == modes("aird") == {"off", settings.facebn_mode}
    cells = lambda m: {(r["bin"], r["size"]) for r in summary["records"] if r["method"] == m and r["weight"] is None}  # noqa: E731
    assert cells("teacher") == {(b, z) for b in ("test", "val") for z in (112, 16)}
    assert cells("aird") == {("test", 16)}  # students: the headline size, the test sets (val is for tuning)
    claims = [c["claim"] for c in summary["claims"]]
    assert any(c.startswith("aird beats none by >= 1 points") for c in claims)
    assert {r["regime"] for r in summary["records"] if r["method"] != "teacher"} == {"same"}


def test_pretrained_preset_needs_a_teacher(tmp_path) -> None:
    with pytest.raises(ConfigError, match="student_init"):
        make_settings("pretrained", faces=str(tmp_path), test_bins=("a.bin",))


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory, pretrained_run):
    """The pretrained preset as shipped (its named tuning grid, every size, FaceBN only for aird) on tiny data."""
    _out, settings, _summary, teacher = pretrained_run
    out = tmp_path_factory.mktemp("grid") / "out"
    grid = replace(settings, tune_grid="pretrained", tune_epochs=1, student_facebn_methods=("aird",),
                   student_eval_sizes=(112, 16), methods=("none", "kd", "aird"))
    summary = DemoPipeline(out, grid, device="cpu", progress=False).run()
    return out, grid, summary


def test_grid_candidates_reach_the_trainer(grid_run) -> None:
    out, settings, _ = grid_run
    for index, candidate in enumerate(GRIDS["pretrained"]["aird"]):
        config = json.loads((out / "tune" / f"aird_16px_s100_c{index}" / "run.json").read_text())["config"]
        assert config["distill_weights"] == {"aird": candidate["weight"]} and config["num_epoch"] == 1
        own = {k: v for k, v in candidate.items() if k != "weight"}
        assert {k: config["distill_config"]["aird"][k] for k in own} == own
        assert config["distill_config"]["kd"] == {"alpha": 1.0, "tau": 4.0}  # other terms as the recipe wrote
    tuned = json.loads((out / "tune" / "choices.json").read_text())
    assert set(tuned) == {"kd", "aird"} and len(tuned["kd"]["candidates"]) == len(GRIDS["pretrained"]["kd"])
    chosen = tuned["aird"]
    config = json.loads((out / "students" / "aird_16px_s0" / "run.json").read_text())["config"]
    assert config["distill_weights"] == {"aird": chosen["weight"]} and config["num_epoch"] == settings.student_epochs
    assert {k: config["distill_config"]["aird"][k] for k in chosen["fields"]} == chosen["fields"]


def test_every_size_facebn_row_for_aird_only(grid_run) -> None:
    _out, settings, summary = grid_run
    reported = [r for r in summary["records"] if r["method"] != "teacher" and r["candidate"] is None]
    modes = lambda m: {r["facebn"] for r in reported if r["method"] == m}  # noqa: E731
    assert modes("none") == modes("kd") == {"off"} and modes("aird") == {"off", settings.facebn_mode}
    assert {(r["bin"], r["size"]) for r in reported} == {("test", 112), ("test", 16)}
    assert all(len(r["pair_correct"]) == 6 for r in reported)  # 20 pairs: 3 bytes of bits, in hex


def test_wall_time_adds_up_over_invocations(pretrained_run) -> None:
    """A run resumed across sessions reports its whole wall time: every invocation's seconds, summed."""
    out, settings, first, _ = pretrained_run
    again = DemoPipeline(out, settings, device="cpu", progress=False).run()  # nothing left to do: a resume
    invocations = again["run"]["invocations"]
    assert len(invocations) == 2 and invocations[0] == first["run"]["invocations"][0]
    assert again["run"]["wall_total_s"] == pytest.approx(sum(i["seconds"] for i in invocations), abs=0.2)
    recorded = json.loads((out / "wall.json").read_text())
    assert recorded["invocations"] == invocations and all("load_average_at_start" in i for i in invocations)
    # an older wall.json (a total, no log): its time is kept as one unlogged entry
    (out / "wall.json").write_text(json.dumps({"total_s": 1000.0}))
    old = DemoPipeline(out, settings, device="cpu", progress=False).run()["run"]
    assert old["invocations"][0] == {"started": None, "seconds": 1000.0, "load_average_at_start": None}
    assert old["wall_total_s"] == pytest.approx(1000.0 + old["invocations"][1]["seconds"], abs=0.2)


def test_bridge2_distils_the_none_student_of_its_seed(grid_run, tmp_path_factory) -> None:
    """bridge2 (issue 32) extends a finished folder: its tuning candidates use the first seed's none fine-tune as
    the bridge, each reported student its own seed's; a native 16-px bridge_student seeing the bridge's LR view."""
    out, settings, _ = grid_run
    more = replace(settings, methods=(*settings.methods, "bridge2"))
    summary = DemoPipeline(out, more, device="cpu", progress=False, extend=True).run()
    student, meta = load_student(out / "students" / "bridge2_16px_s0" / "student.pt")
    assert type(student).__name__ == "BridgeStudent" and student.input_size == 16
    config = json.loads((out / "students" / "bridge2_16px_s0" / "run.json").read_text())["config"]
    assert config["teacher"] == str(out / "students" / "none_16px_s0" / "student.pt")
    assert config["teacher_view"] == "lr" and config["distill"] == "feat"
    tuned = json.loads((out / "tune" / "bridge2_16px_s100_c0" / "run.json").read_text())["config"]
    assert tuned["teacher"] == config["teacher"] and tuned["num_epoch"] == config["num_epoch"]
    assert "bridge2" in json.loads((out / "tune" / "choices.json").read_text())
    with_margin = json.loads((out / "tune" / "bridge2_16px_s100_c1" / "run.json").read_text())["config"]
    assert (with_margin["margin_weight"], tuned["margin_weight"]) == (1.0, 0.0)  # a trainer field of a candidate
    assert any(c["left"] == "bridge2" for c in summary["comparisons"])


def test_a_folder_restored_from_its_records_is_not_retrained(grid_run) -> None:
    """An evaluated student needs no weights to finish the report (a folder restored from eval/*.json in another
    session); a none student that bridge2 distils from is retrained if its weights are gone."""
    from insightface_lr.demo.settings import DemoSettings

    out, _, _ = grid_run
    recorded = DemoSettings.from_dict(json.loads((out / "settings.json").read_text()))
    for name in ("tune/kd_16px_s100_c0", "students/kd_16px_s0"):
        (out / name / "student.pt").unlink()
    pipeline = DemoPipeline(out, recorded, device="cpu", progress=False)
    pipeline.run()
    assert pipeline.ran == []
    (out / "students" / "none_16px_s0" / "student.pt").unlink()
    again = DemoPipeline(out, recorded, device="cpu", progress=False)
    again.run()
    assert again.ran == ["student none_16px_s0"]
