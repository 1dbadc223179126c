"""InsightFace 10-fold verification: our vectorised metrics vs a plain-loop re-derivation."""

from __future__ import annotations

import numpy as np
import pytest

from insightface_lr.errors import ConfigError, DataFormatError
from insightface_lr.eval.verification import (
    VerificationResult,
    embed_pairs,
    fuse_flip,
    kfold_ids,
    l2_normalize,
    verification_metrics,
)

scipy_interpolate = pytest.importorskip("scipy.interpolate")
ROC_GRID = np.arange(0, 4, 0.01)


# ---------------------------------------------------------------- independent reference (loops)
def ref_folds(n: int, k: int) -> list[tuple[list[int], list[int]]]:
    """KFold(n_splits=k, shuffle=False): sizes n//k, the first n%k folds one larger; k=1 -> all/all."""
    if k == 1:
        return [(list(range(n)), list(range(n)))]
    out, start = [], 0
    for f in range(k):
        size = n // k + (1 if f < n % k else 0)
        test = list(range(start, start + size))
        out.append(([i for i in range(n) if i not in test], test))
        start += size
    return out


def ref_confusion(thr: float, dist: list[float], same: list[bool]) -> tuple[int, int, int, int]:
    tp = fp = tn = fn = 0
    for d, s in zip(dist, same, strict=True):
        if d < thr:
            tp, fp = tp + s, fp + (not s)
        else:
            fn, tn = fn + s, tn + (not s)
    return tp, fp, tn, fn


def old_scipy_slinear(x: np.ndarray, y: np.ndarray, at: float) -> float:
    """``interp1d(x, y, kind='slinear')(at)`` as scipy <= 1.8 computed it (the versions InsightFace
    ran with; newer scipy rejects the repeated FAR values, deepinsight/insightface#2152): stable sort
    of x, then the degree-1 B-spline with knots ``r_[x0, x, x_last]`` and coefficients y."""
    order = np.argsort(x, kind="mergesort")
    x, y = x[order], y[order]
    return float(scipy_interpolate.BSpline(np.r_[x[0], x, x[-1]], y, 1)(at))


def ref_metrics(emb: np.ndarray, same: np.ndarray, k: int = 10, far_target: float = 1e-3) -> dict:
    """Protocol as written in InsightFace's verification.py, one threshold and one pair at a time."""
    e = [row / np.sqrt(sum(v * v for v in row)) for row in emb]
    dist = [float(sum((a - b) ** 2 for a, b in zip(e[2 * i], e[2 * i + 1], strict=True)))
            for i in range(len(same))]
    same = [bool(s) for s in same]
    accs, thrs, vals, fars = [], [], [], []
    roc_grid, val_grid = np.arange(0, 4, 0.01), np.arange(0, 4, 0.001)
    for train, test in ref_folds(len(same), k):
        d_tr, s_tr = [dist[i] for i in train], [same[i] for i in train]
        d_te, s_te = [dist[i] for i in test], [same[i] for i in test]
        best_acc, best_t = -1.0, None
        for t in roc_grid:
            tp, fp, tn, fn = ref_confusion(t, d_tr, s_tr)
            if (tp + tn) / len(d_tr) > best_acc:
                best_acc, best_t = (tp + tn) / len(d_tr), t
        tp, fp, tn, fn = ref_confusion(best_t, d_te, s_te)
        accs.append((tp + tn) / len(d_te))
        thrs.append(best_t)
        far_train = []
        for t in val_grid:
            tp, fp, tn, fn = ref_confusion(t, d_tr, s_tr)
            far_train.append(fp / (fp + tn) if fp + tn else 0.0)
        if max(far_train) >= far_target:
            thr = old_scipy_slinear(np.array(far_train), val_grid, far_target)
        else:
            thr = 0.0
        tp, fp, tn, fn = ref_confusion(thr, d_te, s_te)
        vals.append(tp / (tp + fn) if tp + fn else 0.0)
        fars.append(fp / (fp + tn) if fp + tn else 0.0)
    return dict(acc=np.mean(accs), acc_std=np.std(accs), thr=np.mean(thrs), fold_acc=accs,
                val=np.mean(vals), val_std=np.std(vals), far=np.mean(fars))


