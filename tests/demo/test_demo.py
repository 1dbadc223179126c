"""The demo end to end on a tiny setting: outputs, reproducibility, resume; plus its pieces in isolation."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import numpy as np
import pytest

from insightface_lr.demo.pipeline import DemoPipeline, _cell_fields, parse_cell
from insightface_lr.demo.settings import TINY, make_settings
from insightface_lr.demo.shifted import ShiftConfig, apply_shift, write_shifted_bin
from insightface_lr.demo.summary import aggregate, check_claims, claim_text
from insightface_lr.errors import ConfigError

METRIC_KEYS = ("accuracy_mean", "accuracy_std", "best_threshold", "val", "far", "fold_accuracy")


def _numbers(results: dict) -> list:
    """Every evaluation number of a results.json, without timings."""
    return [(r["method"], r["lr_size"], r["seed"], r["regime"], r["bin"], r["size"], r["facebn"],
             *[json.dumps(r[k]) for k in METRIC_KEYS]) for r in results["records"]]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    import contextlib
    import io

    out = tmp_path_factory.mktemp("demo") / "out"
    with contextlib.redirect_stderr(io.StringIO()) as stderr:
        summary = DemoPipeline(out, TINY, device="cpu", progress=False).run()
    (out.parent / "stderr.txt").write_text(stderr.getvalue())
    return out, summary


def test_a_fresh_run_says_nothing_of_resuming(tiny_run):
    out, _ = tiny_run
    stderr = (out.parent / "stderr.txt").read_text()
    assert "resume" not in stderr.lower(), stderr


def test_tiny_run_writes_report_results_and_plots(tiny_run):
    out, summary = tiny_run
    for name in ("report.md", "results.json", "accuracy_vs_resolution.png", "facebn_gain.png",
                 "accuracy_vs_resolution_subset.png", "facebn_gain_subset.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "accuracy_vs_resolution.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("train.rec", "train.idx", "test.bin", "shifted.bin", "subset/train.rec"):
        assert (out / "data" / name).is_file()
    results = json.loads((out / "results.json").read_text())
    # every model (teacher, each student of each seed, size and regime; other sizes in the first regime only):
    # both sets x every probe size x FaceBN off, the headline mode and the extra ones
    expected = {("teacher", 112, None, "teacher")} | {(m, 16, 0, r) for m in TINY.methods for r in TINY.regimes} \
        | {(m, 12, 0, "same") for m in TINY.methods}
    assert {(r["method"], r["lr_size"], r["seed"], r["regime"]) for r in results["records"]} == expected
    assert TINY.facebn_modes == ("off", "calibrate@0.25", "batch")
    assert len(results["records"]) == len(expected) * 2 * len(TINY.eval_sizes) * 3
    assert all(r["status"] == "ok" and 0.0 <= r["accuracy_mean"] <= 1.0 for r in results["records"])
    report = (out / "report.md").read_text()
    assert "torch" in report and "wall time" in report and "| aird |" in report
    assert "## Trained and probed at 12 px" in report and "## Sweep: shifted, students trained at 12 px" in report
    assert "## Headline: trained and probed at 16 px, regime subset" in report
    assert results["run"]["hardware"]["cpu_count"] >= 1
    # the shared teacher cache: every student's teacher_cache_dir is one folder, holding ONE cache (built once
    # for all methods and sizes), instead of each run computing its own in its output
    for folder in ("teacher", "teacher_subset"):  # ... one per (teacher, data): the subset students share theirs
        built = [p for p in (out / "cache" / folder).iterdir() if p.is_dir()]
        assert len(built) == 1 and (built[0] / "meta.json").is_file(), folder
    assert not any((out / "students").glob("*/teacher_cache"))


def test_second_run_reproduces_numbers_and_resume_skips_finished_stages(tiny_run, tmp_path):
    out, summary = tiny_run
    again = DemoPipeline(tmp_path / "again", TINY, device="cpu", progress=False).run()
    assert _numbers(again) == _numbers(summary)
    # resume: a re-run of the finished folder trains and evaluates nothing
    resumed = DemoPipeline(out, TINY, device="cpu", progress=False)
    before = (out / "teacher" / "student.pt").stat().st_mtime_ns
    result = resumed.run()
    assert resumed.ran == []
    assert (out / "teacher" / "student.pt").stat().st_mtime_ns == before
    assert _numbers(result) == _numbers(summary)


def test_parallel_jobs_give_the_same_numbers(tiny_run, tmp_path):
    """Two worker processes (spawned, one thread each) reproduce the in-process run bit for bit; the parent
    alone records every stage's time."""
    out, summary = tiny_run
    pipeline = DemoPipeline(tmp_path / "jobs2", TINY, device="cpu", progress=False, jobs=2)
    result = pipeline.run()
    assert _numbers(result) == _numbers(summary)
    timings = json.loads((tmp_path / "jobs2" / "timings.json").read_text())
    names = pipeline.model_names()
    assert {f"eval {n}" for n in names} | {f"student {n}" for n in names[1:]} <= set(timings)
    assert result["run"]["jobs"] == 2 and result["run"]["threads_per_job"] == 1
    assert "2 job(s) at once" in (tmp_path / "jobs2" / "report.md").read_text()


