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
