"""The README's promises a user can check: its Python API example runs as written, and it only points at
files the repository has (a clone has no ../shared)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def api_example() -> str:
    match = re.search(r"<!-- api-example -->\n```python\n(.*?)```\n<!-- /api-example -->", README, re.DOTALL)
    assert match, "README.md has no api-example block"
    return match.group(1)


def test_api_example_runs_as_written(tmp_path) -> None:
    script = tmp_path / "example.py"
    script.write_text(api_example())
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600,
                            cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "torch.Size([8, 32])" and lines[-1] == "student16.onnx"
    assert "'aird/loss'" in lines[1] and lines[2] == "torch.Size([8, 32])"


def test_api_example_uses_the_named_api() -> None:
    code = api_example()
    for name in ("load_teacher", "FaceBN", "build_distiller", "Trainer", "export_onnx"):
        assert re.search(rf"\b{name}\(", code), name


def test_no_link_leaves_the_repository() -> None:
    assert "../" not in README and "shared/design" not in README
    targets = re.findall(r"\]\(([^)]+)\)", README) + re.findall(r"`((?:docs|recipes|benchmarks|scripts)/[^`\s]+)`",
                                                                 README)
    local = [t for t in targets if not t.startswith(("http://", "https://", "#"))]
    assert local, "expected links to repository files"
    missing = [t for t in local if "<" not in t and "*" not in t and not (ROOT / t).exists()]
    assert not missing, missing
