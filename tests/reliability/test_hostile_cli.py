"""Every hostile case of issue 15 through the real console script (``insightface-lr ...`` in a fresh
process): exit code 2 (130 for an interrupt), exactly one line on stderr, no traceback, the file or field
named. Each case printed a traceback, torch's advice, a wrong culprit or nothing at all before.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from interrupting import SIGNALS, assert_stopped, cli_ok, no_temporaries

from insightface_lr.data.image_codec import encode_jpeg

SCRIPT = Path(sys.executable).with_name("insightface-lr")


def console(args: list[str], env: dict[str, str], timeout: float = 300, cwd: Path | None = None):
    assert SCRIPT.is_file(), f"console script {SCRIPT} not installed (pip install -e .)"
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def assert_one_line(result: subprocess.CompletedProcess, code: int, *needles: str, absent: tuple[str, ...] = ()):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    for word in absent:
        assert word not in lines[0], (word, lines[0])


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, tiny_data) -> dict[str, Path]:
    """Files a user gets wrong: a file where a folder goes, random bytes as a teacher, an empty .idx, bad images."""
    import shutil

    import numpy as np

    root = tmp_path_factory.mktemp("hostile")
    (root / "afile").write_text("a file, not a folder")
    (root / "random.pt").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (root / "noidx").mkdir()
    for name in ("train.rec", "property", "test.bin"):
        shutil.copy(tiny_data / name, root / "noidx" / name)
    (root / "noidx" / "train.idx").write_bytes(b"")
    rng = np.random.default_rng(1)
    for person in ("ann", "bob"):
        (root / "faces" / person).mkdir(parents=True)
        for j in range(2):
            (root / "faces" / person / f"{j}.jpg").write_bytes(encode_jpeg(rng.integers(0, 255, (16, 16, 3),
                                                                                        dtype=np.uint8)))
    (root / "faces" / "ann" / "cut.jpg").write_bytes((root / "faces" / "ann" / "0.jpg").read_bytes()[:40])
    (root / "faces" / "bob" / "notes.png").write_bytes(b"hello")
    (root / "faces" / "bob" / "big.jpg").write_bytes(encode_jpeg(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)))
    return root


def _cases(d: Path, h: Path, s: Path, t: Path, train) -> dict[str, tuple[list[str], list[str], list[str]]]:
    """name -> (argv, needles that must be in the line, words that must not be)."""
    return {
        "train_output_under_a_file": (train(d, h / "afile" / "run"), ["--output", "afile is a file"], []),
        "eval_out_under_a_file": (["eval", "--model", str(s), "--bins", str(d / "test.bin"), "--sizes", "16",
                                   "--out", str(h / "afile" / "rep")], ["--out", "afile is a file"], []),
        "export_out_under_a_file": (["export", "--model", str(s), "--out", str(h / "afile" / "m.onnx")],
                                    ["--out", "afile is a file"], []),
        "export_out_is_a_folder": (["export", "--model", str(s), "--out", str(h)], ["--out", "is a folder"], []),
        "export_package_under_a_file": (["export", "--model", str(s), "--package", str(h / "afile" / "pkg")],
                                        ["--package", "afile is a file"], []),
        "synth_out_under_a_file": (["synth", "--out", str(h / "afile" / "set")], ["--out", "afile is a file"], []),
        "pack_out_under_a_file": (["pack", str(h / "faces"), str(h / "afile" / "rec")], ["afile is a file"], []),
        "random_bytes_teacher": (train(d, h / "o1", "--distill", "aird", "--teacher", str(h / "random.pt")),
                                 ["random.pt", "not a torch.save file"], ["weights_only=False", "False"]),
        "negative_lr": (train(d, h / "o2", "--set", "lr=-1"), ["field `lr`", "got -1.0"], []),
        "momentum_above_one": (train(d, h / "o3", "--set", "momentum=1.5"), ["field `momentum`"], []),
        "negative_clip_norm": (train(d, h / "o4", "--set", "clip_grad_norm=-1"), ["field `clip_grad_norm`"], []),
        "negative_max_steps": (train(d, h / "o5", "--max-steps", "-1"), ["field `max_steps`"], []),
        "negative_num_workers": (train(d, h / "o6", "--set", "num_workers=-1"), ["field `num_workers`"], []),
        "zero_byte_idx_train": (train(h / "noidx", h / "o7"), ["train.idx", "index file lists no record"],
                                ["batch_size"]),
        "zero_byte_idx_info": (["info", str(h / "noidx" / "train.rec")], ["train.idx", "lists no record"],
                               ["records: 0"]),
        "pack_three_bad_images": (["pack", str(h / "faces"), str(h / "packed")],
                                  ["3 bad image(s)", "cut.jpg", "notes.png", "big.jpg: image is 32x32", "--skip-bad"],
                                  []),
        "unknown_loss": (train(d, h / "o8", "--distill", "kdd", "--teacher", str(t)),
                         ["unknown distillation term 'kdd'", "Known distillation terms:"], ["losss"]),
        "eval_size_above_the_face": (["eval", "--model", str(s), "--bins", str(d / "test.bin"), "--sizes", "1000",
                                      "--out", str(h / "rep")], ["--sizes", "[1000]", "112-px HR face"], []),
        "export_bad_opset": (["export", "--model", str(s), "--out", str(h / "m.onnx"), "--opset", "99"],
                             ["--opset 99"], []),
    }


CASE_NAMES = ["train_output_under_a_file", "eval_out_under_a_file", "export_out_under_a_file", "export_out_is_a_folder",
              "export_package_under_a_file", "synth_out_under_a_file", "pack_out_under_a_file", "random_bytes_teacher",
              "negative_lr", "momentum_above_one", "negative_clip_norm", "negative_max_steps", "negative_num_workers",
              "zero_byte_idx_train", "zero_byte_idx_info", "pack_three_bad_images", "unknown_loss",
              "eval_size_above_the_face", "export_bad_opset"]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_hostile_case_is_one_line_and_exit_2(case, hostile, tiny_data, tiny_teacher, student16, train_args,
                                             cli_env) -> None:
    cases = _cases(tiny_data, hostile, student16, tiny_teacher, lambda d, o, *x: train_args(d, o, "--max-steps",
                                                                                             "2", *x))
    assert sorted(cases) == sorted(CASE_NAMES)
    argv, needles, absent = cases[case]
    assert_one_line(console(argv, cli_env), 2, *needles, absent=tuple(absent))
    assert not (hostile / "afile").is_dir() and not (hostile / "packed").exists()


def test_unwritable_output_is_refused_before_torch_is_imported(hostile, tiny_data, cli_env) -> None:
    """Before: a whole epoch of training, then a NotADirectoryError traceback. Now the check runs before the
    heavy imports: well under a second of CPU."""
    code = ("import sys; from insightface_lr.cli import main; "
            # --threads 1: on a busy box the default count is said on stdout, which this test reads
            f"rc = main(['train', '--rec', {str(tiny_data)!r}, '--output', {str(hostile / 'afile' / 'run')!r}, "
            "'--threads', '1']); "
            "print(rc, 'torch' in sys.modules)")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], env=cli_env, capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.split() == ["2", "False"], result.stderr
    assert time.perf_counter() - start < 30  # a generous bound for a loaded CI machine; it takes ~0.2 s CPU


def _interrupt_when(process: subprocess.Popen, ready, sig: int, timeout: float = 240) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"ended before it could be interrupted: {process.stderr.read()}"
        assert time.monotonic() < deadline, "never got ready"
        time.sleep(0.05)
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    return process.returncode, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_training_says_how_to_continue(sig, tiny_data, train_args, cli_env, tmp_path) -> None:
    out = tmp_path / "run"
    argv = train_args(tiny_data, out, "--max-steps", "100000", "--set", "checkpoint_every=2")
    process = subprocess.Popen([str(SCRIPT), *argv], env=cli_env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    code, err = _interrupt_when(process, lambda: any((out / "checkpoints").glob("step*_rank0.pt")), sig)
    lines = err.strip().splitlines()
    assert code == 130 and len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert lines[0].startswith("insightface-lr train: interrupted; last checkpoint: step ")
    assert lines[0].endswith("; continue with --resume") and str(out / "checkpoints") in lines[0]
    step = int(lines[0].split("last checkpoint: step ")[1].split()[0])
    assert (out / "checkpoints" / f"step{step:08d}_rank0.pt").is_file()


def _eval_argv(model: Path, bin_path: Path, out: Path) -> list[str]:
    return ["eval", "--model", str(model), "--bins", str(bin_path), "--sizes", "16,12,8", "--facebn", "batch",
            "--out", str(out), "--quiet", "--no-plots", "--device", "cpu", "--threads", "1"]


def _eval_numbers(out: Path) -> list:
    records = json.loads((out / "results.json").read_text())["records"]
    return [json.dumps({k: v for k, v in r.items() if k != "seconds"}, sort_keys=True) for r in records]


@SIGNALS
def test_interrupted_eval_keeps_its_finished_cells(sig, tiny_data, student16, interrupt_cli, cli_env,
                                                   tmp_path) -> None:
    out, reference = tmp_path / "rep", tmp_path / "ref"
    cli_ok(_eval_argv(student16, tiny_data / "test.bin", reference), cli_env)
    result = interrupt_cli(_eval_argv(student16, tiny_data / "test.bin", out),
                           "insightface_lr.eval.report:evaluate_cell:3", sig, tmp_path / "held")
    assert_stopped(result, f"insightface-lr eval: interrupted; finished cells are kept in {out / 'eval_cells'}; "
                            "re-run the same command to continue from them")
    assert len(list((out / "eval_cells").glob("*.json"))) == 2 and not (out / "results.json").exists()
    no_temporaries(out)
    again = cli_ok(_eval_argv(student16, tiny_data / "test.bin", out), cli_env)
    assert "reused 2 finished cell(s)" in again.stdout
    assert _eval_numbers(out) == _eval_numbers(reference)


