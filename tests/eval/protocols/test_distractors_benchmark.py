"""``benchmarks/distractors.py`` runs end to end on ``--tiny`` settings: every figure is there, positive, and the
printed ratio is the ratio of the printed rates (speed itself is measured by the script, never asserted)."""

from __future__ import annotations

import json
import math

import pytest
import torch


def test_distractors_script(tmp_path) -> None:
    from benchmarks import distractors

    saved = torch.get_num_threads()
    try:
        out = tmp_path / "distractors.json"
        assert distractors.main(["--tiny", "--out", str(out), "--workers", "1", "--data", str(tmp_path / "d")]) == 0
    finally:
        torch.set_num_threads(saved)
    data = json.loads(out.read_text())
    assert data["images"] == 300 and data["machine"]["torch_threads"] == 1
    for key in ("pipeline_images_per_s", "model_images_per_s", "eager_model_images_per_s", "loader_images_per_s"):
        assert math.isfinite(data[key]) and data[key] > 0
    assert data["pipeline_to_model"] == pytest.approx(data["pipeline_images_per_s"] / data["model_images_per_s"])
    assert data["pipeline_images_per_s"] == pytest.approx(300 / data["pipeline_s"])
    assert not (tmp_path / "d").exists()  # the generated images are removed unless --keep
