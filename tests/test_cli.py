"""The command line: --help lists the commands; importing the package has no side effects."""

from __future__ import annotations

import subprocess
import sys

import pytest

from insightface_lr import cli


def test_help_lists_every_command(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_import_has_no_side_effects() -> None:
    # no torch.distributed process group, no mxnet, no argument parsing on import
    code = (
        "import sys; sys.argv=['x','--bogus']; import insightface_lr; "
        "assert 'mxnet' not in sys.modules; assert 'torch' not in sys.modules; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "ok"


def test_every_public_name_resolves() -> None:
    import insightface_lr

    for name in insightface_lr.__all__:
        assert getattr(insightface_lr, name) is not None, name


def test_version(capsys) -> None:
    import insightface_lr

    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"insightface-lr {insightface_lr.__version__}"


def _subparsers():
    import argparse

    parser = cli.build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return parser, action.choices


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_help_shows_every_default_and_an_example_that_parses(name: str) -> None:
    import shlex

    parser, commands = _subparsers()
    sub = commands[name]
    text = " ".join(sub.format_help().split())  # argparse wraps lines; compare on single spaces
    for action in sub._actions:
        if action.default is None or action.help == "==SUPPRESS==" or not action.option_strings:
            continue
        if action.dest == "help":
            continue
        assert f"(default: {action.default})" in text, (name, action.dest, action.default)
    example = sub.format_help().split("example:\n", 1)[1].strip().splitlines()[0].strip()
    assert example.startswith(f"insightface-lr {name} ")
    assert parser.parse_args(shlex.split(example)[1:]).command == name  # the example is a valid command line


def test_export_opset_is_documented_and_checked(tmp_path, capsys) -> None:
    _, commands = _subparsers()
    text = " ".join(commands["export"].format_help().split())
    assert "--opset OPSET ONNX opset version written into the graph, 7..20" in text
    assert cli.main(["export", "--model", str(tmp_path / "m.pt"), "--out", str(tmp_path / "m.onnx"),
                     "--opset", "99"]) == 2
    assert "--opset 99: expected an ONNX opset in 7..20" in capsys.readouterr().err


def test_train_flags_name_the_field_they_override_and_its_default() -> None:
    from insightface_lr.commands.train import FLAG_FIELDS

    _, commands = _subparsers()
    text = " ".join(commands["train"].format_help().split())
    for field in FLAG_FIELDS.values():
        assert f"(default: the config's `{field}`, else" in text, field
    assert "(default: the config's `lr`, else 0.1)" in text and "(default: the config's `batch_size`, else 128)" in text


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_with_a_progress_bar_takes_no_progress(name: str) -> None:
    import inspect

    _, commands = _subparsers()
    source = inspect.getsource(cli._module(cli.COMMANDS[name][0]))
    shows_bars = "progress=" in source  # the commands hand their progress flag to the code that draws bars
    options = {s: a.dest for a in commands[name]._actions for s in a.option_strings}
    assert (options.get("--no-progress") == "no_progress") == shows_bars, name
