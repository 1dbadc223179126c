"""Bank: the relation over a memory of teacher embeddings against a plain-loop reference, a hand-computed case,
gradcheck (and the reference's gradient), edge cases and the registered term's config and parts."""

from __future__ import annotations

import math

import pytest
import torch

from insightface_lr.errors import ConfigError
from insightface_lr.losses import build_distiller
from insightface_lr.losses.bank import BankLoss, bank_relation_loss
from insightface_lr.losses.distiller import DistillDims, Distiller, DistillInputs, DistillTerm


def loop_relation(f_s: torch.Tensor, f_t: torch.Tensor, memory: torch.Tensor, tau: float) -> torch.Tensor:
    """The definition written out one scalar at a time: cosines, softmax with explicit sums, KL, mean over i."""
    def cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        dot = sum(a[d] * b[d] for d in range(a.numel()))
        return dot / (sum(a[d] ** 2 for d in range(a.numel())).sqrt() * sum(b[d] ** 2 for d in range(b.numel())).sqrt())

    total = 0.0
    for i in range(f_s.shape[0]):
        zt = [cos(f_t[i], memory[k]) / tau for k in range(memory.shape[0])]
        zs = [cos(f_s[i], memory[k]) / tau for k in range(memory.shape[0])]
        norm_t, norm_s = sum(z.exp() for z in zt), sum(z.exp() for z in zs)
        for k in range(memory.shape[0]):
            p, q = zt[k].exp() / norm_t, zs[k].exp() / norm_s
            total = total + p * (p.log() - q.log())
    return total / f_s.shape[0]


def draw(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("tau", [0.05, 0.5, 2.0])
def test_matches_the_plain_loop_reference_in_value_and_gradient(tau: float) -> None:
    f_s, f_t, memory = draw(3, 4, seed=0).requires_grad_(True), draw(3, 4, seed=1), draw(5, 4, seed=2)
    f_s_ref = f_s.detach().clone().requires_grad_(True)
    loss, expected = bank_relation_loss(f_s, f_t, memory, tau), loop_relation(f_s_ref, f_t, memory, tau)
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(f_s.grad, f_s_ref.grad, rtol=1e-8, atol=1e-12)


def test_hand_computed_two_by_two() -> None:
    """Memory e1, e2 at tau = 1. Row 0: teacher e1, student e2: p = (e, 1)/(e + 1), q = (1, e)/(e + 1), so
    KL = p1 - p2 = (e - 1)/(e + 1) = tanh(1/2). Row 1: student = teacher: 0. Mean: tanh(1/2) / 2."""
    memory = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    f_t = torch.tensor([[2.0, 0.0], [0.0, 3.0]], dtype=torch.float64)  # norms do not matter: cosines
    f_s = torch.tensor([[0.0, 0.5], [0.0, 1.0]], dtype=torch.float64)
    assert bank_relation_loss(f_s, f_t, memory, tau=1.0).item() == pytest.approx(math.tanh(0.5) / 2, abs=1e-12)


def test_gradcheck_of_the_function_and_the_term_with_its_adaptor() -> None:
    f_s, f_t = draw(3, 4, seed=3).requires_grad_(True), draw(3, 4, seed=4).requires_grad_(True)
    memory = draw(6, 4, seed=5).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b, m: bank_relation_loss(a, b, m, 0.3), (f_s, f_t, memory))
    term = BankLoss(DistillDims(4, 3, 2), tau=0.3, lambda_f=0.7, beta=1.3).double()  # learnable adaptor 4 -> 3
    teacher, mem3 = draw(3, 3, seed=6), draw(6, 3, seed=7)
    labels = torch.zeros(3, dtype=torch.long)

    def loss(a: torch.Tensor) -> torch.Tensor:
        return term(DistillInputs(a, teacher, labels, teacher_memory=mem3))["loss"]

    assert torch.autograd.gradcheck(loss, (f_s,))
    loss(f_s).backward()
    assert term.adaptor.weight.grad is not None and term.adaptor.weight.grad.abs().sum() > 0


def test_memory_of_one_row_gives_exactly_zero_and_no_gradient() -> None:
    f_s = draw(4, 5, seed=8).requires_grad_(True)
    loss = bank_relation_loss(f_s, draw(4, 5, seed=9), draw(1, 5, seed=10), tau=0.05)
    loss.backward()
    assert loss.item() == 0.0 and torch.all(f_s.grad == 0)


def test_identical_student_and_teacher_give_zero() -> None:
    f = draw(4, 5, seed=11)
    assert bank_relation_loss(f.clone(), f, draw(7, 5, seed=12), tau=0.05).item() == 0.0
    out = BankLoss(DistillDims(5, 5, 3)).double()(DistillInputs(f.clone(), f, torch.zeros(4, dtype=torch.long),
                                                                 teacher_memory=draw(7, 5, seed=12)))
    assert out["loss"].item() == pytest.approx(0.0, abs=1e-12)


