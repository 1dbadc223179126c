"""Compose registered distillation terms from a ``--distill aird+ccface`` style spec.

Every distillation term is an ``nn.Module`` registered with ``@register_distill_term(name)`` and built as
``DISTILL_TERMS.build(name, dims, **config_fields)``; its ``forward(inputs)`` returns a flat dict of
tensors with a ``"loss"`` key (already weighted by the term's own alpha/beta) plus named parts for
logging. The :class:`Distiller` sums ``weight * loss`` over the selected terms.

A user's term registered from a plugin module only needs the same signature: ``(dims, **fields)``
-> module whose forward takes :class:`DistillInputs` and returns ``{"loss": ..., ...}``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import DISTILL_TERMS
from .scale import FirstValueScale


@dataclass
class DistillInputs:
    """What the trainer hands to every term for one batch of B faces."""

    student: Tensor  # [B, Ds] student embedding of the LR view (requires grad)
    teacher: Tensor  # [B, Dt] teacher embedding of the HR view (no grad; may come from a cache)
    labels: Tensor  # [B] int64 global identity labels
    teacher_centres: Tensor | None = None  # [C, Dt] frozen teacher classifier W_t, or None
    # filled by the training step only for terms that set ``uses_student_logits`` / ``uses_student_hr``
    student_logits: Tensor | None = None  # [B, C] the student classifier's cosine logits (unscaled), or None
    student_hr: Tensor | None = None  # [B, Ds] student embedding of the HR view (resized to its input), or None
    # under DDP: the teacher embeddings and labels of the global batch (every rank's rows, this one's
    # included), so batch relations span the global batch as in one process; None = the local batch
    teacher_bank: Tensor | None = None  # [N, Dt]
    labels_bank: Tensor | None = None  # [N]
    # filled only when a term sets ``uses_teacher_memory`` = K > 0: K cached teacher embeddings of random training
    # faces (random mirror), drawn anew each step from (seed, epoch, step, rank); rows in random order
    teacher_memory: Tensor | None = None  # [K, Dt]


@dataclass(frozen=True)
class DistillDims:
    """Sizes a term needs to build its parameters (adaptors, predictors)."""

    student_dim: int
    teacher_dim: int
    num_classes: int


def as_float(x: Tensor) -> Tensor:
    """Half/bfloat16 -> float32 (softmax over s=64 logits and KL overflow in fp16); float64 kept."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def make_adaptor(in_dim: int, out_dim: int) -> nn.Module:
    """Learnable linear map student -> teacher space when the widths differ, else identity."""
    return nn.Identity() if in_dim == out_dim else nn.Linear(in_dim, out_dim, bias=False)


def make_config(config_class: type, term: str, fields: Mapping[str, Any]) -> Any:
    """Build a frozen config dataclass; an unknown field is a ConfigError listing the valid ones."""
    valid = [f.name for f in dataclasses.fields(config_class)]
    unknown = sorted(set(fields) - set(valid))
    if unknown:
        raise ConfigError(
            f"distillation term {term!r} config: unknown field(s) {', '.join(unknown)}; "
            f"valid fields: {', '.join(valid)}"
        )
    return config_class(**fields)


