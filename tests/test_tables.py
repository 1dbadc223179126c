"""Every results table of the README and docs/ is what scripts/render_tables.py renders from its committed summary;
a number typed by hand fails."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def script(load_script):
    return load_script("render_tables")


def test_every_table_agrees_with_its_summary(script) -> None:
    tables = script
    names = set(re.findall(r"<!-- table:([\w-]+) -->", (ROOT / "README.md").read_text(encoding="utf-8")))
    # the headline tables are generated ones
    assert {"synthetic", "synthetic_time", "pretrained", "real_subset"} <= names, names
    assert tables.check(ROOT) == []


def _copy(tmp_path: Path) -> Path:
    for path in [ROOT / "README.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("docs/**/summary.json")]:
        target = tmp_path / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return tmp_path


def test_a_number_changed_by_hand_fails_and_rendering_restores_it(script, tmp_path) -> None:
    tables = script
    root = _copy(tmp_path)
    readme = root / "README.md"
    text = readme.read_text(encoding="utf-8")
    block = re.search(r"<!-- table:real_subset -->\n(.*?)<!-- /table:real_subset -->", text, re.DOTALL)
    row = next(line for line in block.group(1).splitlines() if line.startswith("| aird |"))
    number = re.search(r"\d+\.\d", row.split("|")[4]).group(0)
    edited = row.replace(number, f"{float(number) + 0.1:.1f}", 1)
    readme.write_text(text.replace(row, edited), encoding="utf-8")
    faults = tables.check(root)
    assert len(faults) == 1 and "real_subset" in faults[0] and "README.md" in faults[0]
    assert tables.render(root) == [readme] and readme.read_text(encoding="utf-8") == text
    assert tables.check(root) == []


def test_a_table_without_a_renderer_must_be_an_empty_placeholder(script, tmp_path) -> None:
    tables = script
    root = _copy(tmp_path)
    readme = root / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8") + "\n<!-- table:nope -->\n<!-- /table:nope -->\n")
    assert tables.check(root) == []
    text = readme.read_text(encoding="utf-8")
    readme.write_text(text.replace("<!-- table:nope -->\n", "<!-- table:nope -->\n| 1 |\n"))
    assert tables.check(root) == ["README.md: table 'nope' has content but no renderer in scripts/render_tables.py"]
