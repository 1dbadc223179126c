"""Output paths checked before any work: a command that would fail to write its result after an hour of
training or evaluation refuses at once, with one line naming the path.

Checking rights is not enough (``os.access`` says yes to root on a read-only mount), so the nearest existing
folder gets a real probe: a temporary file created and removed at once. Nothing else is created; the command
makes its folders when it writes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import ConfigError


def _nearest_existing(path: Path) -> Path:
    """``path`` itself or its closest ancestor that exists (a file in the way counts as existing)."""
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(path.anchor or ".")


def _check_folder_usable(folder: Path, flag: str, target: Path) -> None:
    """``folder`` (an existing path on the way to ``target``) must be a folder we can create files in."""
    if not folder.is_dir():
        raise ConfigError(f"{flag} {target}: {folder} is a file, not a folder (expected a writable folder path)")
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".insightface-lr-write-probe-"):
            pass
    except OSError as exc:
        raise ConfigError(f"{flag} {target}: cannot write in {folder} ({exc.strerror or exc})") from None


def check_output_dir(path: str | os.PathLike, flag: str) -> Path:
    """``path`` is a folder that exists and is writable, or can be created; ConfigError naming ``flag`` if not."""
    target = Path(path)
    _check_folder_usable(_nearest_existing(target.absolute()), flag, target)
    return target


def check_output_file(path: str | os.PathLike, flag: str) -> Path:
    """``path`` can be written as a file: not a folder, and its folder is writable or can be created."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{flag} {target}: is a folder (expected a file path)")
    _check_folder_usable(_nearest_existing(target.absolute().parent), flag, target)
    return target
