"""Bad configs, flags and files: exit code 2 and ONE line naming the field or file and what was expected.

Most cases run ``insightface_lr.cli.main`` in this process (cheap: no interpreter start per case); one case
runs a real process to check the exit status and that no traceback reaches the user.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from insightface_lr.cli import COMMANDS, main


@pytest.fixture()
def cli(plugin_dir, capsys, monkeypatch):
    """``cli(args) -> (exit code, stderr)`` in-process, with the plugin backbone importable."""
    monkeypatch.syspath_prepend(str(plugin_dir))

    def run(args: list[str]) -> tuple[int, str]:
        code = main(args)
        return code, capsys.readouterr().err

    return run


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("insightface-lr "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


CONFIG_FILE_CASES = {
    "unknown_field": ("config.lr_szie = (16,)\n", ["unknown field `lr_szie`", "did you mean `lr_sizes`"]),
    "wrong_type": ("config.momentum = 'high'\n", ["field `momentum`", "expected float", "'high'"]),
    "fractional_int": ("config.seed = 1.5\n", ["field `seed`", "expected int, got 1.5"]),
    "wrong_arity": ("config.margin_list = (1.0, 0.5)\n", ["field `margin_list`", "expected 3 values"]),
    "not_a_list": ("config.val_sizes = 16\n", ["field `val_sizes`", "expected a list/tuple"]),
    "not_a_dict": ("config.degrade = [1, 2]\n", ["field `degrade`", "expected a dict"]),
    "no_config_object": ("cfg = {}\n", ["expected a module-level `config`"]),
    "raises": ("config.lr = 1 / 0\n", ["failed to execute", "ZeroDivisionError"]),
}


@pytest.mark.parametrize("case", sorted(CONFIG_FILE_CASES))
def test_bad_config_file(cli, tiny_data, train_args, tmp_path, case: str) -> None:
    body, needles = CONFIG_FILE_CASES[case]
    prelude = "" if case == "no_config_object" else "from easydict import EasyDict as edict\nconfig = edict()\n"
    config = _write(tmp_path / "configs" / f"{case}.py", prelude + body)
    args = train_args(tiny_data, tmp_path / "out", "--max-steps", "1")
    at = args.index("margin_list=(1.0, 0.3, 0.0)")  # let the file's own margin_list through
    args = args[:at - 1] + args[at + 1:]
    code, err = cli([args[0], str(config), *args[1:]])
    assert_one_line_error(code, err, str(config), *needles)


FLAG_CASES = {
    "unknown_set_field": (["--set", "distil='aird'"], ["unknown field `distil`", "did you mean `distill`"]),
    "wrong_type_set": (["--set", "lr='fast'"], ["field `lr`", "expected float"]),
    "bool_for_int": (["--set", "checkpoint_every=True"], ["field `checkpoint_every`", "expected int"]),
    "set_without_value": (["--set", "lr"], ["--set 'lr': expected FIELD=VALUE"]),
    "lr_size_above_input": (["--lr-size", "200"], ["field `lr_sizes`", "LR size 200", "4..112"]),
    "lr_size_too_small": (["--lr-size", "2"], ["LR size 2"]),
    "num_classes_vs_rec": (["--set", "num_classes=7"], ["field `num_classes`: config says 7", "6 identities"]),
    "batch_larger_than_data": (["--batch-size", "1000"], ["field `batch_size`", "fewer than one batch"]),
    "unknown_network": (["--network", "r999"], ["r999"]),
    "unknown_plugin": (["--set", "plugins=['no_such_plugin_mod']"], ["field `plugins`", "no_such_plugin_mod"]),
    "unknown_degrade_option": (["--set", "degrade={'blurr': 1.0}"], ["field `degrade`", "blurr"]),
    "unknown_loss": (["--distill", "aird+foo", "--teacher", "TEACHER"], ["unknown distillation term 'foo'"]),
    "distill_without_teacher": (["--distill", "aird"], ["field `teacher`"]),
    "bad_margin_mode": (["--set", "margin_mode='fancy'"], ["field `margin_mode`", "'insightface' or 'exact'"]),
    "bad_optimizer": (["--set", "optimizer='rmsprop'"], ["field `optimizer`", "'sgd' or 'adamw'"]),
}


@pytest.mark.parametrize("case", sorted(FLAG_CASES))
def test_bad_flags(cli, tiny_data, tiny_teacher, train_args, tmp_path, case: str) -> None:
    extra, needles = FLAG_CASES[case]
    extra = [str(tiny_teacher) if e == "TEACHER" else e for e in extra]
    code, err = cli(train_args(tiny_data, tmp_path / "out", "--max-steps", "1", *extra))
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "out" / "student.pt").exists()


def test_unparsable_flag_value_is_an_argparse_error(cli, tiny_data, train_args, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli(train_args(tiny_data, tmp_path / "out", "--lr-size", "sixteen"))
    assert info.value.code == 2
    assert "expected comma-separated integers, got 'sixteen'" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only machine's message")
def test_cuda_requested_without_cuda(cli, tiny_data, train_args, tmp_path) -> None:
    code, err = cli(train_args(tiny_data, tmp_path / "out", "--device", "cuda", "--max-steps", "1"))
    assert_one_line_error(code, err, "field `device`", "no CUDA device")


# ----- missing and corrupt files -----------------------------------------------------------------------
def _corrupt_teachers(tiny_teacher: Path, folder: Path) -> dict[str, Path]:
    data = tiny_teacher.read_bytes()
    files = {"garbage.pt": b"this is not a zip file" * 20, "truncated.pt": data[: len(data) // 2],
             "empty.pt": b"", "flipped.pt": data[:200] + bytes(b ^ 0xFF for b in data[200:400]) + data[400:]}
    for name, blob in files.items():
        (folder / name).write_bytes(blob)
    torch.save({"weights": [1, 2, 3]}, folder / "no_state_dict.pt")  # loads, but holds no network
    return {name: folder / name for name in [*files, "no_state_dict.pt"]}


@pytest.mark.parametrize("name", ["garbage.pt", "truncated.pt", "empty.pt", "flipped.pt", "no_state_dict.pt"])
def test_corrupt_teacher_file(cli, tiny_data, tiny_teacher, train_args, tmp_path, name: str) -> None:
    teacher = _corrupt_teachers(tiny_teacher, tmp_path)[name]
    code, err = cli(train_args(tiny_data, tmp_path / "out", "--distill", "aird", "--teacher", str(teacher),
                               "--max-steps", "1"))
    assert_one_line_error(code, err, str(teacher))


MISSING = {
    "config": lambda d, t, o: ["train", str(o / "nope.py")],
    "rec": lambda d, t, o: ["train", "--rec", str(o / "no_data"), "--max-steps", "1"],
    "teacher": lambda d, t, o: ["train", "--rec", str(d), "--distill", "kd", "--teacher", str(o / "t.pth")],
    "eval_bins": lambda d, t, o: ["eval", "--model", str(t), "--bins", f"{d / 'test.bin'},{o / 'lfw.bin'}"],
    "eval_model": lambda d, t, o: ["eval", "--model", str(o / "m.pt"), "--bins", str(d / "test.bin")],
    "export_model": lambda d, t, o: ["export", "--model", str(o / "m.pt"), "--out", str(o / "m.onnx")],
    "info_file": lambda d, t, o: ["info", str(o / "train.rec")],
}
MISSING_NAMES = {"config": "nope.py", "rec": "no_data", "teacher": "t.pth", "eval_bins": "lfw.bin",
                 "eval_model": "m.pt", "export_model": "m.pt", "info_file": "train.rec"}


@pytest.mark.parametrize("case", sorted(MISSING))
def test_missing_files(cli, tiny_data, tiny_teacher, tmp_path, case: str) -> None:
    args = MISSING[case](tiny_data, tiny_teacher, tmp_path)
    if args[0] not in COMMANDS:
        pytest.skip(f"command {args[0]!r} is not registered in this checkout")
    code, err = cli(args)
    assert_one_line_error(code, err, MISSING_NAMES[case])


# ----- a wider teacher is adapted, not refused ------------------------------------------------------------
@pytest.mark.parametrize("method", ["aird", "feat"])
def test_teacher_wider_than_student_is_adapted(cli, tiny_data, wide_teacher, train_args, tmp_path, method) -> None:
    """A 32-d teacher with a 16-d student: the distiller owns a 16 -> 32 linear adaptor, so training runs
    and the adaptor's weights are in the checkpoint (and they moved: they are trained)."""
    out = tmp_path / method
    code, err = cli(train_args(tiny_data, out, "--distill", method, "--teacher", str(wide_teacher),
                               "--max-steps", "2", "--set", "checkpoint_every=1"))
    assert code == 0, err
    first = torch.load(out / "checkpoints" / "step00000001_rank0.pt", weights_only=True)["distiller"]
    last = torch.load(out / "checkpoints" / "step00000002_rank0.pt", weights_only=True)["distiller"]
    adaptors = [k for k, v in last.items() if tuple(v.shape) == (32, 16)]
    assert adaptors, f"no [32, 16] adaptor among {[(k, tuple(v.shape)) for k, v in last.items()]}"
    assert all(not torch.equal(first[k], last[k]) for k in adaptors)


def test_real_process_exit_code_and_no_traceback(run_cli, tiny_data, tiny_teacher, train_args, tmp_path) -> None:
    teacher = _corrupt_teachers(tiny_teacher, tmp_path)["truncated.pt"]
    result = run_cli(train_args(tiny_data, tmp_path / "out", "--distill", "aird", "--teacher", str(teacher)))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert_one_line_error(result.returncode, result.stderr, "truncated.pt", "weights_only=True")
