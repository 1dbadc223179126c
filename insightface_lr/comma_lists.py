"""The one parser of comma-separated values (``--lr-size 12,16``, ``--sizes native,16,8``): plain text, no torch,
so the command line (``commands/arguments.py``) and the evaluation protocols both use it before anything heavy."""

from __future__ import annotations


def comma_list(text: str) -> list[str]:
    """``" a, b,,c "`` -> ``["a", "b", "c"]``: items stripped, empty ones dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def comma_ints(text: str) -> tuple[int, ...]:
    """``"12,16"`` -> ``(12, 16)``; ValueError on an item that is not an integer."""
    return tuple(int(item) for item in comma_list(text))


__all__ = ["comma_ints", "comma_list"]
