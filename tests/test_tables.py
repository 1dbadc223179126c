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


def _marked(text: str, name: str) -> list[list[str]]:
    """The cells of table ``name`` (header and rows, the ``|---|`` line left out)."""
    block = re.search(rf"<!-- table:{name} -->\n(.*?)<!-- /table:{name} -->", text, re.DOTALL).group(1)
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in block.strip().splitlines()
            if not line.startswith("|---")]


def _expected_cell(summary: dict, method: str, regime: str, bin_name: str, facebn: str) -> tuple[str, int]:
    """Mean ± sample std over seeds of one cell, computed here from the summary's per-seed ``values``."""
    import statistics

    size = summary["settings"]["headline_size"]
    found = [a for a in summary["aggregate"] if a["method"] == method and a["bin"] == bin_name
             and a["size"] == size and a["facebn"] == facebn
             and a["regime"] == ("teacher" if method == "teacher" else regime)
             and (method == "teacher" or a["lr_size"] == size)]
    assert len(found) == 1, (method, regime, bin_name, facebn, len(found))
    values = found[0]["values"]
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.1f}", 1
    return f"{mean:.1f} ± {statistics.stdev(values):.1f}", len(values)


@pytest.mark.parametrize(("page", "name", "regime", "facebn", "weights"), [
    ("README.md", "real_subset", "subset", "calibrate", True),
    ("docs/real_faces.md", "real_subset", "subset", "calibrate", True),
    ("docs/real_faces.md", "real_same", "same", "batch", False),
])
def test_real_face_tables_hold_the_summarys_values(page, name, regime, facebn, weights) -> None:
    """Each cell against the summary JSON read here (not through the renderer): a renderer that swapped columns,
    regimes or FaceBN modes, or took the wrong statistic, agrees with its own output but not with this."""
    import json

    summary = json.loads((ROOT / "docs/real_faces/summary.json").read_text(encoding="utf-8"))
    head, *rows = _marked((ROOT / page).read_text(encoding="utf-8"), name)
    bins = [c[: -len(".bin")] for c in head if c.endswith(".bin")]
    assert head[-1] == "val.bin" and f"{bins[0]}.bin + FaceBN {facebn}" in head
    columns = [(b, f) for b in bins if b != "val" for f in ("off", facebn)] + [("val", "off")]
    assert [m for m, *_ in rows][1:] == [m for m in ("none", "kd", "feat", "rkd", "aird", "ccface", "bridge")
                                         if m in summary["settings"]["methods"]]
    for row in rows:
        method = "teacher" if row[0].startswith("teacher") else row[0]
        cells = [_expected_cell(summary, method, regime, b, f) for b, f in columns]
        assert row[-len(columns):] == [text for text, _ in cells], row
        assert row[1] == str(max(n for _, n in cells))
        if weights:
            chosen = summary.get("tuning", {}).get(method, {}).get("weight")
            assert row[2] == ("" if chosen is None else f"{chosen:g}"), row
