"""IJB template verification: media/template pooling, chunked pair scores, ROC and TAR@FAR."""

from __future__ import annotations

import numpy as np
import pytest

from insightface_lr.errors import ConfigError, DataFormatError
from insightface_lr.eval.ijb import (
    ijb_tar_at_far,
    pool_templates,
    roc_curve,
    tar_at_far,
    template_pair_scores,
)


def loop_pool(feats: np.ndarray, templates: np.ndarray, medias: np.ndarray) -> np.ndarray:
    """InsightFace's image2template_feature written as plain loops (the reference)."""
    out = []
    for t in np.unique(templates):
        media_feats = []
        for m in np.unique(medias[templates == t]):
            media_feats.append(feats[(templates == t) & (medias == m)].mean(axis=0))
        v = np.sum(media_feats, axis=0)
        out.append(v / np.linalg.norm(v))
    return np.array(out)


def test_pool_by_hand() -> None:
    feats = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    templates = np.array([7, 7, 7, 2])
    medias = np.array([1, 1, 2, 9])
    pooled, ids = pool_templates(feats, templates, medias)
    assert ids.tolist() == [2, 7]
    # template 7: media 1 = mean([1,0],[3,0]) = [2,0]; media 2 = [0,1]; sum [2,1] -> /sqrt(5)
    np.testing.assert_allclose(pooled, [[np.sqrt(0.5), np.sqrt(0.5)], [2 / np.sqrt(5), 1 / np.sqrt(5)]])
    # a plain average over the three images would give [4,1]/sqrt(17): media pooling matters
    assert not np.allclose(pooled[1], np.array([4.0, 1.0]) / np.sqrt(17))


def test_pool_matches_loop_reference_unsorted_ids() -> None:
    rng = np.random.default_rng(0)
    n = 200
    templates = rng.choice([11, 3, 90, 42, 5, 77], size=n)
    medias = rng.integers(100, 106, size=n)  # media ids shared across templates on purpose
    feats = rng.normal(size=(n, 8))
    pooled, ids = pool_templates(feats, templates, medias)
    np.testing.assert_allclose(pooled, loop_pool(feats, templates, medias), atol=1e-12)
    assert ids.tolist() == sorted(set(templates.tolist()))


def test_pool_views_faceness_and_norm_modes() -> None:
    rng = np.random.default_rng(1)
    feats, flips = rng.normal(size=(12, 4)), rng.normal(size=(12, 4))
    t, m = np.repeat([0, 1, 2], 4), np.tile([0, 0, 1, 2], 3)
    face = rng.uniform(0.1, 1.0, size=12)
    pooled, _ = pool_templates(np.stack([feats, flips]), t, m, faceness=face)
    np.testing.assert_allclose(pooled, loop_pool((feats + flips) * face[:, None], t, m), atol=1e-12)
    unit = (feats + flips) / np.linalg.norm(feats + flips, axis=1, keepdims=True)
    pooled_n0, _ = pool_templates(np.stack([feats, flips]), t, m, normalize_images=True)
    np.testing.assert_allclose(pooled_n0, loop_pool(unit, t, m), atol=1e-12)
    with pytest.raises(DataFormatError):
        pool_templates(feats, t[:5], m)


def test_pair_scores_chunked() -> None:
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(5, 6))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    ids = np.array([3, 8, 20, 21, 40])
    t1, t2 = rng.choice(ids, size=23), rng.choice(ids, size=23)
    scores = template_pair_scores(feats, ids, t1, t2, chunk=4)
    row = {int(t): i for i, t in enumerate(ids)}
    expected = [float(feats[row[a]] @ feats[row[b]]) for a, b in zip(t1, t2, strict=True)]
    np.testing.assert_allclose(scores, expected, atol=1e-12)
    with pytest.raises(DataFormatError, match=r"\[7\]"):
        template_pair_scores(feats, ids, [3, 7], [8, 8])


