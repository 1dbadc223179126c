"""All-or-nothing file writes, shared by every writer in the package (checkpoints, .rec/.idx, .bin,
student/ONNX files, reports).

The data goes to a temporary sibling (same file system, so the final rename is atomic), is flushed and
fsync'ed, and only then renamed over the final name; on error the temporary file is removed. A reader
(or a run resumed after SIGKILL) sees the previous file or the new one, never a torn one.
Standard library only: the optional mxnet lane imports ``data/recordio.py`` without torch or numpy.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO


def _temporary_sibling(final: Path) -> Path:
    return final.with_name(f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; some file systems refuse to open directories, which is fine."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_path(p) as tmp:`` write ``tmp`` by path (``torch.save``, ONNX export); it is fsync'ed
    and renamed onto ``p`` on success, removed on error."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(final)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        _fsync_directory(final.parent)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(tmp)


@contextmanager
def atomic_output(final: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """``with atomic_output(p, "wb") as fh:`` write through an open handle; all-or-nothing as above.
    Text modes write ASCII with ``\\n`` line ends (the ``.idx`` and ``property`` formats)."""
    with atomic_path(final) as tmp:
        # mode 0o666 lets the umask apply as for a plain open() (mkstemp would make the file private)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "ascii", "newline": "\n"})) as handle:
            yield handle


def atomic_write_bytes(final: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``final`` all-or-nothing."""
    with atomic_output(final, "wb") as handle:
        handle.write(data)
    return Path(final)
