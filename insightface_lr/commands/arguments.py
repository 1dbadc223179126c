"""The command line's argument types for comma-separated values (``--lr-size 12,16``, ``--bins lfw,agedb_30``),
on the package's one parser (:mod:`insightface_lr.comma_lists`)."""

from __future__ import annotations

import argparse

from ..comma_lists import comma_ints, comma_list


def int_list_argument(text: str) -> tuple[int, ...]:
    """``argparse`` type for comma-separated integers (a bad value is argparse's one-line usage error)."""
    try:
        return comma_ints(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def name_list_argument(text: str) -> tuple[str, ...]:
    """``argparse`` type for comma-separated names (``--regimes same,subset``)."""
    return tuple(comma_list(text))