def _children(pid: int) -> set[int]:
    """PIDs whose parent is ``pid`` (Linux /proc)."""
    import os

    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()  # noqa: SIM115
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry))
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit status may wait for a reaper that is not ours)."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"  # noqa: SIM115
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and PR_SET_PDEATHSIG")
def test_killed_parallel_demo_leaves_no_workers_and_resumes(tiny_run, tmp_path):
    """SIGKILL the parent while its two workers run: the workers die with it (no orphan keeps writing into
    the folder), and a re-run finishes with the numbers of an uninterrupted run."""
    import os
    import signal
    import subprocess
    import time

    _, summary = tiny_run
    out = tmp_path / "killed"
    script = ("from insightface_lr.demo.pipeline import DemoPipeline; from insightface_lr.demo.settings import TINY; "
              f"DemoPipeline({str(out)!r}, TINY, device='cpu', progress=False, jobs=2).run()")
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline, workers = time.time() + 120, set()
    while time.time() < deadline and proc.poll() is None:
        workers |= _children(proc.pid)
        timings = out / "timings.json"
        if workers and timings.is_file() and any(k.startswith("student") for k in json.loads(timings.read_text())):
            break
        time.sleep(0.2)
    assert proc.poll() is None and workers, "the demo finished (or never started workers) before the kill"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30
    while time.time() < deadline and any(map(_running, workers)):
        time.sleep(0.2)
    assert not any(map(_running, workers))
    resumed = DemoPipeline(out, TINY, device="cpu", progress=False, jobs=2).run()
    assert _numbers(resumed) == _numbers(summary)


def test_a_worker_that_dies_gives_one_clear_error_and_keeps_finished_stages(tmp_path):
    """A worker killed without a Python error (here: the student recipe calls os._exit) is reported as a
    user-readable error naming --jobs 1 and the resume; the teacher trained before it is kept."""
    import shutil

    from insightface_lr.demo.pipeline import RECIPES
    from insightface_lr.errors import InsightFaceLRError

    recipes = tmp_path / "recipes"
    shutil.copytree(RECIPES, recipes)
    (recipes / "demo_student.py").write_text("import os\nos._exit(3)\n")
    out = tmp_path / "out"
    with pytest.raises(InsightFaceLRError, match="worker process died.*--jobs 1"):
        DemoPipeline(out, TINY, device="cpu", progress=False, recipes=recipes, jobs=2).run()
    assert (out / "teacher" / "student.pt").is_file()


def test_task_order_builds_each_shared_cache_once_before_its_users():
    from insightface_lr.demo.parallel import task_order

    both = make_settings("full", regimes=("same", "subset"), lr_sizes=(16, 12))
    pipeline = DemoPipeline("unused", both, device="cpu", progress=False, jobs=2)
    names = pipeline.model_names()
    ready, waiting, after = task_order(pipeline, names)
    assert after == {}  # no method here needs another's student
    followers = [n for group in waiting.values() for n in group]
    assert sorted(ready + followers) == sorted(names) and len(ready + followers) == 1 + 49
    # the four caches' builders start first: (teacher, bridge network) x (same, subset data)
    builders = ["kd_16px_s0", "bridge_16px_s0", "kd_16px_s0_subset", "bridge_16px_s0_subset"]
    assert ready[:4] == builders
    assert sorted(waiting) == sorted(builders)  # only builders release anything
    assert all(pipeline.cache_of(n) is None for n in ready[4:])  # then every cache-free task, teacher first
    assert ready[4] == "teacher"
    for builder, group in waiting.items():
        assert {pipeline.cache_of(n) for n in group} == {pipeline.cache_of(builder)}
    with pytest.raises(ConfigError, match="jobs"):
        DemoPipeline("unused", TINY, device="cpu", jobs=0)


