"""The API reference (scripts/build_api_docs.py, pdoc) builds with every public name documented and no dead link;
and its checks catch both faults."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def script(load_script):
    return load_script("build_api_docs")


def test_reference_builds_with_every_public_name_documented_and_no_dead_link(script, tmp_path) -> None:
    docs = script
    objects = docs.public_objects()
    assert "insightface_lr.Trainer" in objects and "insightface_lr.registry.register_distill_term" in objects
    assert "insightface_lr.losses.distiller.DistillTerm" in objects
    assert docs.missing_docstrings(objects) == []
    assert docs.build(tmp_path) == []  # pdoc resolved every name of __all__
    pages = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.html")}
    assert {"insightface_lr.html", "insightface_lr/registry.html", "insightface_lr/losses/distiller.html"} <= pages
    assert 'id="Trainer"' in (tmp_path / "insightface_lr.html").read_text()
    assert docs.dead_links(tmp_path) == []


def undocumented(x: int) -> int:
    return x


class _Net:
    """A documented class."""

    def forward(self, x):
        return x

    def helper(self):
        return None


def test_the_checks_catch_a_missing_docstring_and_dead_links(script, tmp_path) -> None:
    docs = script
    objects = {"m.undocumented": undocumented, "m.documented": docs.build, "m.VERSION": "1.0",
               "m._Net": _Net, "m._Net.forward": (_Net, "forward", _Net.forward),
               "m._Net.helper": (_Net, "helper", _Net.helper)}
    assert docs.missing_docstrings(objects) == ["m.undocumented", "m._Net.forward", "m._Net.helper"]
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.html").write_text('<h1 id="top">a</h1><a href="sub/b.html#here">ok</a><a href="#top">ok</a>'
                                     '<a href="https://example.org/x">web</a><a href="gone.html">dead</a>')
    (tmp_path / "sub" / "b.html").write_text('<p id="here">b</p><a href="../a.html#nowhere">dead</a>')
    assert sorted(docs.dead_links(tmp_path)) == ["a.html: gone.html (no such page)",
                                                 "sub/b.html: ../a.html#nowhere (no anchor 'nowhere')"]
