"""Copy a finished demo run's report into docs/: what the README's generated tables are rendered from.

    python scripts/publish_run.py RUN_DIR docs/pretrained    # then: python scripts/render_tables.py

Writes ``DEST/summary.json`` (the run's ``results.json`` without its per-cell ``records``, which only the run folder
needs), ``DEST/report.md`` and the run's plots. Refuses a run without a ``results.json`` (one that has not
finished). Files are replaced whole, so an interrupted copy leaves the old report or the new one. Absolute paths
of the machine that ran it (``/work/shared/data/real_faces/dev.bin``) are cut to their last two parts
(``…/real_faces/dev.bin``): a committed report names the data, not someone's folders.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# an absolute POSIX path of two or more parts, not part of a URL, a word or a relative path
MACHINE_PATH = re.compile(r"(?<![\w.~:/…-])/(?:[\w.+-]+/)+[\w.+-]+")


def scrub_paths(text: str) -> str:
    """``text`` with each absolute path cut to ``…/`` and its last two parts."""
    return MACHINE_PATH.sub(lambda m: "…/" + "/".join(m.group(0).split("/")[-2:]), text)


PATH_FIELDS = {"settings": ("faces", "teacher_model", "test_bins"), "data": ("faces",)}


def without_paths(summary: dict) -> dict:
    """The summary with the run machine's file paths reduced to file names (a committed summary says which files,
    not where they lay on the machine that ran it)."""
    out = dict(summary)
    for section, fields in PATH_FIELDS.items():
        if isinstance(out.get(section), dict):
            part = dict(out[section])
            for name in fields:
                value = part.get(name)
                if isinstance(value, str) and value:
                    part[name] = Path(value).name
                elif isinstance(value, list):
                    part[name] = [Path(v).name for v in value]
            out[section] = part
    return out


def publish(run: Path, dest: Path) -> list[Path]:
    """The summary, report and plots of ``run`` written into ``dest``; returns the files written."""
    from insightface_lr.atomic import atomic_write_bytes

    results = run / "results.json"
    if not results.is_file():
        raise SystemExit(f"publish_run: {results} not found (expected a finished demo folder)")
    summary = without_paths({k: v for k, v in json.loads(results.read_text(encoding="utf-8")).items()
                             if k != "records"})
    dest.mkdir(parents=True, exist_ok=True)
    written = [dest / "summary.json"]
    atomic_write_bytes(written[0], scrub_paths(json.dumps(summary, indent=1) + "\n").encode())
    for source in [run / "report.md", *sorted(run.glob("*.png"))]:
        if source.is_file():
            data = source.read_bytes()
            if source.suffix == ".md":
                data = scrub_paths(data.decode()).encode()
            atomic_write_bytes(dest / source.name, data)
            written.append(dest / source.name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished demo --out folder")
    parser.add_argument("dest", type=Path, help="the docs folder, e.g. docs/pretrained")
    args = parser.parse_args(argv)
    for path in publish(args.run, args.dest):
        print(f"publish_run: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