def pairs_at_distances(d2: np.ndarray, rng: np.random.Generator, dim: int = 8) -> np.ndarray:
    """Unnormalised embeddings [2P, dim] whose normalised pairs are at squared distances ``d2``."""
    theta = np.arccos(1.0 - np.asarray(d2) / 2.0)  # ||u - v||^2 = 2 - 2 cos(theta)
    out = np.zeros((2 * len(d2), dim))
    out[0::2, 0] = 1.0
    out[1::2, 0], out[1::2, 1] = np.cos(theta), np.sin(theta)
    rot, _ = np.linalg.qr(rng.normal(size=(dim, dim)))  # random rotation: nothing axis-aligned
    scale = rng.uniform(0.5, 30.0, size=(2 * len(d2), 1))  # norms must not matter
    return (out @ rot) * scale


# ---------------------------------------------------------------- folds
def test_kfold_ids_contiguous_remainder_first() -> None:
    ids = kfold_ids(23, 10)
    assert ids.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] + [f for f in range(3, 10) for _ in range(2)]
    for f, (_, test) in enumerate(ref_folds(23, 10)):
        assert np.flatnonzero(ids == f).tolist() == test
    with pytest.raises(ConfigError):
        kfold_ids(5, 10)


# ---------------------------------------------------------------- hand-derivable answers
def test_separable_pairs_hand_answer() -> None:
    """20 pairs: positives at d=0.505, negatives at d=2.0005, one positive at d=2.5 in fold 3.

    Off the 0.01 threshold grid on purpose: a positive at exactly 0.5 lands on either side of the grid
    threshold 0.50 depending on float rounding in the embeddings (it moved between two fresh installs)."""
    same = np.array([True, False] * 10)
    d2 = np.where(same, 0.505, 2.0005)
    d2[6] = 2.5  # pair 6 is positive; folds have 2 pairs each, so it is in fold 3
    res = verification_metrics(pairs_at_distances(d2, np.random.default_rng(0)), same)
    # every training set is best split by the first grid threshold above 0.505 -> 0.51; fold 3 misses
    # its far positive (1 of 2), every other fold is perfect
    expected = np.ones(10)
    expected[3] = 0.5
    np.testing.assert_allclose(res.fold_accuracy, expected)
    assert res.accuracy_mean == pytest.approx(0.95)
    assert res.accuracy_std == pytest.approx(0.15)  # sqrt((9 * 0.05^2 + 0.45^2) / 10)
    np.testing.assert_allclose(res.fold_threshold, 0.51)
    # training FAR is 0 up to the grid threshold 2.000 and 1 (all negatives) from 2.001, so VAL at
    # FAR=1e-3 interpolates to 2.000 + 0.001 * 1e-3 = 2.000001: every positive at 0.505 and no negative
    # (2.0005) is accepted; fold 3's only positive is at 2.5
    assert res.val == pytest.approx(np.mean([1.0] * 3 + [0.0] + [1.0] * 6))
    assert res.far == 0.0
    ref = ref_metrics(pairs_at_distances(d2, np.random.default_rng(0)), same)
    assert res.val == pytest.approx(ref["val"]) and res.val_std == pytest.approx(ref["val_std"])


@pytest.mark.parametrize("n_pairs,k,far_target,seed", [(20, 10, 1e-3, 1), (37, 10, 0.05, 2),
                                                        (60, 10, 0.1, 3), (15, 3, 0.2, 4),
                                                        (12, 1, 0.1, 5)])
