"""The benchmark scripts run end to end on ``--tiny`` settings and write complete JSON.

No figure is asserted against a speed (the machine is shared): only that every figure is there, finite and
positive, that ratios are ratios of the figures printed, and that the helpers count what they claim.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

MXNET_PYTHON = Path("/work/mxvenv/bin/python")


@pytest.fixture
def one_thread():
    """Scripts set torch's thread count; give the test process its own back afterwards."""
    saved = torch.get_num_threads()
    yield ["--tiny", "--threads", "1"]
    torch.set_num_threads(saved)


def _positive(value) -> bool:
    return isinstance(value, float | int) and math.isfinite(value) and value > 0


def _load(path: Path) -> dict:
    data = json.loads(path.read_text())
    machine = data["machine"]
    assert machine["cores"] >= 1 and machine["torch_threads"] == 1 and machine["cpu"]
    assert len(machine["load_avg_start"]) == 3 and len(machine["load_avg_end"]) == 3
    return data


def test_inference_script(tmp_path, one_thread, capsys) -> None:
    from benchmarks import inference

    out = tmp_path / "inference.json"
    assert inference.main([*one_thread, "--out", str(out), "--backends", "eager,onnx"]) == 0
    data = _load(out)
    (result,) = data["results"]
    assert result["model"] == "bridge_student" and result["input_size"] == 16
    assert 0.15 < result["params_m"] < 0.3  # the ~0.21M student of the bridge paper
    by_backend = {b["backend"]: b for b in result["backends"]}
    assert set(by_backend) == {"eager", "onnx"}
    for record in by_backend.values():
        assert set(record["faces_per_s"]) == {"1", "4"} and all(map(_positive, record["faces_per_s"].values()))
        best = max(record["faces_per_s"].values())
        assert record["gflops_per_s"] == pytest.approx(best * result["mflops_per_face"] / 1e3)
        assert record["fraction_of_matmul"] == pytest.approx(record["gflops_per_s"] / data["matmul_gflops"]["cpu"])
        assert record["ratio_to_paper"]["1"] == pytest.approx(record["faces_per_s"]["1"] / 934.0)
    onnx, eager = by_backend["onnx"], by_backend["eager"]
    assert onnx["speedup_vs_eager"]["4"] == pytest.approx(onnx["faces_per_s"]["4"] / eager["faces_per_s"]["4"])
    assert "x_paper" in capsys.readouterr().out


def test_flop_count_matches_hand_computation() -> None:
    from benchmarks.inference import count_mflops, parse_models

    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)  # 8 outputs x 27 MACs x 16x16 positions
    assert count_mflops(conv, 16) == pytest.approx(2 * 8 * 27 * 256 / 1e6)
    depthwise = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
    depthwise_in = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1, bias=False), depthwise)
    assert count_mflops(depthwise_in, 16) == pytest.approx(2 * (8 * 3 + 8 * 9) * 256 / 1e6)
    assert parse_models("bridge_student@16, r18@32,mbf") == [("bridge_student", 16), ("r18", 32), ("mbf", 112)]


def test_train_step_script(tmp_path, one_thread) -> None:
    from benchmarks import train_step

    out = tmp_path / "train_step.json"
    assert train_step.main([*one_thread, "--out", str(out)]) == 0
    data = _load(out)
    results = {r["variant"]: r for r in data["results"]}
    assert list(results) == ["none", "aird_live_teacher", "aird_cached", "ccface", "rkd"]
    base = results["none"]["s_per_step"]
    for r in results.values():
        assert len(r["samples"]) == 2 and all(map(_positive, r["samples"]))
        assert r["s_per_step"] == pytest.approx(sorted(r["samples"])[0] / 2 + sorted(r["samples"])[1] / 2)
        assert r["ratio_to_none"] == pytest.approx(r["s_per_step"] / base)
    assert not results["aird_live_teacher"]["teacher_cache"] and results["aird_cached"]["teacher_cache"]


