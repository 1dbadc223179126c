"""The pixel convention: hand values, exact equivalences the old call sites relied on, one home in the code."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from insightface_lr.data.pixels import (
    ONNX_MEAN,
    ONNX_STD,
    denormalize,
    model_input_to_pixel_values,
    normalize,
    normalize_uint8,
    to_uint8,
    to_unit,
)

ALL_LEVELS = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(2, 3, 16, 16)
PACKAGE = Path(__file__).parents[2] / "insightface_lr"


def test_hand_values() -> None:
    x = torch.tensor([0, 51, 255], dtype=torch.uint8)
    torch.testing.assert_close(normalize_uint8(x), torch.tensor([-1.0, -0.6, 1.0]))
    assert (ONNX_MEAN, ONNX_STD) == (127.5, 127.5)  # insightface's default preprocessing
    torch.testing.assert_close(model_input_to_pixel_values(torch.tensor([-1.0, 0.0, 1.0])),
                               torch.tensor([0.0, 127.5, 255.0]))


def test_uint8_paths_are_bit_identical_to_insightface_formulas() -> None:
    insightface = (ALL_LEVELS.float() / 255 - 0.5) / 0.5  # ((img / 255) - 0.5) / 0.5
    assert torch.equal(normalize_uint8(ALL_LEVELS), insightface)
    assert torch.equal(normalize_uint8(ALL_LEVELS), ALL_LEVELS.float().div(127.5).sub(1.0))
    assert torch.equal(normalize(to_unit(ALL_LEVELS)), insightface)


def test_round_trips() -> None:
    assert torch.equal(to_uint8(to_unit(ALL_LEVELS)), ALL_LEVELS)
    torch.testing.assert_close(denormalize(normalize_uint8(ALL_LEVELS)), to_unit(ALL_LEVELS), rtol=0, atol=1e-7)
    assert float(denormalize(torch.tensor([-3.0, 3.0])).min()) == 0.0  # clipped to [0, 1]
    assert torch.equal(to_uint8(torch.tensor([-0.2, 0.5, 1.7])), torch.tensor([0, 128, 255], dtype=torch.uint8))
    pixels = model_input_to_pixel_values(normalize_uint8(ALL_LEVELS))
    assert np.array_equal(pixels.round().to(torch.uint8).numpy(), ALL_LEVELS.numpy())


def test_normalisation_constants_live_in_one_module() -> None:
    """No other module of the package writes the model-input normalisation itself."""
    pattern = re.compile(r"127\.5|255\.?0?\s*-\s*0\.5|-\s*0\.5\)\s*/\s*0\.5|\*\s*0\.5\s*\+\s*0\.5")
    offenders = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                 if path.name != "pixels.py" and pattern.search(path.read_text())]
    assert offenders == []
