"""The trainer end to end: logs, distillation with the teacher cache, DDP parity, kill + resume,
an unmodified arcface_torch config with --distill aird, and clear errors for bad runs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers_train import run_cli, tiny_args

ARCFACE_CONFIGS = Path(__file__).parents[1] / "fixtures" / "arcface_torch_configs"


def curve(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]


def student_weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def test_distill_run_writes_logs_cache_and_student(tiny_data, plugin_dir, tiny_teacher, tmp_path) -> None:
    out = tmp_path / "aird"
    result = run_cli(tiny_args(tiny_data, out, "--distill", "aird", "--teacher", str(tiny_teacher),
                               "--max-steps", "6", "--set", "val_targets=['test']"), plugin_dir)
    assert result.returncode == 0, result.stderr
    steps = curve(out)
    assert [s["step"] for s in steps] == list(range(1, 7))
    assert {"loss", "margin", "aird/instance", "aird/relation"} <= set(steps[0])
    total = steps[0]["margin"] + steps[0]["aird/loss"]
    assert steps[0]["loss"] == pytest.approx(total, rel=1e-5)
    # built once into the default shared folder (the user's cache dir), none in the run's own output
    shared = Path(os.environ["XDG_CACHE_HOME"]) / "insightface_lr" / "teacher_cache"
    assert [p for p in shared.iterdir() if p.is_dir()] and not (out / "teacher_cache").exists()
    assert any((out / "tensorboard").iterdir())
    log = (out / "training.log").read_text()
    assert "val/test@112px" in log and "val/test@16px" in log  # verification at HR and LR
    assert (out / "student.pt").is_file()


def _cache_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir())


def test_second_run_with_another_distill_builds_nothing(tiny_data, plugin_dir, tiny_teacher, tmp_path) -> None:
    shared = tmp_path / "shared_cache"
    common = ("--teacher", str(tiny_teacher), "--max-steps", "2", "--set", f"teacher_cache_dir={shared}")
    first = run_cli(tiny_args(tiny_data, tmp_path / "aird", "--distill", "aird", *common), plugin_dir)
    assert first.returncode == 0, first.stderr
    assert "teacher cache: building" in first.stderr  # its size printed before it starts
    (built,) = _cache_folders(shared)
    stamp = (built / "embeddings.npy").stat().st_mtime_ns
    second = run_cli(tiny_args(tiny_data, tmp_path / "feat", "--distill", "feat", *common), plugin_dir)
    assert second.returncode == 0, second.stderr
    assert "teacher cache: building" not in second.stderr
    assert _cache_folders(shared) == [built] and (built / "embeddings.npy").stat().st_mtime_ns == stamp
    assert curve(tmp_path / "feat")[0]["feat/loss"] > 0  # it did distil, from the shared cache


def test_float16_and_float32_caches_train_the_same_losses(tiny_data, plugin_dir, tiny_teacher, tmp_path) -> None:
    """20 steps of AIRD + CCFace: every logged loss equal within 1e-3 absolute or 3e-3 relative."""
    losses = {}
    for dtype in ("float16", "float32"):
        out = tmp_path / dtype
        result = run_cli(tiny_args(tiny_data, out, "--distill", "aird+ccface", "--teacher", str(tiny_teacher),
                                   "--max-steps", "20", "--set", f"teacher_cache_dtype={dtype}",
                                   "--set", f"teacher_cache_dir={tmp_path / 'cache'}"), plugin_dir)
        assert result.returncode == 0, result.stderr
        losses[dtype] = curve(out)
    assert len(_cache_folders(tmp_path / "cache")) == 2  # one cache per dtype, side by side
    assert [s["step"] for s in losses["float16"]] == list(range(1, 21))
    worst = {}
    for half, full in zip(losses["float16"], losses["float32"], strict=True):
        for name in ("loss", "margin", "aird/loss", "ccface/loss"):
            # within 1e-3 absolute, or 3e-3 relative: the totals (~76 here) and AIRD's prediction part (on by
            # default) read scale-64 cosine logits, where float16's 1e-3 rounding of an embedding moves a logit
            # by ~0.06, and 20 steps of training carry that forward (measured: 1.4e-3 relative at step 13)
            assert half[name] == pytest.approx(full[name], rel=3e-3, abs=1e-3), (half["step"], name)
            worst[name] = max(worst.get(name, 0.0), abs(half[name] - full[name]))
    print("fp16 vs fp32 cache, 20 steps, max |loss difference|:", worst)
    assert any(worst.values())  # the float16 run really read rounded embeddings


def test_unmodified_arcface_config_trains_with_distill_aird(tiny_data, plugin_dir, tiny_teacher, tmp_path) -> None:
    configs = tmp_path / "configs"
    shutil.copytree(ARCFACE_CONFIGS, configs)
    out = tmp_path / "r50_aird"
    args = ["train", str(configs / "ms1mv3_r50.py"), "--distill", "aird", "--teacher", str(tiny_teacher),
            "--lr-size", "16", "--rec", str(tiny_data), "--output", str(out), "--batch-size", "4",
            "--max-steps", "2", "--student-input-size", "16", "--set", "num_classes=6",
            "--set", "num_image=36",
            "--set", "plugins=['tiny_plugin_backbone']", "--set", "num_workers=0", "--no-progress"]
    result = run_cli(args, plugin_dir)
    assert result.returncode == 0, result.stderr
    saved = torch.load(out / "student.pt", weights_only=True)
    assert saved["network"] == "r50" and saved["meta"]["distill"] == "aird"
    assert (configs / "ms1mv3_r50.py").read_text() == (ARCFACE_CONFIGS / "ms1mv3_r50.py").read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("distill", ["feat", "aird"])  # aird: its relation term spans the global batch
def test_two_process_loss_curve_equals_single_process(tiny_data, plugin_dir, tiny_teacher, tmp_path,
                                                      distill) -> None:
    common = ("--distill", distill, "--teacher", str(tiny_teacher), "--max-steps", "4")
    one, two = tmp_path / "one", tmp_path / "two"
    single = run_cli(tiny_args(tiny_data, one, *common), plugin_dir)
    assert single.returncode == 0, single.stderr
    args = tiny_args(tiny_data, two, *common)
    args[args.index("--batch-size") + 1] = "4"
    launcher = ("-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
                "-m", "insightface_lr.train")
    multi = run_cli(args[1:], plugin_dir, module=launcher, timeout=300)
    assert multi.returncode == 0, multi.stderr[-3000:]
    losses_one = [s["loss"] for s in curve(one)]
    losses_two = [s["loss"] for s in curve(two)]
    assert len(losses_one) == len(losses_two) == 4
    assert losses_one == pytest.approx(losses_two, rel=1e-5)
    w1, w2 = student_weights(one / "student.pt"), student_weights(two / "student.pt")
    for key in w1:
        assert torch.allclose(w1[key], w2[key], atol=1e-5), key


def _wait_for(path_glob: tuple[Path, str], proc: subprocess.Popen, timeout: float = 120.0) -> None:
    folder, pattern = path_glob
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if folder.is_dir() and any(folder.glob(pattern)):
            return
        if proc.poll() is not None:
            raise AssertionError(f"trainer ended before {pattern} appeared: {proc.stderr.read()[-2000:]}")
        time.sleep(0.02)
    raise AssertionError(f"{pattern} did not appear within {timeout} s")


def test_sigkill_then_resume_equals_uninterrupted(tiny_data, plugin_dir, tiny_teacher, tmp_path) -> None:
    extra = ("--distill", "aird", "--teacher", str(tiny_teacher), "--max-steps", "40",
             "--set", "checkpoint_every=3", "--no-progress")
    straight = tmp_path / "straight"
    assert run_cli(tiny_args(tiny_data, straight, *extra), plugin_dir).returncode == 0
    killed = tmp_path / "killed"
    env_cmd = [sys.executable, "-m", "insightface_lr", *tiny_args(tiny_data, killed, *extra)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(plugin_dir))
    proc = subprocess.Popen(env_cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for((killed / "checkpoints", "step*_rank0.pt"), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "student.pt").exists(), "the run finished before it could be killed"
    resumed = run_cli(tiny_args(tiny_data, killed, *extra, "--resume"), plugin_dir)
    assert resumed.returncode == 0, resumed.stderr
    a, b = student_weights(straight / "student.pt"), student_weights(killed / "student.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--distill", "aird"), "field `teacher`"),
        (("--distill", "aird+foo", "--teacher", "TEACHER"), "unknown distillation term 'foo'"),
        (("--set", "num_classes=7"), "field `num_classes`: config says 7"),
        (("--lr-size", "200"), "LR size 200"),
        (("--set", "distil='aird'"), "unknown field `distil`"),
    ],
)
def test_bad_runs_fail_with_one_line_and_exit_2(tiny_data, plugin_dir, tiny_teacher, tmp_path, extra, message):
    extra = tuple(str(tiny_teacher) if e == "TEACHER" else e for e in extra)
    result = run_cli(tiny_args(tiny_data, tmp_path / "bad", *extra, "--max-steps", "1"), plugin_dir)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_nan_guard_stops_with_step_and_loss_parts(tiny_data, plugin_dir, tmp_path) -> None:
    args = tiny_args(tiny_data, tmp_path / "nan", "--max-steps", "10", "--no-progress")
    args[args.index("tiny_mlp_test")] = "nan_after_3_test"
    result = run_cli(args, plugin_dir)
    assert result.returncode == 2
    assert "step 3: loss is nan" in result.stderr and "'margin': nan" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_rec_is_a_clear_error(plugin_dir, tmp_path) -> None:
    result = run_cli(tiny_args(tmp_path / "nowhere", tmp_path / "out", "--max-steps", "1"), plugin_dir)
    assert result.returncode == 2 and "field `rec`" in result.stderr and "does not exist" in result.stderr


def test_lr_view_run_keeps_its_own_cache_and_network_options(tiny_data, plugin_dir, tiny_teacher, tmp_path) -> None:
    """teacher_view=lr builds a cache beside the HR one (not over it) and trains; network_options shape the
    student that student.pt records."""
    shared = tmp_path / "shared_cache"
    common = ("--distill", "feat", "--teacher", str(tiny_teacher), "--max-steps", "2",
              "--set", f"teacher_cache_dir={shared}")
    hr = run_cli(tiny_args(tiny_data, tmp_path / "hr", *common), plugin_dir)
    assert hr.returncode == 0, hr.stderr
    options = "network_options={'widths': [8, 8, 16, 16], 'blocks': [0, 1, 0]}"
    args = tiny_args(tiny_data, tmp_path / "lr", *common, "--set", "teacher_view=lr", "--set", options)
    args[args.index("tiny_mlp_test")] = "bridge_student"
    lr = run_cli(args, plugin_dir)
    assert lr.returncode == 0, lr.stderr
    assert len(_cache_folders(shared)) == 2 and curve(tmp_path / "lr")[0]["feat/loss"] > 0
    saved = torch.load(tmp_path / "lr" / "student.pt", weights_only=True)
    assert saved["kwargs"]["widths"] == [8, 8, 16, 16] and saved["kwargs"]["blocks"] == [0, 1, 0]
    args[args.index(options)] = "network_options={'depth': 3}"
    bad = run_cli(args + ["--overwrite"], plugin_dir)
    assert bad.returncode == 2 and "field `network_options`" in bad.stderr and "Traceback" not in bad.stderr