def test_eval_script(tmp_path, one_thread) -> None:
    from benchmarks import eval as eval_bench

    out = tmp_path / "eval.json"
    assert eval_bench.main([*one_thread, "--out", str(out)]) == 0
    data = _load(out)
    assert data["images"] == 40 and data["pairs"] == 20
    assert [(c["size"], c["facebn"]) for c in data["cells"]] == [(16, "off"), (16, "batch")]
    for cell in data["cells"]:
        assert cell["embeddings_per_s"] == pytest.approx(2 * 40 / cell["seconds"])
        assert 0.0 <= cell["accuracy"] <= 1.0
    assert data["decode_images_per_s"] == pytest.approx(40 / data["decode_s"])
    breakdown = data["breakdown"]
    assert breakdown["decode_to_model"] == pytest.approx(data["decode_s"] / breakdown["model_s"])
    assert breakdown["degrade_to_model"] == pytest.approx(breakdown["degrade_s"] / breakdown["model_s"])
    assert breakdown["degrade_s"] == pytest.approx(breakdown["degrade_once_s"] + breakdown["resize_s"])
    assert data["old_to_new"] == pytest.approx(data["old_path_total_s"] / data["sweep_total_s"])
    assert eval_bench.main([*one_thread, "--out", str(out)]) == 0  # second run reuses the generated .bin
    assert _load(out)["generated_s"] == 0.0


def test_recordio_script(tmp_path, one_thread) -> None:
    from benchmarks import recordio

    out = tmp_path / "recordio.json"
    extra = ["--mxnet-python", str(MXNET_PYTHON)] if MXNET_PYTHON.is_file() else []
    assert recordio.main([*one_thread, "--out", str(out), *extra]) == 0
    data = _load(out)
    assert data["records"] == 64
    assert all(map(_positive, data["ours"].values())) and "decode_loader_2w_per_s" in data["ours"]
    from insightface_lr.data.recordio import RecordReader

    with RecordReader(data["rec"]) as reader:  # images + identity records + header 0, all scanned
        count = len(reader)
    per_record_mb = data["ours"]["seq_mb_per_s"] / data["ours"]["seq_records_per_s"]
    assert per_record_mb == pytest.approx(data["file_mb"] / count)
    if not extra:
        assert data["ratio_ours_to_mxnet"] == {}
        return
    mx = data["mxnet_worker"]
    assert "error" not in mx, mx
    for key, ratio in data["ratio_ours_to_mxnet"].items():
        assert ratio == pytest.approx(data["ours"][key] / mx["mxnet"][key])
    assert set(data["ratio_ours_to_mxnet"]) >= {"seq_records_per_s", "random_records_per_s", "decode_1proc_per_s"}


def test_allocator_script(tmp_path, one_thread) -> None:
    from benchmarks import allocator

    out = tmp_path / "allocator.json"
    assert allocator.main([*one_thread, "--out", str(out)]) == 0
    data = _load(out)
    assert [r["mode"] for r in data["runs"]] == ["default", "tuned"]  # one child each, alternating
    assert [r["applied"] for r in data["runs"]] == [False, True]
    assert all(_positive(r["seconds"]) for r in data["runs"])
    default, tuned = data["summary"]
    assert default["seconds"] == data["runs"][0]["seconds"] and tuned["seconds"] == data["runs"][1]["seconds"]
    assert default["ratio_default_to_tuned"] == pytest.approx(default["seconds"] / tuned["seconds"])


def test_bridge_speed_script(tmp_path, one_thread, capsys) -> None:
    from benchmarks import bridge_speed

    out = tmp_path / "bridge_speed.json"
    assert bridge_speed.main([*one_thread, "--reference", "mbf@32", "--out", str(out)]) == 0
    data = _load(out)
    assert data["params"]["student"] < 0.25e6 < data["params"]["reference"]
    for row in data["rows"]:
        assert _positive(row["student_faces_per_s"]) and _positive(row["reference_faces_per_s"])
        ratios = [s / r for s, r in zip(row["student_samples"], row["reference_samples"], strict=True)]
        assert min(ratios) <= row["ratio"] <= max(ratios)  # the median of the same rounds' ratios
    assert "ratio" in capsys.readouterr().out
