"""Block-wise probe statistics equal the whole-matrix helpers of ``eval/identification.py``, whatever the block."""

from __future__ import annotations

import numpy as np
import pytest

from insightface_lr.eval import identification
from insightface_lr.eval.protocols import ranking


@pytest.mark.parametrize("block_scores", [7, 50, 2**23])
def test_blocks_equal_the_whole_score_matrix(monkeypatch, block_scores: int) -> None:
    rng = np.random.default_rng(4)
    gallery = rng.normal(size=(30, 8))
    gallery_labels = np.r_[np.arange(10).repeat(2), -np.ones(10, int)]  # 2 faces per id + 10 distractors
    probe_labels = np.r_[rng.integers(0, 10, 20), -np.ones(5, int)]  # 20 mated, 5 unmated probes
    probes = np.r_[gallery[2 * probe_labels[:20]] + rng.normal(scale=0.9, size=(20, 8)), rng.normal(size=(5, 8))]
    monkeypatch.setattr(ranking, "BLOCK_SCORES", block_scores)
    stats = ranking.probe_stats(probes, probe_labels, gallery, gallery_labels)
    scores = identification.cosine_scores(probes, gallery)
    np.testing.assert_array_equal(stats.ranks, identification.match_ranks(scores, probe_labels, gallery_labels))
    fpirs = (0.2, 0.6, 1.0)
    expected = identification.open_set(scores, probe_labels, gallery_labels, fpirs=fpirs, rank=3)
    found = stats.open_set(fpirs, rank=3)
    for fpir in fpirs:
        assert found[fpir] == pytest.approx(expected[fpir], abs=1e-6)
    assert 0 < found[0.6]["dir"] < found[1.0]["dir"]  # a case where the threshold and the rank both matter
    mated = probe_labels >= 0
    closed = ranking.probe_stats(probes[mated], probe_labels[mated], gallery, gallery_labels)
    assert closed.cmc((1, 5)) == identification.cmc(scores[mated], probe_labels[mated], gallery_labels, ranks=(1, 5))
