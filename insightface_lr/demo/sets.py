"""The names the demo's reports give its verification sets: ``test``/``shifted`` (synthetic) or the user's
test bins by file stem, then ``val`` (the tuning split) when there is one."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def report_bins(settings: dict[str, Any]) -> list[str]:
    """The demo names of the evaluated sets: test/shifted, or the user's test bins then val."""
    from ..eval.report import unique_names

    if not settings["faces"]:
        return ["test", "shifted"]
    names = unique_names([Path(p).stem for p in settings["test_bins"]])
    return names + (["val"] if settings["val_fraction"] else [])
