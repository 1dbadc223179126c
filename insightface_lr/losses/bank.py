"""Bank: relation-level distillation over a memory of teacher embeddings wider than one batch.

AIRD's relation level relates each student embedding to the teacher embeddings of the same batch (63 others
at B = 64): a coarse, noisy picture of where the face sits among identities. The frozen teacher's HR
embeddings of the whole training set are cached anyway (``train/teacher_cache.py``), so a memory of K
teacher rows drawn from it costs one lookup per step, no forward pass. The relation then spans K anchors
(4096 by default), as CompRess (Abbasi Koohpayegani et al., NeurIPS 2020) and SEED (Fang et al., ICLR 2021)
distil similarity distributions over a memory bank:

- relation: ``p_i = softmax_k(cos(t_i, M_k) / tau)``, ``q_i = softmax_k(cos(A s_i, M_k) / tau)``,
  ``L_rel = mean_i KL(p_i || q_i)``: the student's similarity profile over the memory matches the teacher's;
- instance (optional, ``lambda_f``): ``mean_i (1 - cos(A s_i, t_i))``, the embedding pulled to its own HR face
  (the memory holds no guaranteed positive, so this part anchors the face itself);
- total ``beta * L_rel + lambda_f * L_inst``; ``A`` is the learnable adaptor when Ds != Dt (``make_adaptor``).

The memory is K random faces of the training set (each with a random mirror), drawn anew every step by the
training step (``TeacherOutputs.memory``) from a generator seeded by (seed, epoch, step, rank), so a resumed
run draws the same memory; it needs the teacher cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import register_distill_term
from .aird import cosine_distance, row_kl
from .distiller import DistillDims, DistillInputs, DistillTerm, as_float, check_positive, make_adaptor
from .scale import FirstValueScale


def bank_relation_loss(f_s: Tensor, f_t: Tensor, memory: Tensor, tau: float = 0.05) -> Tensor:
    """``mean_i KL(softmax(cos(f_t_i, M)/tau) || softmax(cos(f_s_i, M)/tau))`` -> scalar.

    f_s: [B, D] student embeddings in the teacher's space (after the adaptor); f_t: [B, D] teacher embeddings
    of the same faces; memory: [K, D] teacher embeddings (no gradient flows into it). Two [B, K] matrix
    products; K = 1 gives exactly 0 (a one-entry softmax), and so does f_s = f_t.
    """
    m = F.normalize(memory, dim=1)
    log_p = F.log_softmax(F.normalize(f_t, dim=1) @ m.T / tau, dim=1)
    log_q = F.log_softmax(F.normalize(f_s, dim=1) @ m.T / tau, dim=1)
    return row_kl(log_p, log_q)


@dataclass(frozen=True)
class BankConfig:
    memory: int = 4096  # K: teacher rows in the memory (the whole training set when it holds fewer faces)
    # relation temperature. The memory holds (almost) no positive for face i, only other identities, whose cosines
    # to a trained teacher's embedding spread over ~0.3 (an estimate): at 0.1 (AIRD's tau_r, whose batch relation
    # keeps the (i,i) positive) a row spans ~3 logits over 4096 entries, flat, with a small KL; 0.05 spans ~6 and
    # weights the nearest identities most, close to CompRess's 0.04 over a memory of negatives
    tau: float = 0.05
    lambda_f: float = 1.0  # instance part 1 - cos(A s_i, t_i); 0 drops it
    beta: float = 1.0  # weight of the relation over the memory
    # each part in units of its first-step value (losses/scale.py), as AIRD's balance: lambda_f and beta then
    # weigh parts of comparable size whatever K and tau make the raw KL
    balance: bool = False

    def __post_init__(self) -> None:
        check_positive("bank", tau=self.tau)
        if isinstance(self.memory, bool) or not isinstance(self.memory, int) or self.memory < 1:
            raise ConfigError(f"distillation term 'bank' config: field memory must be an integer >= 1, "
                              f"got {self.memory!r}")


@register_distill_term("bank")
class BankLoss(DistillTerm):
    """``beta * L_rel(memory) + lambda_f * L_inst``; owns a linear adaptor when Ds != Dt."""

    name = "bank"
    config_class = BankConfig

    def __init__(self, dims: DistillDims, **fields: object) -> None:
        super().__init__(dims, **fields)
        self.adaptor = make_adaptor(dims.student_dim, dims.teacher_dim)
        parts = ("feat", "relation") if self.config.balance else ()
        self.part_scales = nn.ModuleDict({part: FirstValueScale() for part in parts})

    @property
    def uses_teacher_memory(self) -> int:  # the step draws this many cached teacher rows for the term
        return self.config.memory

    def forward(self, inputs: DistillInputs) -> dict[str, Tensor]:
        cfg = self.config
        student, teacher = self.pair(inputs)
        f_s = self.adaptor(student)
        memory = self.memory(inputs).to(teacher.dtype)
        relation = bank_relation_loss(f_s, teacher, memory, cfg.tau)
        feat = cosine_distance(f_s, teacher)
        if cfg.balance:
            feat, relation = self.part_scales["feat"](feat), self.part_scales["relation"](relation)
        return {"loss": cfg.beta * relation + cfg.lambda_f * feat, "relation": relation, "instance": feat,
                "memory": memory.new_tensor(float(memory.shape[0]))}

    def memory(self, inputs: DistillInputs) -> Tensor:
        """The first ``memory`` rows of ``inputs.teacher_memory`` [K, Dt] (detached; the rows are in random
        order, so a prefix is a random subset when another term asked for more), or a ConfigError."""
        memory = inputs.teacher_memory
        if memory is None:
            raise ConfigError("distillation term 'bank' needs teacher_memory: K cached teacher embeddings "
                              "[K, Dt] that the training step draws from the teacher cache (field `teacher_cache`)")
        if memory.ndim != 2 or memory.shape[1] != self.dims.teacher_dim or memory.shape[0] < 1:
            raise ConfigError(f"distillation term 'bank': teacher_memory must be [K >= 1, {self.dims.teacher_dim}], "
                              f"got {tuple(memory.shape)}")
        return as_float(memory[: self.config.memory]).detach()
