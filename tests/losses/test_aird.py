"""AIRD instance/relation distillation against a numpy re-statement, gradcheck and edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from insightface_lr.errors import ConfigError
from insightface_lr.losses.aird import AIRDLoss, instance_distillation, relation_distillation, relation_target
from insightface_lr.losses.distiller import DistillDims, DistillInputs


def np_unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_kl(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.mean(np.sum(p * np.log(p / q), axis=1)))


def np_instance(fs, ft, zs, zt, lambda_f, lambda_p, tau) -> float:
    cos = np.sum(np_unit(fs) * np_unit(ft), axis=1)
    return lambda_f * float(np.mean(1 - cos)) + lambda_p * tau**2 * np_kl(
        np_softmax(zt / tau), np_softmax(zs / tau)
    )


def np_relation(fs, ft, tau_r, labels=None) -> float:
    r_t = np_softmax(np_unit(ft) @ np_unit(ft).T / tau_r)
    r_ts = np_softmax(np_unit(fs) @ np_unit(ft).T / tau_r)
    if labels is not None:  # identity-aware: same-label entries share their total mass, row by row
        for i in range(len(labels)):
            same = labels == labels[i]
            r_t[i, same] = r_t[i, same].sum() / same.sum()
    return np_kl(r_t, r_ts)


@pytest.fixture
def sample() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "fs": rng.normal(size=(4, 3)),
        "ft": rng.normal(size=(4, 3)),
        "zs": rng.normal(size=(4, 5)) * 3,
        "zt": rng.normal(size=(4, 5)) * 3,
        "w": rng.normal(size=(5, 3)),
        "labels": np.array([0, 1, 0, 2]),
    }


def t64(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def test_instance_matches_numpy(sample) -> None:
    fs, ft, zs, zt = (t64(sample[k]) for k in ("fs", "ft", "zs", "zt"))
    got = instance_distillation(fs, ft, zs, zt, lambda_f=0.7, lambda_p=1.3, tau=2.5)
    want = np_instance(sample["fs"], sample["ft"], sample["zs"], sample["zt"], 0.7, 1.3, 2.5)
    assert got.item() == pytest.approx(want, rel=1e-10)
    # without logits only the embedding part remains
    no_logits = instance_distillation(fs, ft, lambda_f=0.7)
    assert no_logits.item() == pytest.approx(
        np_instance(sample["fs"], sample["ft"], sample["zs"], sample["zs"], 0.7, 0.0, 1.0), rel=1e-10
    )


def test_instance_by_hand() -> None:
    # orthogonal pair: 1 - cos = 1; opposite: 2; identical: 0 -> mean 1
    fs = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    ft = torch.tensor([[0.0, 3.0], [-1.0, 0.0], [0.0, 1.0]])
    assert instance_distillation(fs, ft).item() == pytest.approx(1.0)


@pytest.mark.parametrize("identity_aware", [False, True])
def test_relation_matches_numpy(sample, identity_aware: bool) -> None:
    labels = torch.tensor(sample["labels"])
    got = relation_distillation(t64(sample["fs"]), t64(sample["ft"]), 0.3, labels, identity_aware)
    want = np_relation(sample["fs"], sample["ft"], 0.3, sample["labels"] if identity_aware else None)
    assert got.item() == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("identity_aware", [False, True])
def test_relation_over_a_bank_splits_the_batch_exactly(sample, identity_aware: bool) -> None:
    """DDP's view: each rank holds some rows, the bank is the global batch. The mean of the ranks' losses
    (and of their gradients, as DDP averages) equals the one-process loss and gradient over the whole batch."""
    labels = torch.tensor(sample["labels"])
    fs = t64(sample["fs"]).requires_grad_(True)
    ft = t64(sample["ft"])
    whole = relation_distillation(fs, ft, 0.3, labels, identity_aware)
    (grad_whole,) = torch.autograd.grad(whole, fs)
    ranks = [slice(0, 1), slice(1, 4)]  # uneven shards: the bank carries the other rank's faces
    losses = [relation_distillation(fs[r], ft[r], 0.3, labels[r], identity_aware, bank=ft, bank_labels=labels)
              for r in ranks]
    # each rank's loss is a mean over its own rows: weight by rows to compare with the whole-batch mean
    mean = sum(loss * (r.stop - r.start) for loss, r in zip(losses, ranks, strict=True)) / 4
    (grad_split,) = torch.autograd.grad(mean, fs)
    assert mean.item() == pytest.approx(whole.item(), rel=1e-12)
    torch.testing.assert_close(grad_split, grad_whole, rtol=1e-10, atol=1e-12)
    # without the bank a rank only sees its own faces: a different (smaller-batch) relation
    local = relation_distillation(fs[1:4], ft[1:4], 0.3, labels[1:4], identity_aware)
    assert local.item() != pytest.approx(losses[1].item(), rel=1e-6)


def test_aird_module_matches_numpy(sample) -> None:
    term = AIRDLoss(DistillDims(3, 3, 5), alpha=0.5, beta=2.0, lambda_p=1.0, tau=3.0, tau_r=0.2, scale=10.0).double()
    inputs = DistillInputs(
        t64(sample["fs"]), t64(sample["ft"]), torch.tensor(sample["labels"]), teacher_centres=t64(sample["w"])
    )
    out = term(inputs)
    zs = 10.0 * np_unit(sample["fs"]) @ np_unit(sample["w"]).T
    zt = 10.0 * np_unit(sample["ft"]) @ np_unit(sample["w"]).T
    inst = np_instance(sample["fs"], sample["ft"], zs, zt, 1.0, 1.0, 3.0)
    rel = np_relation(sample["fs"], sample["ft"], 0.2)
    assert out["instance"].item() == pytest.approx(inst, rel=1e-9)
    assert out["relation"].item() == pytest.approx(rel, rel=1e-9)
    assert out["loss"].item() == pytest.approx(0.5 * inst + 2.0 * rel, rel=1e-9)
    # no teacher centres: the prediction part is 0, lambda_p has no effect
    out = term(DistillInputs(t64(sample["fs"]), t64(sample["ft"]), torch.tensor(sample["labels"])))
    assert out["instance_pred"].item() == 0.0
    assert out["instance"].item() == pytest.approx(np_instance(sample["fs"], sample["ft"], zs, zs, 1, 0, 1))


def test_gradcheck() -> None:
    gen = torch.Generator().manual_seed(1)
    fs, ft = (torch.randn(4, 3, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(2))
    zs, zt = (torch.randn(4, 5, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(2))
    labels = torch.tensor([0, 1, 0, 1])
    assert torch.autograd.gradcheck(
        lambda a, b, c, d: instance_distillation(a, b, c, d, tau=2.0), (fs, ft, zs, zt)
    )
    assert torch.autograd.gradcheck(lambda a, b: relation_distillation(a, b, 0.5), (fs, ft))
    assert torch.autograd.gradcheck(lambda a, b: relation_distillation(a, b, 0.5, labels, True), (fs, ft))
    term = AIRDLoss(DistillDims(3, 2, 5)).double()  # with the learnable adaptor
    w = torch.randn(5, 2, generator=gen, dtype=torch.float64)
    t2 = ft[:, :2].detach()
    assert torch.autograd.gradcheck(lambda a: term(DistillInputs(a, t2, labels, w))["loss"], (fs,))


def test_batch_of_one_relation_is_zero() -> None:
    fs = torch.randn(1, 8, requires_grad=True)
    loss = relation_distillation(fs, torch.randn(1, 8))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(fs.grad == 0)
    out = AIRDLoss(DistillDims(8, 8, 3))(
        DistillInputs(fs, torch.randn(1, 8), torch.tensor([2]), torch.randn(3, 8))
    )
    assert torch.isfinite(out["loss"]) and out["relation"].item() == 0.0


def test_teacher_equals_student_gives_zero_and_zero_grad() -> None:
    gen = torch.Generator().manual_seed(2)
    f = torch.randn(6, 8, generator=gen, dtype=torch.float64)
    fs = f.clone().requires_grad_(True)
    out = AIRDLoss(DistillDims(8, 8, 4))(
        DistillInputs(fs, f, torch.arange(6) % 4, torch.randn(4, 8, generator=gen, dtype=torch.float64))
    )
    out["loss"].backward()
    for key in ("instance", "relation", "instance_pred", "loss"):
        assert abs(out[key].item()) < 1e-12, key
    assert fs.grad.abs().max().item() < 1e-10


def test_all_one_identity_identity_aware_target_is_uniform() -> None:
    # with every sample the same person, identity-aware rows spread the whole mass evenly: 1/B
    log_target = relation_target(
        torch.randn(5, 4), 0.1, torch.zeros(5, dtype=torch.long), identity_aware=True
    )
    assert torch.allclose(log_target.exp(), torch.full((5, 5), 0.2))
    loss = relation_distillation(
        torch.randn(5, 4), torch.randn(5, 4), 0.1, torch.zeros(5, dtype=torch.long), True
    )
    assert torch.isfinite(loss) and loss.item() >= 0


def test_relation_pulls_to_own_hr_face() -> None:
    # matching each LR face to its own HR face costs less than matching it to a neighbour's
    gen = torch.Generator().manual_seed(3)
    ft = torch.randn(8, 16, generator=gen)
    matched = relation_distillation(ft + 0.1 * torch.randn(8, 16, generator=gen), ft)
    shuffled = relation_distillation(ft.roll(1, dims=0), ft)
    assert matched.item() < 0.1 * shuffled.item()


def test_fp16_inputs_are_finite() -> None:
    gen = torch.Generator().manual_seed(4)
    fs = (torch.randn(4, 8, generator=gen) * 30).half().requires_grad_(True)
    inputs = DistillInputs(
        fs,
        torch.randn(4, 8, generator=gen).half(),
        torch.tensor([0, 1, 1, 2]),
        torch.randn(3, 8, generator=gen).half(),
    )
    out = AIRDLoss(DistillDims(8, 8, 3))(inputs)
    out["loss"].backward()
    assert all(torch.isfinite(v) for v in out.values()) and torch.isfinite(fs.grad).all()


def test_adaptor_only_when_widths_differ() -> None:
    assert len(list(AIRDLoss(DistillDims(8, 8, 3)).parameters())) == 0
    term = AIRDLoss(DistillDims(4, 8, 3))
    out = term(
        DistillInputs(torch.randn(3, 4), torch.randn(3, 8), torch.tensor([0, 1, 2]), torch.randn(3, 8))
    )
    out["loss"].backward()
    assert term.adaptor.weight.shape == (8, 4) and term.adaptor.weight.grad.abs().sum() > 0


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown field.*lamda_f.*valid fields"):
        AIRDLoss(DistillDims(4, 4, 2), lamda_f=1.0)
    with pytest.raises(ConfigError, match="tau_r must be > 0"):
        AIRDLoss(DistillDims(4, 4, 2), tau_r=0.0)
    with pytest.raises(ConfigError, match=r"teacher \[B, 4\]"):
        AIRDLoss(DistillDims(4, 4, 2))(
            DistillInputs(torch.randn(2, 4), torch.randn(2, 5), torch.tensor([0, 1]))
        )


def test_default_aird_is_feature_plus_prediction_plus_relation(sample) -> None:
    """The default AIRD is the seed's Figure 2: instance level = embedding cosine + prediction KL (tau = 4 on
    s = 64 cosine logits of the teacher centres), relation level = KL(r_t || r_ts) at tau_r = 0.1, all weights 1;
    computed here by hand in numpy, without the package's helpers."""
    term = AIRDLoss(DistillDims(3, 3, 5)).double()
    assert term.uses_teacher_centres and not AIRDLoss(DistillDims(3, 3, 5), lambda_p=0.0).uses_teacher_centres
    inputs = DistillInputs(t64(sample["fs"]), t64(sample["ft"]), torch.tensor(sample["labels"]),
                           teacher_centres=t64(sample["w"]))
    out = term(inputs)
    fs, ft, w = np_unit(sample["fs"]), np_unit(sample["ft"]), np_unit(sample["w"])
    feature = float(np.mean(1 - np.sum(fs * ft, axis=1)))
    p_t, p_s = np_softmax(64.0 * ft @ w.T / 4.0), np_softmax(64.0 * fs @ w.T / 4.0)
    prediction = 16.0 * float(np.mean(np.sum(p_t * np.log(p_t / p_s), axis=1)))
    r_t, r_ts = np_softmax(ft @ ft.T / 0.1), np_softmax(fs @ ft.T / 0.1)
    relation = float(np.mean(np.sum(r_t * np.log(r_t / r_ts), axis=1)))
    assert prediction > 0.01 and out["instance_pred"].item() == pytest.approx(prediction, rel=1e-9)
    assert out["instance_feat"].item() == pytest.approx(feature, rel=1e-9)
    assert out["relation"].item() == pytest.approx(relation, rel=1e-9)
    assert out["loss"].item() == pytest.approx(feature + prediction + relation, rel=1e-9)
