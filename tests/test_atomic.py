"""All-or-nothing writes: an error mid-write keeps the previous file and leaves no temporary behind."""

from __future__ import annotations

import pytest

from insightface_lr.atomic import atomic_output, atomic_path, atomic_write_bytes


def test_write_replaces_and_leaves_no_temporary(tmp_path) -> None:
    target = tmp_path / "sub" / "file.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


@pytest.mark.parametrize("writer", ["handle", "path"])
def test_error_mid_write_keeps_previous_content(tmp_path, writer) -> None:
    target = tmp_path / "model.pt"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError):
        if writer == "handle":
            with atomic_output(target) as handle:
                handle.write(b"half")
                raise RuntimeError("killed")
        else:
            with atomic_path(target) as tmp:
                tmp.write_bytes(b"half")
                raise RuntimeError("killed")
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_text_mode_writes_unix_line_ends(tmp_path) -> None:
    target = tmp_path / "train.idx"
    with atomic_output(target, "w") as handle:
        handle.write("1\t0\n2\t24\n")
    assert target.read_bytes() == b"1\t0\n2\t24\n"