def check_positive(term: str, **values: float) -> None:
    """Config validation shared by the terms' ``__post_init__``."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"distillation term {term!r} config: field {name} must be > 0, got {value!r}")


class DistillTerm(nn.Module):
    """Base of the built-in terms: holds dims and a validated frozen config."""

    name: ClassVar[str] = "?"
    config_class: ClassVar[type]
    #: the term cannot run without ``inputs.teacher_centres``
    requires_teacher_centres: ClassVar[bool] = False
    #: the term uses ``inputs.teacher_centres`` when given (the trainer should pass them if it has them)
    uses_teacher_centres: ClassVar[bool] = False
    #: the term relates faces across the batch: under DDP the trainer passes the global batch's teacher rows
    uses_teacher_bank: ClassVar[bool] = False
    #: the term reads ``inputs.student_logits`` (the training step computes them only when a term asks)
    uses_student_logits: ClassVar[bool] = False
    #: the term reads ``inputs.student_hr`` (costs a second student forward, so only when a term asks)
    uses_student_hr: ClassVar[bool] = False
    #: rows K of ``inputs.teacher_memory`` the term reads (0: none; the step draws them from the teacher cache)
    uses_teacher_memory: ClassVar[int] = 0

    def __init__(self, dims: DistillDims, **fields: Any) -> None:
        super().__init__()
        self.dims = dims
        self.config = make_config(self.config_class, self.name, fields)

    def pair(self, inputs: DistillInputs) -> tuple[Tensor, Tensor]:
        """(student [B, Ds], teacher [B, Dt] detached) in float32/64, with shapes checked."""
        student, teacher = as_float(inputs.student), as_float(inputs.teacher).detach()
        expected = (self.dims.student_dim, self.dims.teacher_dim)
        if student.ndim != 2 or teacher.ndim != 2 or (student.shape[1], teacher.shape[1]) != expected:
            raise ConfigError(
                f"distillation term {self.name!r}: expected student [B, {expected[0]}] and "
                f"teacher [B, {expected[1]}] "
                f"(DistillDims), got {tuple(student.shape)} and {tuple(teacher.shape)}"
            )
        if student.shape[0] != teacher.shape[0]:
            raise ConfigError(f"distillation term {self.name!r}: student and teacher batch sizes differ")
        return student, teacher

    def centres(self, inputs: DistillInputs, required: bool = True) -> Tensor | None:
        """Teacher classifier W_t [C, Dt] (detached), or a ConfigError naming what is missing."""
        w = inputs.teacher_centres
        if w is None:
            if required:
                raise ConfigError(
                    f"distillation term {self.name!r} needs teacher_centres: the frozen teacher classifier W_t "
                    f"[num_classes, {self.dims.teacher_dim}] trained on the same identities "
                    "(teacher checkpoint with its margin head / partial-FC weights)"
                )
            return None
        if w.ndim != 2 or w.shape[1] != self.dims.teacher_dim:
            raise ConfigError(
                f"distillation term {self.name!r}: teacher_centres must be [C, {self.dims.teacher_dim}], "
                f"got {tuple(w.shape)}"
            )
        return as_float(w).detach()


class Distiller(nn.Module):
    """Weighted sum of named terms; ``forward(inputs) -> (total, parts)``.

    ``parts`` maps ``"<term>/<part>"`` to detached scalars for logging (``"aird/loss"``,
    ``"aird/instance"``, ...); ``total = sum_k weight_k * term_k(inputs)["loss"]``.
    """

    def __init__(self, terms: Mapping[str, nn.Module], weights: Mapping[str, float] | None = None,
                 normalise: bool = False) -> None:
        """``normalise``: each term's loss in units of its own first-step value (:mod:`.scale`), so that a
        weight means the same for every term."""
        super().__init__()
        self.terms = nn.ModuleDict(dict(terms))
        weights = dict(weights or {})
        self.weights = {name: float(weights.get(name, 1.0)) for name in self.terms}
        self.scales = nn.ModuleDict({name: FirstValueScale() for name in self.terms} if normalise else {})

    @property
    def requires_teacher_centres(self) -> bool:
        """Some term cannot run without ``teacher_centres`` ``[C, Dt]`` (the step computes them)."""
        return self._any_term("requires_teacher_centres")

    @property
    def uses_teacher_centres(self) -> bool:
        """Some term reads ``teacher_centres`` when they exist (required or optional)."""
        return self.requires_teacher_centres or self._any_term("uses_teacher_centres")

    @property
    def uses_teacher_bank(self) -> bool:
        """Some term reads ``teacher_bank``/``labels_bank`` (under DDP: the global batch's teacher rows)."""
        return self._any_term("uses_teacher_bank")

    @property
    def uses_student_logits(self) -> bool:
        """Some term reads ``student_logits`` ``[B, C]`` (the student classifier's unscaled cosines)."""
        return self._any_term("uses_student_logits")

    @property
    def uses_student_hr(self) -> bool:
        """Some term reads ``student_hr`` ``[B, Ds]`` (a second student forward on the HR view)."""
        return self._any_term("uses_student_hr")

    @property
    def uses_teacher_memory(self) -> int:
        """Rows K of ``teacher_memory`` ``[K, Dt]`` to draw: the most any term asks for (0: none); a term that asks
        for fewer reads a prefix (the rows are in random order)."""
        return max((int(getattr(t, "uses_teacher_memory", 0)) for t in self.terms.values()), default=0)

    def _any_term(self, flag: str) -> bool:
        """A term without the flag (a plugin's plain ``nn.Module``) does not ask for that input."""
        return any(getattr(t, flag, False) for t in self.terms.values())

    def forward(self, inputs: DistillInputs) -> tuple[Tensor, dict[str, Tensor]]:
        """``(total, parts)``: the weighted sum of the terms' ``"loss"`` (a scalar, computed in float32) and
        every term's outputs, detached, as ``"<term>/<key>"``."""
        total = torch.zeros((), device=inputs.student.device)
        parts: dict[str, Tensor] = {}
        for name, term in self.terms.items():
            # losses in fp32 even inside the trainer's AMP region: s = 64 logits, exp and KL need the range
            with torch.autocast(inputs.student.device.type, enabled=False):
                out = term(inputs)
            if "loss" not in out:
                raise ConfigError(f"distillation term {name!r} returned no 'loss' key (got {sorted(out)})")
            loss = self.scales[name](out["loss"]) if name in self.scales else out["loss"]
            total = total + self.weights[name] * loss
            for key, value in out.items():
                parts[f"{name}/{key}"] = value.detach().float()
            if name in self.scales:
                parts[f"{name}/scaled"] = loss.detach().float()
        return total, parts


def parse_spec(spec: str) -> list[str]:
    """``"aird+ccface"`` -> ``["aird", "ccface"]``; ``"none"`` or ``""`` -> ``[]``."""
    names = [token.strip() for token in spec.split("+")] if spec.strip() else []
    if names == ["none"]:
        return []
    if "none" in names or "" in names:
        raise ConfigError(f"--distill {spec!r}: 'none' and empty names cannot be combined with other terms")
    if len(set(names)) != len(names):
        raise ConfigError(f"--distill {spec!r}: a term is listed twice")
    return names


def build_distiller(
    spec: str,
    dims: DistillDims,
    config: Mapping[str, Mapping[str, Any]] | None = None,
    weights: Mapping[str, float] | None = None,
    normalise: bool = False,
) -> Distiller:
    """Build the terms named in ``spec`` (each from ``DISTILL_TERMS``) with their config fields;
    ``normalise``: each term in units of its first-step value (:class:`Distiller`).

    ``config`` and ``weights`` are keyed by term name. A key naming a registered loss that is not
    selected is ignored (one recipe may configure several terms); any other key is a ConfigError.
    An unknown term name raises RegistryError listing the registered ones.
    """
    names = parse_spec(spec)
    config, weights = dict(config or {}), dict(weights or {})
    for field, mapping in (("field `distill_config`", config), ("field `distill_weights`", weights)):
        stray = sorted(k for k in mapping if k not in names and k not in DISTILL_TERMS)
        if stray:
            raise ConfigError(f"{field}: unknown term(s) {', '.join(stray)}; selected terms: {names}")
    terms: dict[str, nn.Module] = {}
    for name in names:
        term = DISTILL_TERMS.build(name, dims, **dict(config.get(name, {})))
        if not isinstance(term, nn.Module):
            raise ConfigError(f"distillation term {name!r} must build an nn.Module, got {type(term).__name__}")
        terms[name] = term
    return Distiller(terms, {n: weights[n] for n in names if n in weights}, normalise=normalise)
