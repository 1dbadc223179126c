"""demo/wall.py: a run's wall time over invocations, kept by a heartbeat when an invocation is killed."""
from __future__ import annotations

import json
import time

import pytest

from insightface_lr.demo.wall import WallClock


def _read(path):
    return json.loads(path.read_text())


def test_total_is_every_invocation_summed(tmp_path) -> None:
    path = tmp_path / "wall.json"
    first = WallClock(path)
    first.load()
    time.sleep(0.05)
    first.save()
    second = WallClock(path)
    second.load()
    time.sleep(0.05)
    second.save()
    recorded = _read(path)
    assert len(recorded["invocations"]) == 2
    assert recorded["total_s"] == pytest.approx(sum(i["seconds"] for i in recorded["invocations"]), abs=0.11)
    assert recorded["invocations"][0] == _read(path)["invocations"][0]
    assert all("load_average_at_start" in i and "load_average_max" in i for i in recorded["invocations"])


def test_an_older_total_without_a_log_is_kept_as_one_entry(tmp_path) -> None:
    path = tmp_path / "wall.json"
    path.write_text(json.dumps({"total_s": 1000.0}))
    clock = WallClock(path)
    clock.load()
    clock.save()
    recorded = _read(path)
    assert recorded["invocations"][0] == {"started": None, "seconds": 1000.0, "load_average_at_start": None}
    assert recorded["total_s"] == pytest.approx(1000.0 + recorded["invocations"][1]["seconds"], abs=0.11)


def test_heartbeat_saves_while_the_work_runs(tmp_path) -> None:
    """Without any stage ending, the file grows: a session killed mid-stage loses at most one beat."""
    path = tmp_path / "wall.json"
    clock = WallClock(path, beat_s=0.02)
    clock.load()
    with clock.beating():
        time.sleep(0.3)
        seen = _read(path)["invocations"][-1]["seconds"]  # written by the heartbeat alone
        assert seen > 0.1
    assert clock.record()["invocations"][-1] is not clock.invocation  # the record is a copy
    assert clock.record() == {"wall_total_s": _read(path)["total_s"], "invocations": _read(path)["invocations"]}


def test_no_file_without_record(tmp_path) -> None:
    clock = WallClock(tmp_path / "wall.json", record=False, beat_s=0.01)
    clock.load()
    with clock.beating():
        time.sleep(0.05)
    clock.save()
    assert not (tmp_path / "wall.json").exists() and clock.record()["wall_total_s"] >= 0.04
