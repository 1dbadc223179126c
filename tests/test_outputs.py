"""Output paths are checked before any work: a file in the way, a folder given as a file, an unwritable folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from insightface_lr.errors import ConfigError
from insightface_lr.outputs import check_output_dir, check_output_file


def test_new_nested_folder_is_fine_and_nothing_is_created(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c"
    assert check_output_dir(target, "--out") == target
    assert check_output_file(tmp_path / "x" / "m.onnx", "--out") == tmp_path / "x" / "m.onnx"
    assert sorted(tmp_path.iterdir()) == []  # the probe file is gone and no folder was made


def test_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    for path in (tmp_path / "afile", tmp_path / "afile" / "deeper" / "out"):
        with pytest.raises(ConfigError, match=r"--output .*afile is a file, not a folder"):
            check_output_dir(path, "--output")
    with pytest.raises(ConfigError, match="afile is a file, not a folder"):
        check_output_file(tmp_path / "afile" / "m.onnx", "--out")


def test_a_folder_where_a_file_is_expected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--out .*: is a folder \(expected a file path\)"):
        check_output_file(tmp_path, "--out")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_a_read_only_folder(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match=r"cannot write in .*locked"):
            check_output_dir(locked / "run", "--out")
    finally:
        locked.chmod(0o700)


def test_the_probe_is_a_real_write(tmp_path: Path, monkeypatch) -> None:
    """os.access says yes to root on a read-only mount; the check creates a file, so a failing create fails it."""
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(ConfigError, match=r"cannot write in .*\(Read-only file system\)"):
        check_output_dir(tmp_path / "run", "--out")
