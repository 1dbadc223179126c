"""Build the API reference from the public API's docstrings (pdoc) and check it.

    python scripts/build_api_docs.py [--out docs/api]   # HTML; open docs/api/index.html

What is documented: ``insightface_lr`` (the names of its ``__all__``) and the extension points a plugin author
writes against (:data:`EXTENSION_MODULES`: the registries and their decorators, the distillation-term interface,
the backbone factory contract). The build fails (exit 1, one line per fault) on a public name without a
docstring (a public method of a documented class included; ``forward`` must say its own shapes) or a link in
the generated pages that points at no page or anchor. Why pdoc: one dependency that reads the docstrings and
type hints of the live modules, with no site configuration or hand-written stub pages to drift from the code.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "insightface_lr"
EXTENSION_MODULES = ("insightface_lr.registry", "insightface_lr.losses.distiller", "insightface_lr.models.factory")
OWN_DOC_REQUIRED = ("forward",)  # an nn.Module's forward must document its own shapes, not inherit torch's text


def public_objects() -> dict[str, object]:
    """``qualified name -> object`` of every documented public name: the package's ``__all__`` and each extension
    module's ``__all__`` (or, without one, the functions and classes it defines), with their classes' public
    methods and properties."""
    found: dict[str, object] = {}
    package = importlib.import_module(PACKAGE)
    tops = {f"{PACKAGE}.{n}": getattr(package, n) for n in package.__all__ if not n.startswith("__")}
    for name in EXTENSION_MODULES:
        module = importlib.import_module(name)
        names = getattr(module, "__all__", None) or [
            k for k, v in vars(module).items()
            if not k.startswith("_") and (inspect.isfunction(v) or inspect.isclass(v)) and v.__module__ == name]
        tops.update({f"{name}.{n}": getattr(module, n) for n in names})
    for qualname, obj in tops.items():
        found[qualname] = obj
        if inspect.isclass(obj):
            for attr, value in vars(obj).items():
                if attr.startswith("_"):
                    continue
                member = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
                if inspect.isfunction(member):
                    found[f"{qualname}.{attr}"] = (obj, attr, member)
    return found


def missing_docstrings(objects: dict[str, object] | None = None) -> list[str]:
    """Qualified names of public objects without a docstring (a method may inherit its base class's text,
    except :data:`OWN_DOC_REQUIRED`)."""
    missing = []
    for qualname, obj in (public_objects() if objects is None else objects).items():
        if isinstance(obj, tuple):
            cls, attr, member = obj
            own = (member.__doc__ or "").strip()
            inherited = "" if attr in OWN_DOC_REQUIRED else (inspect.getdoc(getattr(cls, attr, None)) or "")
            documented = own or inherited.strip()
        elif isinstance(obj, (str, int, float, bool, tuple, list, dict)) or obj is None:
            continue  # constants (a version string) carry no docstring of their own
        else:
            documented = (getattr(obj, "__doc__", None) or "").strip()
        if not documented:
            missing.append(qualname)
    return missing


def build(out: Path) -> list[str]:
    """Render the reference into ``out`` (HTML, one page per module, cross-linked); returns pdoc's warnings
    (e.g. a name of ``__all__`` that does not resolve), each a fault."""
    import warnings

    import pdoc
    import pdoc.render

    package = importlib.import_module(PACKAGE)
    for name in package.__all__:  # the package resolves its names lazily (PEP 562); pdoc reads the namespace
        setattr(package, name, getattr(package, name))
    pdoc.render.configure(docformat="restructuredtext", show_source=False, search=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(PACKAGE, f"!{PACKAGE}.", *EXTENSION_MODULES, output_directory=out)
    return [str(w.message) for w in caught if w.filename.startswith(str(Path(pdoc.__file__).parent))]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"] or "")
        if tag == "a" and values.get("href"):
            self.hrefs.append(values["href"] or "")


def dead_links(out: Path) -> list[str]:
    """``page: href`` for every link of the generated pages that names a missing page or anchor (web addresses
    are not fetched: the check runs offline)."""
    pages = {path.resolve(): path for path in out.rglob("*.html")}
    parsed = {}
    for path in pages:
        parser = _Links()
        parser.feed(path.read_text(encoding="utf-8"))
        parsed[path] = parser
    dead = []
    for path, parser in parsed.items():
        for href in parser.hrefs:
            parts = urlsplit(href)
            if parts.scheme or href.startswith("//") or href.startswith("mailto:"):
                continue
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            fragment = unquote(parts.fragment)
            if target not in parsed and not target.exists():
                dead.append(f"{path.relative_to(out.resolve())}: {href} (no such page)")
            elif fragment and target in parsed and fragment not in parsed[target].ids:
                dead.append(f"{path.relative_to(out.resolve())}: {href} (no anchor {fragment!r})")
    return dead


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "api", help="output folder (gitignored)")
    args = parser.parse_args(argv)
    faults = [f"no docstring: {name}" for name in missing_docstrings()]
    faults += [f"pdoc: {warning}" for warning in build(args.out)]
    faults += [f"dead link: {link}" for link in dead_links(args.out)]
    for fault in faults:
        print(f"build_api_docs: {fault}", file=sys.stderr)
    pages = len(list(args.out.rglob("*.html")))
    print(f"build_api_docs: {pages} pages in {args.out}" + (f", {len(faults)} faults" if faults else ", no faults"))
    return 1 if faults else 0


if __name__ == "__main__":
    sys.exit(main())
