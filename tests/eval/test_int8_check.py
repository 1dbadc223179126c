"""The int8 held-out verdict accounts for its own noise: a drop is refused only beyond ``--int8-max-drop`` plus the
paired standard error of the accuracy change (computed by hand here)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from insightface_lr.eval.int8_check import paired_standard_error, refuses


def _pairs(total: int, lost: int, gained: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair correctness of float32 and int8 on ``total`` pairs: int8 gets ``lost`` pairs wrong that float32
    got right and ``gained`` the other way round; the rest (90 % right) agree."""
    float_ok = np.arange(total) % 10 != 0
    int8_ok = float_ok.copy()
    right = np.flatnonzero(float_ok)
    wrong = np.flatnonzero(~float_ok)
    int8_ok[right[:lost]] = False
    int8_ok[wrong[:gained]] = True
    return float_ok, int8_ok


@pytest.mark.parametrize(("lost", "gained", "se", "refused"), [
    # 400 pairs, both ways a drop of 1.00 point (float 90.00 %, int8 89.00 %) against --int8-max-drop 0.5:
    # 4 pairs lost, none gained: d has four -1s; var = (4 - 400 * 0.01**2) / 399 = 0.0099248;
    # s.e. = 100 * sqrt(0.0099248 / 400) = 0.498 points: 1.00 > 0.5 + 0.498, refused
    (4, 0, 0.49812, True),
    # 5 lost, 1 gained: the same change, but the graphs disagree on more pairs; var = (6 - 0.04) / 399 = 0.014937,
    # s.e. = 100 * sqrt(0.014937 / 400) = 0.611 points: 1.00 <= 0.5 + 0.611, kept (the old rule refused it)
    (5, 1, 0.61109, False),
])
def test_the_verdict_flips_with_the_paired_standard_error(lost, gained, se, refused) -> None:
    float_ok, int8_ok = _pairs(400, lost, gained)
    change = 100 * (int8_ok.mean() - float_ok.mean())
    assert change == pytest.approx(-1.0)
    got = paired_standard_error(float_ok, int8_ok)
    assert got == pytest.approx(se, abs=5e-5)
    assert refuses(change, got, max_drop=0.5) is refused
    assert refuses(change, got, max_drop=math.inf) is False  # inf: report only


def test_identical_graphs_have_no_noise_and_any_drop_beyond_the_bound_is_refused() -> None:
    float_ok, _ = _pairs(100, 0, 0)
    assert paired_standard_error(float_ok, float_ok) == 0.0
    assert refuses(-0.51, 0.0, 0.5) and not refuses(-0.5, 0.0, 0.5)


def test_per_pair_correctness_adds_up_to_the_reported_accuracy(monkeypatch) -> None:
    """Each pair judged by its fold's threshold: with equal folds the fraction right is the 10-fold accuracy."""
    import insightface_lr.eval.int8_check as check

    rng = np.random.default_rng(0)
    issame = np.tile([True, False], 50)
    emb = rng.normal(size=(200, 8))
    emb[1::2][issame] = emb[0::2][issame] + rng.normal(scale=0.8, size=(50, 8))  # genuine pairs closer
    monkeypatch.setattr(check, "embed_onnx", lambda path, x: emb)
    accuracy, correct = check.pair_correctness("graph.onnx", np.zeros((200, 3, 2, 2), np.float32), issame)
    assert correct.shape == (100,) and 60 < accuracy < 100
    assert 100 * correct.mean() == pytest.approx(accuracy)