def test_matches_loop_reference(n_pairs: int, k: int, far_target: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    same = rng.random(n_pairs) < 0.5
    d2 = np.clip(np.where(same, rng.normal(0.9, 0.35, n_pairs), rng.normal(1.6, 0.35, n_pairs)), 0.01, 3.9)
    emb = pairs_at_distances(d2, rng)
    res = verification_metrics(emb, same, nrof_folds=k, far_target=far_target)
    ref = ref_metrics(emb, same, k, far_target)
    np.testing.assert_allclose(res.fold_accuracy, ref["fold_acc"], atol=1e-12)
    assert res.accuracy_mean == pytest.approx(ref["acc"], abs=1e-12)
    assert res.accuracy_std == pytest.approx(ref["acc_std"], abs=1e-12)
    assert res.best_threshold == pytest.approx(ref["thr"], abs=1e-12)
    assert res.val == pytest.approx(ref["val"], abs=1e-12)
    assert res.val_std == pytest.approx(ref["val_std"], abs=1e-12)
    assert res.far == pytest.approx(ref["far"], abs=1e-12)


def test_tpr_fpr_curves_are_fold_means() -> None:
    rng = np.random.default_rng(7)
    same = np.array([True, False] * 10)
    d2 = np.where(same, rng.uniform(0.2, 1.2, 20), rng.uniform(1.0, 3.0, 20))
    res = verification_metrics(pairs_at_distances(d2, rng), same)
    tpr = np.zeros(400)
    for _, test in ref_folds(20, 10):
        for ti, t in enumerate(np.arange(0, 4, 0.01)):
            tp, fp, tn, fn = ref_confusion(t, [d2[i] for i in test], [same[i] for i in test])
            tpr[ti] += tp / (tp + fn) / 10
    np.testing.assert_allclose(res.tpr, tpr, atol=1e-9)
    assert res.fpr[0] == 0.0 and res.fpr[-1] == 1.0 and np.all(np.diff(res.fpr) >= 0)
    assert res.thresholds.shape == (400,)


# ---------------------------------------------------------------- flip, xnorm, degenerate cases
def test_fuse_flip_sums_then_normalises() -> None:
    a = np.array([[3.0, 0.0], [0.0, 1.0]])
    b = np.array([[0.0, 4.0], [0.0, 9.0]])
    np.testing.assert_allclose(fuse_flip(a, b), [[0.6, 0.8], [0.0, 1.0]])
    # normalising each view first would give [0.7071, 0.7071] for row 0: the sum must come first
    assert not np.allclose(fuse_flip(a, b), l2_normalize(l2_normalize(a) + l2_normalize(b)))
    assert np.all(l2_normalize(np.zeros((1, 3))) == 0)


def test_views_and_xnorm() -> None:
    rng = np.random.default_rng(3)
    same = rng.random(30) < 0.5
    orig, flip = rng.normal(size=(60, 6)), rng.normal(size=(60, 6))
    res = verification_metrics(np.stack([orig, flip]), same)
    norms = [np.sqrt(np.sum(r ** 2)) for r in np.concatenate([orig, flip])]
    assert res.xnorm == pytest.approx(sum(norms) / len(norms))
    fused = verification_metrics(fuse_flip(orig, flip), same)
    assert fused.accuracy_mean == res.accuracy_mean and fused.val == res.val
    single = verification_metrics(orig * 5.0, same)
    assert single.xnorm == pytest.approx(5.0 * np.linalg.norm(orig, axis=1).mean())


def test_all_same_identical_embeddings() -> None:
    emb = np.repeat(np.random.default_rng(0).normal(size=(10, 4)), 2, axis=0)
    res = verification_metrics(emb, np.ones(10, bool))
    assert res.accuracy_mean == 1.0 and res.accuracy_std == 0.0
    # d = 0 is not < 0: the grid's first threshold accepts nothing, the second (0.01) everything
    np.testing.assert_array_equal(res.fold_threshold, ROC_GRID[1])
    values = [v for v in res.to_dict().values() if not isinstance(v, list)]
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(res.tpr)) and np.all(np.isfinite(res.fpr))
    assert res.far == 0.0 and res.val == 0.0  # target FAR is never reached: InsightFace's threshold 0