def test_followers_start_when_the_cache_is_complete(tmp_path):
    """A builder's followers are released as soon as its cache is renamed into place, not when its whole
    training ends; a cache still in its hidden build folder is not complete."""
    from insightface_lr.demo.parallel import _cache_ready

    pipeline = DemoPipeline(tmp_path, make_settings("full"), device="cpu", progress=False, jobs=2)
    building = tmp_path / "cache" / "teacher_subset" / ".tmp_build"
    building.mkdir(parents=True)
    (building / "meta.json").write_text("{}")
    assert not _cache_ready(pipeline, "kd_16px_s0_subset")
    (tmp_path / "cache" / "teacher_subset" / "key").mkdir()
    assert not _cache_ready(pipeline, "kd_16px_s0_subset")  # the folder, without its meta.json yet
    (tmp_path / "cache" / "teacher_subset" / "key" / "meta.json").write_text("{}")
    assert _cache_ready(pipeline, "kd_16px_s0_subset")
    assert not _cache_ready(pipeline, "kd_16px_s0") and not _cache_ready(pipeline, "teacher")


def test_resume_redoes_only_missing_stages(tiny_run, tmp_path):
    import shutil

    out, summary = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, symlinks=True)
    (copy / "eval" / "aird_16px_s0.json").unlink()
    shutil.rmtree(copy / "students" / "none_16px_s0")  # with its record: an evaluated student needs no weights
    (copy / "eval" / "none_16px_s0.json").unlink()
    pipeline = DemoPipeline(copy, TINY, device="cpu", progress=False)
    result = pipeline.run()
    assert sorted(pipeline.ran) == ["eval aird_16px_s0", "eval none_16px_s0", "student none_16px_s0"]
    assert _numbers(result) == _numbers(summary)  # the retrained student is the same model


def test_other_settings_in_the_same_folder_are_refused(tiny_run):
    out, _ = tiny_run
    with pytest.raises(ConfigError, match="other settings"):
        DemoPipeline(out, replace(TINY, student_steps=3), device="cpu", progress=False).run()


def test_shift_is_seeded_vectorised_and_changes_illumination():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    a, b = apply_shift(images, ShiftConfig(seed=3)), apply_shift(images, ShiftConfig(seed=3))
    assert a.dtype == np.uint8 and a.shape == images.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, apply_shift(images, ShiftConfig(seed=4)))
    # warm cast and gamma on a mid-grey face: darker overall, blue well below red
    grey = apply_shift(np.full((4, 32, 32, 3), 128, np.uint8)).reshape(-1, 3).mean(0)
    assert grey.max() < 120 and grey[2] < grey[0] - 10
    # a face alone and within a batch: the chunking of the file writer draws per chunk, not per neighbour
    flat = np.full((2, 16, 16, 3), 128, np.uint8)
    out = apply_shift(flat, ShiftConfig(seed=0, blur_sigma=(0.0, 0.0), noise_std=(0.0, 0.0), jpeg_quality=(100, 100),
                                        cast_jitter=0.0, gamma=(2.0, 2.0), contrast=(1.0, 1.0)))
    # hand computation: (128/255)^2 * gain, quantised; JPEG at quality 100 moves a flat patch by <= 2 levels
    expected = np.array([1.08, 0.95, 0.70]) * (128 / 255) ** 2 * 255
    assert np.abs(out.reshape(-1, 3).astype(float) - expected).max() <= 2.5


def test_shifted_bin_keeps_pairs_and_labels(tmp_path):
    from insightface_lr.data.synthetic import write_synthetic_dataset
    from insightface_lr.data.verification_bin import load_bin_images

    paths = write_synthetic_dataset(tmp_path, train_ids=2, test_ids=4, images_per_identity=2, pairs=10)
    shifted = write_shifted_bin(paths.test_bin, tmp_path / "shifted.bin", ShiftConfig(seed=1), chunk=7)
    original, same = load_bin_images(paths.test_bin)
    moved, same2 = load_bin_images(shifted)
    np.testing.assert_array_equal(same, same2)
    assert moved.shape == original.shape
    assert np.abs(moved.astype(int) - original.astype(int)).mean() > 10  # a real shift, not a re-encode


