"""``benchmarks/student_speed.py`` and ``benchmarks/int8.py`` run end to end on ``--tiny`` settings.

As in ``test_benchmarks.py``: no speed is asserted (the machine is shared), only that every figure is there,
finite and positive, and that each ratio is the ratio of the figures it names.
"""

from __future__ import annotations

import json
import math

import pytest
import torch


@pytest.fixture
def keep_threads():
    saved = torch.get_num_threads()
    yield
    torch.set_num_threads(saved)


def _positive(value) -> bool:
    return isinstance(value, float | int) and math.isfinite(value) and value > 0


def test_student_speed_script(tmp_path, keep_threads, capsys) -> None:
    from benchmarks import student_speed

    out = tmp_path / "speed.json"
    assert student_speed.main(["--tiny", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    idle, loaded = data["idle"], data["loaded"]
    assert idle["model"] == "bridge_student" and idle["mflops_per_face"] == pytest.approx(4.19, abs=0.01)
    lanes = idle["lanes"]
    assert set(lanes) == {"eager", "folded", "folded_nhwc", "inference_net", "onnxruntime", "matmul"}
    assert len(lanes["matmul"]["samples"]) == data["rounds"] == 2
    for lane in ("eager", "folded", "folded_nhwc", "inference_net", "onnxruntime"):
        record = lanes[lane]
        assert record["threads"] == 1 and all(map(_positive, record["samples"])) and len(record["samples"]) == 2
        assert record["ratio_to_eager"] == pytest.approx(record["faces_per_s"] / lanes["eager"]["faces_per_s"])
        # the share of the matmul rate is taken per round, then the median: bounded by the per-round extremes
        rounds = zip(record["samples"], lanes["matmul"]["samples"], strict=True)
        shares = [rate * idle["mflops_per_face"] / 1e3 / gflops for rate, gflops in rounds]
        assert min(shares) - 1e-9 <= record["fraction_of_matmul"] <= max(shares) + 1e-9
    busy = loaded["lanes"]
    assert 1 <= loaded["default_threads"] <= loaded["cores"] and busy["one_thread"]["threads"] == 1
    assert busy["default_threads"]["threads"] == loaded["default_threads"]
    assert busy["default_threads"]["ratio_to_one_thread"] == pytest.approx(
        busy["default_threads"]["faces_per_s"] / busy["one_thread"]["faces_per_s"])
    assert loaded["competitor_ran_throughout"] is True and len(loaded["load_avg"]) == 3
    assert data["thread_env"]["OMP_WAIT_POLICY"] is not None
    printed = capsys.readouterr().out
    assert "% of matmul" in printed and "default threads / 1 thread under load" in printed
    assert ("GPU lane: not run" in printed) != torch.cuda.is_available()


def test_competitor_is_bounded_in_time() -> None:
    from benchmarks.student_speed import start_competitor

    competitor = start_competitor(0.2)
    assert competitor.wait(timeout=30) == 0  # ends by itself


@pytest.mark.slow  # two fresh torch processes: ~10 s idle, a minute on a loaded box
def test_child_lanes_start_with_the_policy_they_name() -> None:
    from benchmarks.student_speed import child_lane

    passive = child_lane("bridge_student", 16, 4, 1, "passive", 1)
    default = child_lane("bridge_student", 16, 4, 1, "default", 1)
    assert passive["omp_wait_policy"] == "PASSIVE" and default["omp_wait_policy"] is None
    assert _positive(passive["faces_per_s"]) and _positive(default["faces_per_s"])


def test_int8_script(tmp_path, keep_threads, capsys) -> None:
    from benchmarks import int8

    out = tmp_path / "int8.json"
    assert int8.main(["--tiny", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data["file_mb"]) == {"float32", "int8"} and all(map(_positive, data["file_mb"].values()))
    assert data["file_mb"]["int8"] * 2.5 < data["file_mb"]["float32"]
    for check in data["insightface"].values():
        assert check["file_class"] == check["package_class"] == "ArcFaceONNX" and check["embedding_shape"] == [1, 128]
    accuracy = data["synthetic"]["accuracy"]
    assert set(accuracy) == {"torch", "float32", "int8"}
    assert all(0 <= acc["16"] <= 100 for acc in accuracy.values()) and "real" not in data  # --tiny: no real faces
    speed = data["speed"]
    ratios = [i / f for i, f in zip(speed["samples"]["int8"], speed["samples"]["float32"], strict=True)]
    assert speed["ratio_int8_to_float32"] == pytest.approx(sorted(ratios)[0] / 2 + sorted(ratios)[1] / 2)
    printed = capsys.readouterr().out
    assert "int8 package file" in printed and "int8 - float32 =" in printed and "int8 / float32 x" in printed


def test_int8_seeds_script(tmp_path, keep_threads, capsys) -> None:
    """Two students pooled: the pooled difference is the mean of their own changes (same pairs, equal weights)."""
    from benchmarks import int8_seeds

    out = tmp_path / "int8_seeds.json"
    assert int8_seeds.main(["--tiny", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert len(data["students"]) == 2
    (bin_path, by_size), = data["pooled"].items()
    pooled = by_size["16"]
    own = [row["accuracy"][bin_path]["int8@16"] - row["accuracy"][bin_path]["float32@16"] for row in data["students"]]
    assert pooled["seeds"] == 2 and pooled["low"] <= pooled["difference"] <= pooled["high"]
    assert pooled["per_seed"] == pytest.approx(own, abs=1e-6)  # 10 equal folds: the fold mean is the plain mean
    assert pooled["mean_within_limit"] == (pooled["difference"] >= -0.5)
    assert "over 2 students: int8 - float32" in capsys.readouterr().out
