"""Paired bootstrap differences (eval.paired): intervals and verdicts computed by hand, an exact enumeration
as the independent reference, and the per-pair bits the protocol exports."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from insightface_lr.errors import DataFormatError
from insightface_lr.eval.paired import pack_bits, paired_difference, unpack_bits, verdict
from insightface_lr.eval.probes import distinct_faces
from insightface_lr.eval.verification import kfold_ids, verification_metrics


def one_fold(diff: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``left``/``right`` outcomes of one seed whose per-pair difference is ``diff``, all in one fold."""
    d = np.array(diff)
    left = (d > 0).astype(int)[None]
    right = (d < 0).astype(int)[None]
    return left, right, np.zeros(d.size, int)


def test_constant_difference_gives_a_point_interval():
    # every pair of every seed +1: each replicate is +100 points, the interval is [100, 100]
    left, right = np.ones((3, 20)), np.zeros((3, 20))
    result = paired_difference(left, right, kfold_ids(20, 10))
    assert (result.difference, result.low, result.high, result.verdict) == (100.0, 100.0, 100.0, "better")
    assert result.per_seed == (100.0, 100.0, 100.0) and result.shown


def test_two_pairs_by_hand_is_a_tie():
    # d = (1, 0): a replicate draws 2 of them: mean 0 (p 1/4), 0.5 (1/2), 1 (1/4) -> 2.5 % quantile 0, 97.5 % 1
    result = paired_difference(*one_fold([1, 0]))
    assert result.difference == 50.0
    assert (result.low, result.high) == (0.0, 100.0)
    assert result.verdict == "tie" and not result.shown


def test_verdict_flips_when_the_interval_leaves_zero():
    # d = (1, 1, 1, 0): all four draws are the 0 with p (1/4)^4 = 0.4 % < 2.5 %: the lowest value left is 25
    better = paired_difference(*one_fold([1, 1, 1, 0]))
    assert better.low == 25.0 and better.verdict == "better"
    # d = (1, 0, 0, 0): all draws 0 with p (3/4)^4 = 32 %: the interval starts at 0 -> a tie
    tie = paired_difference(*one_fold([1, 0, 0, 0]))
    assert tie.low == 0.0 and tie.verdict == "tie"
    # and the mirror image is shown worse
    worse = paired_difference(*one_fold([-1, -1, -1, 0]))
    assert worse.high == -25.0 and worse.verdict == "worse"


def test_seed_level_noise_is_in_the_interval():
    # two seeds, one +1 on every pair, one -1: the pairs say nothing, the seeds disagree -> {-100, 0, 100}, a tie
    left = np.array([[1, 1, 1, 1], [0, 0, 0, 0]])
    right = 1 - left
    result = paired_difference(left, right, np.zeros(4, int))
    assert result.difference == 0.0 and (result.low, result.high) == (-100.0, 100.0)
    assert result.per_seed == (100.0, -100.0) and result.verdict == "tie"


def test_monte_carlo_matches_exact_enumeration():
    # independent reference: every one of the 5^5 resamples of a 5-pair fold, weighted equally
    d = np.array([1, 1, 0, -1, 1])
    exact = np.sort([100.0 * d[list(draw)].mean() for draw in itertools.product(range(5), repeat=5)])
    low, high = np.quantile(exact, [0.025, 0.975])
    result = paired_difference((d > 0)[None].astype(int), (d < 0)[None].astype(int), np.zeros(5, int),
                               replicates=20000)
    assert result.difference == pytest.approx(100.0 * d.mean())
    assert (result.low, result.high) == (low, high) == (-40.0, 100.0)


def test_folds_weigh_equally_and_pairs_resample_within_them():
    # fold 0 (2 pairs) all +1, fold 1 (4 pairs) all 0: the protocol's number is the mean of fold means = 50,
    # and resampling within folds never mixes them: every replicate is exactly 50
    left = np.array([[1, 1, 0, 0, 0, 0]])
    right = np.zeros_like(left)
    result = paired_difference(left, right, np.array([0, 0, 1, 1, 1, 1]))
    assert (result.difference, result.low, result.high) == (50.0, 50.0, 50.0)


def test_same_inputs_same_interval_and_bad_shapes_refused():
    rng = np.random.default_rng(3)
    left, right = rng.integers(0, 2, (3, 60)), rng.integers(0, 2, (3, 60))
    folds = kfold_ids(60, 10)
    assert paired_difference(left, right, folds) == paired_difference(left, right, folds)
    with pytest.raises(DataFormatError, match="seeds, pairs"):
        paired_difference(left, right[:, :59], folds)
    assert verdict(0.0, 1.0) == "tie" and verdict(-1.0, 0.0) == "tie" and verdict(1e-9, 2.0) == "better"


def test_pair_bits_reproduce_the_protocol_numbers():
    # the per-pair outcomes the records keep give back the protocol's accuracy and VAL exactly
    rng = np.random.default_rng(0)
    pairs = 240
    same = np.repeat([True, False], pairs // 2)[rng.permutation(pairs)]
    emb = rng.normal(size=(2 * pairs, 8))
    emb[1::2] = np.where(same[:, None], emb[0::2] + rng.normal(scale=0.8, size=(pairs, 8)), emb[1::2])
    result = verification_metrics(emb, same, far_target=0.05)
    folds = kfold_ids(pairs, 10)
    fold_acc = np.array([result.pair_correct[folds == f].mean() for f in range(10)])
    np.testing.assert_allclose(fold_acc, result.fold_accuracy)
    fold_val = np.array([result.pair_accept[(folds == f) & same].mean() for f in range(10)])
    assert fold_val.mean() == pytest.approx(result.val)
    bits = unpack_bits(pack_bits(result.pair_correct), pairs)
    np.testing.assert_array_equal(bits, result.pair_correct)
    with pytest.raises(DataFormatError, match="bytes"):
        unpack_bits(pack_bits(result.pair_correct), pairs + 8)


def test_distinct_faces_embeds_each_repeat_once():
    rng = np.random.default_rng(1)
    faces = rng.integers(0, 255, (5, 4, 4, 3), dtype=np.uint8)
    images = faces[[3, 0, 3, 1, 0, 4, 2, 2]]
    first, inverse = distinct_faces(images)
    np.testing.assert_array_equal(first, [0, 1, 3, 5, 6])  # first occurrences, in order
    np.testing.assert_array_equal(images[first][inverse], images)
