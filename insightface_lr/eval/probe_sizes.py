"""Which probe sizes an evaluation accepts; standard library only, so the command line checks them before
torch is imported (a second or more on a busy node)."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError

BIN_FACE_SIZE = 112  # side the .bin faces are decoded to (InsightFace's aligned crop)


def check_probe_sizes(sizes: Sequence[int], hr_size: int, flag: str = "--sizes") -> None:
    """A probe is the HR face down-sampled: a size above the ``hr_size`` face would be an up-sampled HR face,
    not a low-resolution probe (and costs the model a huge input for nothing)."""
    above = [int(s) for s in sizes if int(s) > hr_size]
    if above:
        raise ConfigError(f"{flag}: probe size(s) {above} px are above the {hr_size}-px HR face; expected sizes in "
                          f"1..{hr_size} (the probe is the face down-sampled to that size)")