def test_aggregate_and_claims_against_hand_numbers():
    def rec(method, seed, acc, bin_name="test", facebn="off"):
        return {"method": method, "lr_size": 16, "seed": seed, "bin": bin_name, "size": 16, "facebn": facebn,
                "status": "ok", "accuracy_mean": acc}

    records = [rec("aird", s, a) for s, a in enumerate((0.80, 0.84, 0.82))]
    records += [rec("none", s, a) for s, a in enumerate((0.75, 0.77, 0.79))]
    records += [rec("kd", s, 0.83) for s in range(3)]
    records += [rec("aird", s, 0.6, "shifted") for s in range(3)] + [rec("aird", s, 0.65, "shifted", "batch")
                                                                        for s in range(3)]
    agg = {(a["method"], a["bin"], a["facebn"]): a for a in aggregate(records)}
    assert agg[("aird", "test", "off")]["mean"] == pytest.approx(82.0)
    assert agg[("aird", "test", "off")]["std"] == pytest.approx(2.0)  # sample std of 80, 84, 82
    # the records carry no regime (read as "same"); the FaceBN mode is the headline one
    settings = make_settings("full", facebn_mode="batch", regimes=("same",))
    claims = {c["claim"].split(" at ")[0]: c for c in check_claims(aggregate(records), settings)}
    assert claims["aird beats none by >= 3 points"]["difference"] == pytest.approx(5.0)
    assert claims["aird beats none by >= 3 points"]["holds"]
    assert not claims["aird >= kd"]["holds"]  # 82.0 < 83.0
    assert claims["FaceBN (batch) improves aird on the shifted set"]["holds"]
    assert "aird >= feat" not in claims  # no feat records: the claim is not invented
    # per seed: aird - none = 5, 7, 3 (std 2); aird - kd = -3, +1, -1 (mean -1, std 2: within noise)
    assert claims["aird beats none by >= 3 points"]["seed_differences"] == pytest.approx([5.0, 7.0, 3.0])
    assert claims["aird beats none by >= 3 points"]["difference_std"] == pytest.approx(2.0)
    kd = claims["aird >= kd"]
    assert kd["difference_std"] == pytest.approx(2.0)
    assert "does NOT hold" in claim_text(kd) and "a tie at this noise level" in claim_text(kd)
    assert "tie" not in claim_text(claims["aird beats none by >= 3 points"])  # +5 > std 2


def test_settings_cells_and_names():
    assert make_settings("full").student_cells() == [(m, 16, seed, "subset") for seed in (0, 1, 2)
                                                     for m in make_settings("full").methods]  # the main command
    cells = make_settings("full", regimes=("same", "subset"), lr_sizes=(16, 12)).student_cells()
    assert len(cells) == 7 * 3 * 2 + 7  # 16 px: every seed and regime; 12 px: the first seed and regime
    assert cells[0] == ("none", 16, 0, "same") and ("aird", 12, 0, "same") in cells
    assert ("aird", 12, 1, "same") not in cells and ("aird", 12, 0, "subset") not in cells
    assert ("rkd", 16, 2, "subset") in cells
    assert len(make_settings("quick").student_cells()) == 7  # 16 px, one seed, regime subset
    assert _cell_fields("ccface_12px_s2") == {"method": "ccface", "lr_size": 12, "seed": 2, "regime": "same",
                                              "epochs": 0, "weight": None, "candidate": None}
    for name in ("ccface_12px_s2", "aird_16px_s0_subset_e5", "kd_16px_s100_subset_w4", "none_16px_s1_e10"):
        assert parse_cell(name).name == name  # names and cells are one-to-one
    assert parse_cell("kd_16px_s100_subset_w4").weight == 4.0 and parse_cell("none_16px_s1_e10").epochs == 10
    assert parse_cell("aird_16px_s100_c3").candidate == 3 and parse_cell("aird_16px_s100_c3").is_tuning
    with pytest.raises(ConfigError):
        make_settings("full", methods=("aird", "nope"))
    with pytest.raises(ConfigError):
        make_settings("huge")


@pytest.mark.slow
def test_quick_demo_from_the_command_line(tmp_path):
    from insightface_lr.cli import main

    assert main(["demo", "--quick", "--out", str(tmp_path / "q"), "--device", "cpu", "--no-progress"]) == 0
    results = json.loads((tmp_path / "q" / "results.json").read_text())
    assert results["settings"]["preset"] == "quick" and results["claims"]


def test_demo_hr_net_shapes_registration_and_every_pixel_counts():
    import torch

    from insightface_lr.demo.nets import DemoHRNet
    from insightface_lr.registry import BACKBONES

    torch.manual_seed(0)
    net = BACKBONES.build("demo_hr_net", embedding_size=32, input_size=112).eval()
    assert isinstance(net, DemoHRNet)
    x = torch.randn(2, 3, 112, 112)
    y = net(x)
    assert y.shape == (2, 32)
    # the 4x4 pixel fold is lossless: a change of one pixel in a corner block reaches the embedding
    x2 = x.clone()
    x2[0, 2, 111, 111] += 1.0
    changed = (net(x2) - y).abs().sum(1)
    assert changed[0] > 0 and changed[1] == 0
    with pytest.raises(ConfigError):
        net(torch.randn(1, 3, 96, 96))
    with pytest.raises(ConfigError):
        DemoHRNet(input_size=100)


def test_default_jobs_one_per_core_on_cpu_one_on_gpu(monkeypatch):
    import os

    import torch

    from insightface_lr.commands.demo import default_jobs

    monkeypatch.setattr(os, "cpu_count", lambda: 32)
    assert default_jobs("cpu") == 8  # capped: past a few jobs the demo's serial teacher stage dominates
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert default_jobs("cpu") == 2
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # resolve_device checks the index exists
    assert default_jobs("auto") == 1 and default_jobs("cuda") == 1
