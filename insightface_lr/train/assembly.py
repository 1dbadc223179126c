"""One run's parts composed: data, student, classifier, teacher and distiller, and the step over them.

:mod:`.parts` builds each piece from the config; this module wires them in the one order that keeps ranks in
step (the seed first, so every rank draws the same student) and hands the trainer a :class:`RunParts`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
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
    init_head_from_centres,
    wrap_student,
)
from .step import DistillStep
from .student_init import StudentInit, load_student_init
from .teacher_outputs import prepare_teacher_outputs
from .teacher_view import build_teacher_view


@dataclass
class RunParts:
    """What :func:`build_run` composes: the indexed data, the trained modules and the step over them."""

    dataset: IndexedDataset
    num_classes: int
    student: nn.Module
    classifier: ShardedMarginClassifier
    distiller: Distiller
    step: DistillStep
    cfg: TrainConfig  # the config as run: network and sizes of the pretrained start when there is one
    start: StudentInit | None = None


def build_run(cfg: TrainConfig, ctx: DistContext, device: torch.device, progress: bool) -> RunParts:
    """Data, student, classifier, teacher and distiller, composed into the step's forward pass."""
    teacher = build_teacher(cfg, device)
    start = load_student_init(cfg, teacher, device)  # a pretrained network to fine-tune (None: a new one)
    cfg = start.resolve(cfg) if start is not None else cfg
    torch.manual_seed(cfg.seed)  # identical student init on every rank
    dataset, num_classes = build_dataset(cfg)
    student = (start.module if start is not None else build_student(cfg)).to(device)
    classifier = build_classifier(cfg, num_classes, ctx).to(device)
    init_centres(classifier, cfg.seed)
    head_centres = cfg.head_init == "teacher_centres" or (cfg.head_init == "auto" and start is not None)
    if head_centres and teacher is None:
        raise ConfigError("field `head_init`: teacher_centres needs field `teacher` (the centres are its embeddings)")
    distiller = build_run_distiller(cfg, teacher, num_classes).to(device)
    degrade = build_degrade(cfg)
    view = build_teacher_view(cfg.teacher_view, degrade)
    outputs = prepare_teacher_outputs(cfg, ctx, dataset, num_classes, teacher, distiller, progress, head_centres,
                                      view)
    if head_centres:
        init_head_from_centres(classifier, outputs.centres)
    step = DistillStep(wrap_student(student, ctx, cfg.channels_last), student, classifier, distiller, outputs,
                       degrade, ctx,
                       cfg.seed, cfg.margin_weight, amp=device.type == "cuda" and cfg.fp16,
                       channels_last=cfg.channels_last)
    return RunParts(IndexedDataset(dataset), num_classes, student, classifier, distiller, step, cfg, start)
