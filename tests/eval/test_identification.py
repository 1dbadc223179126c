"""1:N identification: rank-k (CMC) and open-set DIR@FPIR on hand-made score matrices."""

from __future__ import annotations

import numpy as np
import pytest

from insightface_lr.errors import ConfigError, DataFormatError
from insightface_lr.eval.identification import cmc, cosine_scores, match_ranks, open_set

# 3 probes x 4 gallery entries; the last gallery entry is a distractor (label -1)
SCORES = np.array([
    [0.9, 0.1, 0.2, 0.3],  # probe of id 10: its mate is best -> rank 1
    [0.5, 0.4, 0.1, 0.6],  # probe of id 11: mate 0.4 beaten by 0.5 and the distractor 0.6 -> rank 3
    [0.1, 0.2, 0.3, 0.3],  # probe of id 12: mate 0.3 tied with the distractor -> rank 2 (ties count against)
])
PROBES = np.array([10, 11, 12])
GALLERY = np.array([10, 11, 12, -1])


def test_ranks_by_hand() -> None:
    assert match_ranks(SCORES, PROBES, GALLERY).tolist() == [1, 3, 2]
    assert cmc(SCORES, PROBES, GALLERY, ranks=(1, 2, 3, 20)) == {
        1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 3: 1.0, 20: 1.0}


def test_ranks_match_sorting_reference() -> None:
    """Random scores without ties: rank = position of the first mate in the descending sort."""
    rng = np.random.default_rng(0)
    gallery = np.r_[np.repeat(np.arange(6), 2), -np.ones(5, int)]  # 2 images per id + 5 distractors
    probes = rng.integers(0, 6, size=9)
    scores = rng.random((9, gallery.size))
    ranks = match_ranks(scores, probes, gallery)
    for i in range(9):
        order = np.argsort(-scores[i])
        assert ranks[i] == 1 + next(j for j, g in enumerate(order) if gallery[g] == probes[i])
    expected = {k: np.mean(ranks <= k) for k in (1, 5, 20)}
    assert cmc(scores, probes, gallery) == pytest.approx(expected)


def test_collapsed_scores_are_not_rewarded() -> None:
    scores = np.full((3, 4), 0.5)
    assert cmc(scores, PROBES, GALLERY, ranks=(1, 4)) == {1: 0.0, 4: 1.0}


def test_multiple_gallery_images_best_one_counts() -> None:
    assert match_ranks([[0.2, 0.8, 0.5]], [10], [10, 10, 11]).tolist() == [1]
    assert match_ranks([[0.2, 0.4, 0.5]], [10], [10, 10, 11]).tolist() == [2]


def test_closed_set_needs_mates() -> None:
    with pytest.raises(DataFormatError, match="1 of 3"):
        cmc(SCORES, [10, 11, 99], GALLERY)
    with pytest.raises(DataFormatError):
        cmc(SCORES[:, :3], PROBES, GALLERY)
    with pytest.raises(ConfigError):
        cmc(SCORES, PROBES, GALLERY, ranks=(0,))


def test_cosine_scores_normalise() -> None:
    p = np.array([[3.0, 0.0], [1.0, 1.0]])
    g = np.array([[0.0, 2.0], [5.0, 0.0], [-1.0, -1.0]])
    expected = np.array([[0.0, 1.0, -np.sqrt(0.5)], [np.sqrt(0.5), np.sqrt(0.5), -1.0]])
    np.testing.assert_allclose(cosine_scores(p, g, chunk=1), expected, atol=1e-6)
    with pytest.raises(DataFormatError):
        cosine_scores(p, np.ones((2, 3)))


def test_open_set_by_hand() -> None:
    gallery = np.array([1, 2, 3])
    probes = np.array([1, 2, 3, 7, 8, 9, 6, 5, 4, 0])  # 3 mated, 7 non-mated
    scores = np.zeros((10, 3))
    scores[0] = [0.90, 0.1, 0.1]  # mated, rank 1, score 0.90
    scores[1] = [0.1, 0.55, 0.1]  # mated, rank 1, score 0.55
    scores[2] = [0.1, 0.75, 0.6]  # mated (0.6), rank 2 -> never detected at rank 1
    tops = [0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]  # non-mated probes' top-1 scores
    scores[3:, 0] = tops
    res = open_set(scores, probes, gallery, fpirs=(0.0, 1 / 7, 3 / 7, 1.0), rank=1)
    # FPIR 0: threshold = highest non-mated top score 0.8 -> only the 0.90 mate passes
    assert res[0.0] == {"dir": pytest.approx(1 / 3), "threshold": 0.8, "fpir": 0.0}
    # FPIR 1/7: one alarm allowed -> threshold 0.7: 0.90 passes, 0.55 does not
    assert res[1 / 7]["threshold"] == 0.7 and res[1 / 7]["dir"] == pytest.approx(1 / 3)
    assert res[1 / 7]["fpir"] == pytest.approx(1 / 7)
    # FPIR 3/7: threshold 0.5 -> 0.90 and 0.55 pass; the rank-2 probe never counts
    assert res[3 / 7]["threshold"] == 0.5 and res[3 / 7]["dir"] == pytest.approx(2 / 3)
    assert res[1.0]["dir"] == pytest.approx(2 / 3) and res[1.0]["fpir"] == 1.0
    # at rank 2 the third probe (mate 0.6 > 0.5) is found too
    assert open_set(scores, probes, gallery, fpirs=(3 / 7,), rank=2)[3 / 7]["dir"] == 1.0


def test_open_set_needs_both_kinds_of_probes() -> None:
    with pytest.raises(DataFormatError, match="non-mated"):
        open_set(SCORES, PROBES, GALLERY)
    with pytest.raises(ConfigError):
        open_set(np.zeros((2, 1)), [1, 2], [1], fpirs=(2.0,))