def test_single_negative_class_finite() -> None:
    emb = np.random.default_rng(1).normal(size=(40, 4))
    res = verification_metrics(emb, np.zeros(20, bool))
    assert np.all(np.isfinite(res.tpr)) and np.all(res.tpr == 0)
    assert np.isfinite(res.val) and np.isfinite(res.accuracy_mean)


def test_to_dict_is_json_ready() -> None:
    import json

    res = verification_metrics(np.random.default_rng(2).normal(size=(40, 4)), [True, False] * 10)
    assert isinstance(res, VerificationResult)
    d = json.loads(json.dumps(res.to_dict()))
    assert d["accuracy_mean"] == res.accuracy_mean and len(d["tpr"]) == 400


def test_bad_inputs() -> None:
    with pytest.raises(DataFormatError):
        verification_metrics(np.zeros((5, 3)), [True, False])
    with pytest.raises(DataFormatError):
        verification_metrics(np.full((4, 3), np.nan), [True, False])
    with pytest.raises(ConfigError):
        verification_metrics(np.ones((4, 3)), [True, False], nrof_folds=3)
    with pytest.raises(ConfigError):
        verification_metrics(np.ones((4, 3)), [True, False], nrof_folds=2, far_target=0.0)


# ---------------------------------------------------------------- batched embedding
def test_embed_pairs_batches_flip_and_normalisation() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 4, 5, 3), dtype=np.uint8)  # NHWC uint8
    seen: list[int] = []

    def model_fn(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 4, 5)
        w = torch.arange(x[0].numel(), dtype=torch.float32).reshape(1, -1) / 100.0
        return torch.stack([x.flatten(1).mean(1), (x.flatten(1) * w).sum(1)], dim=1)

    out = embed_pairs(model_fn, images, batch_size=3, flip=True)
    assert out.shape == (2, 7, 2) and out.dtype == np.float32
    assert seen == [3, 3, 3, 3, 3, 3]  # the tail batch is a full window, not a batch of 1
    x = (images.astype(np.float64) / 255 - 0.5) / 0.5
    x = x.transpose(0, 3, 1, 2).reshape(7, -1)
    xf = ((images[:, :, ::-1].astype(np.float64) / 255 - 0.5) / 0.5).transpose(0, 3, 1, 2).reshape(7, -1)
    w = np.arange(x.shape[1]) / 100.0
    np.testing.assert_allclose(out[0], np.stack([x.mean(1), x @ w], 1), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(out[1], np.stack([xf.mean(1), xf @ w], 1), rtol=1e-5, atol=1e-4)
    single = embed_pairs(model_fn, torch.as_tensor(x.reshape(7, 3, 4, 5), dtype=torch.float32),
                         batch_size=16, flip=False)
    np.testing.assert_allclose(single[0], out[0], rtol=1e-5, atol=1e-4)


def test_far_inversion_matches_old_scipy_on_plateaus_and_exact_hits() -> None:
    from insightface_lr.eval.verification import _invert_far

    rng = np.random.default_rng(11)
    grid = np.arange(0, 4, 0.001)[:50]
    for _ in range(20):
        far = np.sort(rng.integers(0, 11, size=50)) / 10.0  # long flat runs, exact multiples of 0.1
        far[0] = 0.0
        for target in (0.1, 0.3, 0.05, 0.25):
            ours = _invert_far(far[None], grid, target)[0]
            assert ours == pytest.approx(old_scipy_slinear(far, grid, target), abs=1e-15)
        # at target == max FAR scipy evaluates a zero-width knot interval (returns 0); we take the
        # last threshold of the flat run, consistent with every other exact hit
        assert _invert_far(far[None], grid, far.max())[0] == grid[np.flatnonzero(far == far.max())[-1]]
    # target never reached -> InsightFace's threshold 0
    assert _invert_far(np.zeros((1, 50)), grid, 1e-3)[0] == 0.0
