"""The command line's one parser of comma-separated values (``--lr-size 12,16``, ``--bins lfw,agedb_30``)."""

from __future__ import annotations

import argparse


def comma_list(text: str) -> list[str]:
    """``" a, b,,c "`` -> ``["a", "b", "c"]``: items stripped, empty ones dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def comma_ints(text: str) -> tuple[int, ...]:
    """``"12,16"`` -> ``(12, 16)``; ValueError on an item that is not an integer."""
    return tuple(int(item) for item in comma_list(text))


def int_list_argument(text: str) -> tuple[int, ...]:
    """``argparse`` type for comma-separated integers (a bad value is argparse's one-line usage error)."""
    try:
        return comma_ints(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def name_list_argument(text: str) -> tuple[str, ...]:
    """``argparse`` type for comma-separated names (``--regimes same,subset``)."""
    return tuple(comma_list(text))