def test_roc_curve_by_hand() -> None:
    labels = [1, 1, 0, 1, 0, 0]
    scores = [0.9, 0.8, 0.7, 0.6, 0.55, 0.4]
    # cumulative (fp, tp) per threshold: (0,1) (0,2) (1,2) (1,3) (2,3) (3,3); (2,3) lies on the
    # straight line from (1,3) to (3,3) and is dropped; (0,0) is prepended
    fpr, tpr, thr = roc_curve(labels, scores)
    np.testing.assert_allclose(fpr, [0, 0, 0, 1 / 3, 1 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1])
    assert thr.tolist() == [np.inf, 0.9, 0.8, 0.7, 0.6, 0.4]
    fpr_all, _, thr_all = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr_all, [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    assert thr_all.tolist() == [np.inf, 0.9, 0.8, 0.7, 0.6, 0.55, 0.4]


def test_roc_curve_tied_scores_and_reference() -> None:
    """Tied scores form one point; compare with a direct count of (score >= t) per distinct t."""
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 8, size=60) / 8.0  # many ties
    labels = rng.random(60) < (0.2 + scores * 0.6)
    fpr, tpr, thr = roc_curve(labels, scores, drop_intermediate=False)
    distinct = np.unique(scores)[::-1]
    assert thr[1:].tolist() == distinct.tolist()
    for f, t, th in zip(fpr[1:], tpr[1:], thr[1:], strict=True):
        accepted = scores >= th
        assert t == pytest.approx(np.sum(accepted & labels) / labels.sum())
        assert f == pytest.approx(np.sum(accepted & ~labels) / (~labels).sum())


def test_tar_at_far_perfect_separator() -> None:
    rng = np.random.default_rng(4)
    labels = np.r_[np.ones(500), np.zeros(5000)]
    scores = np.r_[rng.uniform(0.6, 1.0, 500), rng.uniform(-0.5, 0.5, 5000)]
    for method in ("insightface", "interp"):
        res = tar_at_far(scores, labels, method=method)
        assert res == {f: 1.0 for f in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)}


def test_tar_at_far_known_roc() -> None:
    labels = [1, 1, 0, 1, 0, 0]
    scores = [0.9, 0.8, 0.7, 0.6, 0.55, 0.4]
    # ROC points (fpr, tpr): (0,0) (0,1/3) (0,2/3) (1/3,2/3) (1/3,1) (1,1)
    res = tar_at_far(scores, labels, fars=(1e-6, 0.1, 0.2, 0.3, 0.7))
    # 1e-6 and 0.1: nearest FPR is 0, highest TPR there 2/3 (interpolation would give 0.77 at 0.1);
    # 0.2, 0.3: nearest FPR 1/3 -> its highest TPR 1; 0.7: FPR 1 (gap 0.3) is nearer than 1/3 (0.37)
    assert res == {1e-6: pytest.approx(2 / 3), 0.1: pytest.approx(2 / 3), 0.2: 1.0, 0.3: 1.0, 0.7: 1.0}
    interp = tar_at_far(scores, labels, fars=(0.0, 1 / 6, 0.5), method="interp")
    # upper ROC: (0, 2/3) -> (1/3, 1): at 1/6 halfway -> 5/6
    assert interp == {0.0: pytest.approx(2 / 3), 1 / 6: pytest.approx(5 / 6), 0.5: 1.0}
    with pytest.raises(ConfigError):
        tar_at_far(scores, labels, method="spline")


def test_single_class_is_an_error_not_nan() -> None:
    with pytest.raises(DataFormatError, match="both"):
        tar_at_far([0.1, 0.2], [1, 1])


def test_end_to_end_identical_templates() -> None:
    """Genuine pairs share the same identity direction; impostors are orthogonal -> TAR 1."""
    rng = np.random.default_rng(5)
    centres = np.eye(4)
    ident = np.repeat(np.arange(4), 2)  # templates 0..7, two per identity
    templates = np.repeat(np.arange(8), 3)
    medias = np.arange(24) // 2
    feats = centres[ident[templates]] * rng.uniform(0.5, 2.0, size=(24, 1))
    t1, t2 = np.array([0, 2, 4, 6, 0, 1, 3]), np.array([1, 3, 5, 7, 2, 4, 6])
    labels = ident[t1] == ident[t2]
    res = ijb_tar_at_far(feats, templates, medias, t1, t2, labels, fars=(1e-3, 1e-1))
    assert res == {1e-3: 1.0, 1e-1: 1.0}