def test_kl_is_positive_and_falls_as_the_student_nears_the_teacher() -> None:
    f_t, memory = draw(4, 6, seed=13), draw(32, 6, seed=14)
    far = bank_relation_loss(draw(4, 6, seed=15), f_t, memory, 0.1)
    near = bank_relation_loss(f_t + 0.05 * draw(4, 6, seed=15), f_t, memory, 0.1)
    assert far > near > 0


def test_term_sums_its_weighted_parts_and_reads_a_prefix_of_the_memory() -> None:
    dims = DistillDims(6, 6, 3)
    term = BankLoss(dims, memory=5, tau=0.2, lambda_f=0.5, beta=2.0).double()
    f_s, f_t, memory = draw(4, 6, seed=16), draw(4, 6, seed=17), draw(9, 6, seed=18)
    out = term(DistillInputs(f_s, f_t, torch.zeros(4, dtype=torch.long), teacher_memory=memory))
    relation = bank_relation_loss(f_s, f_t, memory[:5], 0.2)
    instance = (1 - torch.nn.functional.cosine_similarity(f_s, f_t)).mean()
    torch.testing.assert_close(out["relation"], relation)
    torch.testing.assert_close(out["instance"], instance)
    torch.testing.assert_close(out["loss"], 2.0 * relation + 0.5 * instance)
    assert out["memory"].item() == 5


def test_balance_starts_each_part_at_one() -> None:
    term = BankLoss(DistillDims(6, 6, 3), balance=True, lambda_f=1.0, beta=1.0)
    inputs = DistillInputs(draw(4, 6, seed=19).float(), draw(4, 6, seed=20).float(),
                           torch.zeros(4, dtype=torch.long), teacher_memory=draw(9, 6, seed=21).float())
    out = term(inputs)
    assert out["relation"].item() == pytest.approx(1.0) and out["instance"].item() == pytest.approx(1.0)
    assert out["loss"].item() == pytest.approx(2.0)


def test_flags_defaults_and_distiller_aggregation() -> None:
    term = BankLoss(DistillDims(8, 8, 3))
    assert term.config.memory == 4096 and term.config.tau == 0.05 and term.config.lambda_f == 1.0
    assert term.config.beta == 1.0 and term.config.balance is False
    assert term.uses_teacher_memory == 4096 and DistillTerm.uses_teacher_memory == 0
    assert not term.uses_teacher_bank and not term.uses_teacher_centres
    assert build_distiller("bank", DistillDims(8, 8, 3), config={"bank": {"memory": 64}}).uses_teacher_memory == 64
    assert build_distiller("aird+kd", DistillDims(8, 8, 3)).uses_teacher_memory == 0
    small, large = BankLoss(DistillDims(8, 8, 3), memory=16), BankLoss(DistillDims(8, 8, 3), memory=32)
    assert Distiller({"a": small, "b": large, "plain": torch.nn.Identity()}).uses_teacher_memory == 32


@pytest.mark.parametrize(("fields", "message"), [
    ({"memory": 0}, "field memory must be an integer >= 1"),
    ({"memory": 12.5}, "field memory must be an integer >= 1"),
    ({"memory": True}, "field memory must be an integer >= 1"),
    ({"tau": 0.0}, "field tau must be > 0"),
    ({"tau_r": 0.1}, "unknown field(s) tau_r"),
])
def test_bad_config_is_a_config_error(fields: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        BankLoss(DistillDims(8, 8, 3), **fields)


def test_missing_or_misshapen_memory_is_a_config_error() -> None:
    term = BankLoss(DistillDims(8, 6, 3))
    inputs = DistillInputs(torch.randn(4, 8), torch.randn(4, 6), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ConfigError, match="needs teacher_memory.*field `teacher_cache`"):
        term(inputs)
    inputs.teacher_memory = torch.randn(5, 8)
    with pytest.raises(ConfigError, match=r"teacher_memory must be \[K >= 1, 6\], got \(5, 8\)"):
        term(inputs)


def test_half_precision_inputs_are_computed_in_float32() -> None:
    f_s, f_t, memory = (draw(*s, seed=i).float() for i, s in enumerate([(4, 8), (4, 8), (16, 8)]))
    term = BankLoss(DistillDims(8, 8, 3))
    inputs = DistillInputs(f_s.half(), f_t.half(), torch.zeros(4, dtype=torch.long), teacher_memory=memory.half())
    out = term(inputs)
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    reference = term(DistillInputs(f_s.half().float(), f_t.half().float(), inputs.labels,
                                   teacher_memory=memory.half().float()))["loss"]
    assert out["loss"].item() == pytest.approx(reference.item(), rel=1e-6)
