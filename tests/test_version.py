"""One version: the package's ``__version__``, ``--version``, setup.py's metadata and CHANGELOG.md's newest entry."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import insightface_lr

ROOT = Path(__file__).resolve().parents[1]


def test_setup_py_the_command_and_the_changelog_agree_with_the_package() -> None:
    version = insightface_lr.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    setup_version = subprocess.run([sys.executable, "setup.py", "--version"], cwd=ROOT, capture_output=True,
                                   text=True, check=True).stdout.strip().splitlines()[-1]
    command = subprocess.run([sys.executable, "-m", "insightface_lr", "--version"], capture_output=True, text=True,
                             check=True).stdout.strip()
    assert setup_version == version and command == f"insightface-lr {version}"
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    released = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$", changelog, re.MULTILINE)
    assert released and released[0][0] == version, released  # the newest dated entry is this version
    assert [d for _, d in released] == sorted((d for _, d in released), reverse=True)  # newest first
    assert not re.search(r"\bissues? \d|#\d", changelog), "the changelog speaks to users, not of issue numbers"
