"""One run's parts composed: data, student, classifier, teacher and distiller, and the step over them.

:mod:`.parts` builds each piece from the config; this module wires them in the one order that keeps ranks in
step (the seed first, so every rank draws the same student) and hands the trainer a :class:`RunParts`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..losses.distiller import Distiller
from ..losses.partial_fc import ShardedMarginClassifier
from .config import TrainConfig
from .distributed import DistContext
from .parts import (
    IndexedDataset,
    build_classifier,
    build_dataset,
    build_degrade,
    build_run_distiller,
    build_student,
    build_teacher,
    init_centres,
    wrap_student,
)
from .step import DistillStep
from .teacher_outputs import prepare_teacher_outputs


@dataclass
class RunParts:
    """What :func:`build_run` composes: the indexed data, the trained modules and the step over them."""

    dataset: IndexedDataset
    num_classes: int
    student: nn.Module
    classifier: ShardedMarginClassifier
    distiller: Distiller
    step: DistillStep


def build_run(cfg: TrainConfig, ctx: DistContext, device: torch.device, progress: bool) -> RunParts:
    """Data, student, classifier, teacher and distiller, composed into the step's forward pass."""
    torch.manual_seed(cfg.seed)  # identical student init on every rank
    dataset, num_classes = build_dataset(cfg)
    student = build_student(cfg).to(device)
    classifier = build_classifier(cfg, num_classes, ctx).to(device)
    init_centres(classifier, cfg.seed)
    teacher = build_teacher(cfg, device)
    distiller = build_run_distiller(cfg, teacher, num_classes).to(device)
    outputs = prepare_teacher_outputs(cfg, ctx, dataset, num_classes, teacher, distiller, progress)
    step = DistillStep(wrap_student(student, ctx), student, classifier, distiller, outputs, build_degrade(cfg), ctx,
                       cfg.seed, cfg.margin_weight, amp=device.type == "cuda" and cfg.fp16)
    return RunParts(IndexedDataset(dataset), num_classes, student, classifier, distiller, step)
