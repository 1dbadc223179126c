"""What one training step computes: batch -> views -> student -> margin head -> teacher -> distiller -> losses.

In the spirit of timm's task wrappers, the :class:`~insightface_lr.train.trainer.Trainer` owns the loop, the
optimiser, the logs and resuming; :class:`DistillStep` owns the forward pass and is the only place that builds
:class:`~insightface_lr.losses.distiller.DistillInputs`. A new method is a distillation term registered from
its own module; it never edits this file or the trainer.

Inputs that cost extra work are computed only when a selected term declares that it reads them (class
attributes on the term, aggregated by the :class:`~insightface_lr.losses.distiller.Distiller`):

- ``uses_student_logits``: the student classifier's unscaled cosines ``[B, C]`` against every class centre
  (all-gathered across the PartialFC shards under model parallelism);
- ``uses_student_hr``: the student's embedding of the HR view, resized to the student's input size as
  evaluation shows it an HR face (a second student forward);
- ``uses_teacher_bank``: under DDP, the teacher rows and labels of the global batch;
- ``uses_teacher_memory`` (K > 0): K cached teacher embeddings of random training faces, drawn per step from
  (seed, epoch, step, rank) (:meth:`~insightface_lr.train.teacher_outputs.TeacherOutputs.memory`), so a
  resumed run draws the same memory; each DDP rank draws its own rows.

A run whose terms ask for none of them computes exactly what it computed before these inputs existed.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from ..data.degrade import DegradeConfig, degrade_to_size
from ..data.pixels import normalize_uint8
from ..losses.distiller import Distiller, DistillInputs
from ..losses.partial_fc import ShardedMarginClassifier, gather_rows
from .distributed import DistContext
from .teacher_outputs import TeacherOutputs
from .views import HR_SIZE, BatchViews, make_views


class DistillStep:
    """``step(images, labels, indices, epoch, step) -> {"margin": ..., "<term>/<part>": ..., "loss": total}``.

    ``model`` is the student as trained (DDP-wrapped under ``torchrun``), ``student`` the bare module (its
    second forward on the HR view bypasses DDP's bookkeeping; the gradients still reach the same
    parameters before DDP's hooks fire). Only ``"loss"`` carries gradient; the other values are detached.
    """

    def __init__(self, model: nn.Module, student: nn.Module, classifier: ShardedMarginClassifier,
                 distiller: Distiller, teacher: TeacherOutputs, degrade: DegradeConfig, ctx: DistContext,
                 seed: int, margin_weight: float = 1.0, amp: bool = False, channels_last: bool = False) -> None:
        self.model, self.student, self.classifier, self.distiller = model, student, classifier, distiller
        self.teacher, self.degrade, self.ctx = teacher, degrade, ctx
        self.seed, self.margin_weight, self.amp, self.channels_last = seed, margin_weight, amp, channels_last

    def __call__(self, images: Tensor, labels: Tensor, indices: Tensor, epoch: int, step: int) -> dict[str, Tensor]:
        device = self.ctx.device
        images, labels = images.to(device, non_blocking=True), labels.to(device).long()
        views = make_views(images, indices, self.degrade, self.seed, epoch, step, self.ctx.rank, self.teacher.view)
        embedding = self.embed(self.model, views.lr)
        margin_loss = self.classifier(embedding, labels)
        total, named = margin_loss * self.margin_weight, {"margin": margin_loss.detach()}
        teacher = (self.teacher.embeddings(views.hr, indices, views.flipped, views.hr_pixels)
                   if len(self.distiller.terms) else None)
        if teacher is not None:
            inputs = self.inputs(views, embedding, teacher, labels, (epoch, step))
            distill_total, distill_parts = self.distiller(inputs)
            total = total + distill_total
            named.update(distill_parts)
        named["loss"] = total
        return named

    def embed(self, model: nn.Module, x: Tensor) -> Tensor:
        """Float32 student embeddings (the forward under AMP on CUDA; channels-last when the student is)."""
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.amp else contextlib.nullcontext()
        with autocast:
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return model(x).float()

    def inputs(self, views: BatchViews, embedding: Tensor, teacher: Tensor, labels: Tensor,
               when: tuple[int, int]) -> DistillInputs:
        """The terms' inputs; the optional ones only when a selected term uses them. ``when``: (epoch, step)."""
        inputs = DistillInputs(student=embedding, teacher=teacher, labels=labels,
                               teacher_centres=self.teacher.centres)
        if self.distiller.uses_student_logits:
            inputs.student_logits = self.classifier.cosine_logits(embedding)
        if self.distiller.uses_student_hr:
            inputs.student_hr = self.embed(self.student, self.student_view(views.hr_pixels))
        if self.ctx.distributed and self.distiller.uses_teacher_bank:  # relations over the global batch
            sizes = [labels.numel()] * self.ctx.world_size  # the sampler gives every rank a full batch
            inputs.teacher_bank = gather_rows(teacher.detach(), sizes)
            inputs.labels_bank = gather_rows(labels, sizes)
        if self.distiller.uses_teacher_memory:  # K random cached teacher rows, a function of (seed, epoch, step, rank)
            inputs.teacher_memory = self.teacher.memory(self.distiller.uses_teacher_memory, self.seed, *when,
                                                        self.ctx.rank, teacher.device)
        return inputs

    def student_view(self, hr_pixels: Tensor) -> Tensor:
        """The HR view at the student's input size, resized as evaluation resizes an HR face for it."""
        return normalize_uint8(degrade_to_size(hr_pixels, HR_SIZE, output_size=int(self.student.input_size)))
