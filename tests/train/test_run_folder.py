"""An output folder belongs to one run: a new run there is refused, ``--resume`` refuses a config that trains
something else (naming the fields), ``--overwrite`` replaces the run, and rotation never deletes a later step."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers_train import run_cli, tiny_args

from insightface_lr.train.checkpoint import CheckpointFolder
from insightface_lr.train.config import TrainConfig
from insightface_lr.train.distributed import DistContext
from insightface_lr.train.run_record import NON_TRAINING_FIELDS, changed_fields, config_hash, plain_config

RUN = ("--distill", "kd", "--max-steps", "4", "--set", "checkpoint_every=2", "--no-progress")


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "tensorboard" not in p.parts}


@pytest.fixture(scope="module")
def finished_run(tiny_data, plugin_dir, tiny_teacher, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    result = run_cli(tiny_args(tiny_data, out, *RUN, "--teacher", str(tiny_teacher)), plugin_dir)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def used_folder(finished_run, tmp_path) -> Path:
    """A private copy of a finished run (the cache link-free copy trains the same)."""
    out = tmp_path / "used"
    shutil.copytree(finished_run, out)
    return out


def _args(tiny_data, out, tiny_teacher, *extra):
    return tiny_args(tiny_data, out, *RUN, "--teacher", str(tiny_teacher), *extra)


def test_the_run_is_recorded_in_the_folder_and_every_checkpoint(finished_run) -> None:
    record = json.loads((finished_run / "run.json").read_text())
    assert record["config"]["distill"] == "kd" and record["config"]["lr"] == 0.05
    assert record["hash"] == config_hash(record["config"])
    for path in (finished_run / "checkpoints").glob("step*_rank0.pt"):
        assert torch.load(path, weights_only=True)["run"] == record
    meta = torch.load(finished_run / "student.pt", weights_only=True)["meta"]
    assert meta["config_hash"] == record["hash"]


def test_new_run_in_used_folder_is_refused_and_old_checkpoints_stay(used_folder, tiny_data, plugin_dir,
                                                                    tiny_teacher) -> None:
    before = digests(used_folder)
    result = run_cli(_args(tiny_data, used_folder, tiny_teacher, "--lr", "0.1"), plugin_dir)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "holds another run" in lines[0] and "--resume" in lines[0]
    assert "--overwrite" in lines[0] and "Traceback" not in result.stderr
    assert digests(used_folder) == before


@pytest.mark.parametrize(("extra", "named"), [
    (("--lr", "0.1"), "`lr`"),
    (("--distill", "none"), "`distill`"),
    (("--lr", "0.1", "--set", "seed=3"), "`lr` (0.05 -> 0.1), `seed`"),
])
def test_resume_with_changed_training_field_is_refused_naming_it(used_folder, tiny_data, plugin_dir,
                                                                  tiny_teacher, extra, named) -> None:
    before = digests(used_folder)
    result = run_cli(_args(tiny_data, used_folder, tiny_teacher, "--resume", *extra), plugin_dir)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], lines
    assert digests(used_folder) == before


def test_resume_accepts_changes_that_do_not_change_training(used_folder, tiny_data, plugin_dir,
                                                           tiny_teacher) -> None:
    before = torch.load(used_folder / "student.pt", weights_only=True)["state_dict"]
    extra = ("--resume", "--device", "cpu", "--set", "frequent=3", "--set", "verbose=7",
             "--set", "checkpoint_every=1", "--set", "val_targets=['test']")
    result = run_cli(_args(tiny_data, used_folder, tiny_teacher, *extra), plugin_dir)
    assert result.returncode == 0, result.stderr
    after = torch.load(used_folder / "student.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(before[k], after[k]) for k in before)  # the finished run, resumed at its end
    assert json.loads((used_folder / "run.json").read_text())["config"]["frequent"] == 3


def test_overwrite_replaces_the_run(used_folder, tiny_data, plugin_dir, tiny_teacher) -> None:
    result = run_cli(_args(tiny_data, used_folder, tiny_teacher, "--lr", "0.1", "--overwrite"), plugin_dir)
    assert result.returncode == 0, result.stderr
    assert json.loads((used_folder / "run.json").read_text())["config"]["lr"] == 0.1
    steps = [json.loads(line)["step"] for line in (used_folder / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    for path in (used_folder / "checkpoints").glob("step*_rank0.pt"):
        assert torch.load(path, weights_only=True)["run"]["config"]["lr"] == 0.1


def test_rotation_never_deletes_a_later_step(tmp_path) -> None:
    folder = CheckpointFolder(tmp_path, DistContext(device=torch.device("cpu")))
    for step in (10, 20, 30):  # left by a longer run
        folder.save(step, {"step": step, "world_size": 1})
    for step in (1, 2, 3):
        folder.save(step, {"step": step, "world_size": 1})
    assert folder.complete_steps() == {2, 3, 20, 30}  # 1 rotated away; the longer run's 20, 30 untouched


def test_non_training_fields_are_the_ones_that_do_not_change_training() -> None:
    config = plain_config(TrainConfig())
    for name in config:
        changed = changed_fields(config, {**config, name: "other"})
        assert changed == ([] if name in NON_TRAINING_FIELDS else [name]), name
    assert {"lr", "distill", "network", "batch_size", "gradient_acc", "seed", "max_steps"}.isdisjoint(
        NON_TRAINING_FIELDS)
