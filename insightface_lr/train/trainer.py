"""The training loop: an LR student distilled from a frozen HR teacher, single process or ``torchrun``.

One loop serves every method: a method is a registered distillation term (``--distill aird``) that
:class:`~insightface_lr.train.step.DistillStep` computes, never a fork of this file. The trainer composes the
parts, loops, steps the optimiser, logs, validates, saves and resumes. DDP wraps the student only; the
sharded classifier is never wrapped and the distiller's few parameters are averaged by hand.

Resuming is exact: every random draw is a function of (seed, epoch, step, sample index), and a
checkpoint holds the model, head shard, distiller, optimiser, scheduler, AMP scaler and torch RNG.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ..devices import resolve_device
from ..errors import InsightFaceLRError
from . import parts
from .callbacks import TrainLogger
from .checkpoint import CheckpointFolder
from .config import TrainConfig
from .distributed import DistContext, all_reduce_mean_, barrier, global_mean
from .sampler import ResumableDistributedSampler
from .schedule import build_optimizer, build_scheduler
from .step import DistillStep
from .teacher_outputs import prepare_teacher_outputs

# the parts of a checkpoint restored with ``load_state_dict`` (plus "step", "world_size", "torch_rng")
STATEFUL = ("student", "classifier", "distiller", "optimizer", "scheduler", "scaler")


class TrainingDivergedError(InsightFaceLRError):
    """The loss became NaN or infinite."""


class Trainer:
    def __init__(self, cfg: TrainConfig, ctx: DistContext | None = None, progress: bool = True) -> None:
        self.cfg, self.progress = cfg, progress
        self.ctx = ctx or DistContext(device=resolve_device(cfg.device, source="field `device`"))
        self.device = self.ctx.device
        self.output = Path(cfg.output or "work_dirs/insightface_lr")
        self.step_fn = self._build_parts()
        global_batch = cfg.batch_size * self.ctx.world_size
        self.sampler = ResumableDistributedSampler(len(self.dataset), global_batch, self.ctx.rank,
                                                   self.ctx.world_size, cfg.seed)
        self.steps_per_epoch = self.sampler.steps_per_epoch
        self.total_steps = cfg.max_steps or cfg.num_epoch * self.steps_per_epoch
        params = [*self.student.parameters(), *self.classifier.parameters(), *self.distiller.parameters()]
        self.optimizer = build_optimizer(cfg.optimizer, params, cfg.lr, cfg.momentum, cfg.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, cfg.warmup_epoch * self.steps_per_epoch, self.total_steps)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.step_fn.amp)
        self.step = 0
        self.checkpoints = CheckpointFolder(self.output / "checkpoints", self.ctx)
        self.checkpoints.remove_torn()
        if cfg.resume:
            self._resume()
        self.logger = TrainLogger(self.output, self.total_steps, self.step, global_batch,
                                  enabled=progress and self.ctx.is_main)
        self.verification = parts.build_verification(cfg) if self.ctx.is_main else None

    def _build_parts(self) -> DistillStep:
        """Data, student, classifier, teacher and distiller, composed into the step's forward pass."""
        cfg, ctx = self.cfg, self.ctx
        torch.manual_seed(cfg.seed)  # identical student init on every rank
        dataset, self.num_classes = parts.build_dataset(cfg)
        self.dataset = parts.IndexedDataset(dataset)
        self.student = parts.build_student(cfg).to(self.device)
        self.classifier = parts.build_classifier(cfg, self.num_classes, ctx).to(self.device)
        parts.init_centres(self.classifier, cfg.seed)
        teacher = parts.build_teacher(cfg, self.device)
        self.distiller = parts.build_run_distiller(cfg, teacher, self.num_classes).to(self.device)
        outputs = prepare_teacher_outputs(cfg, ctx, dataset, self.num_classes, teacher, self.distiller,
                                          self.progress)
        return DistillStep(parts.wrap_student(self.student, ctx), self.student, self.classifier, self.distiller,
                           outputs, parts.build_degrade(cfg), ctx, cfg.seed, cfg.margin_weight,
                           amp=self.device.type == "cuda" and cfg.fp16)

    def train_step(self, images: Tensor, labels: Tensor, indices: Tensor, epoch: int) -> dict[str, float]:
        named = self.step_fn(images, labels, indices, epoch, self.step)
        total = named["loss"]
        values = global_mean({k: v.detach() for k, v in named.items()}, self.ctx)
        if not torch.isfinite(total):
            raise TrainingDivergedError(f"step {self.step}: loss is {values['loss']}; parts: {values}")
        self._backward_and_step(total)
        return values

    def _backward_and_step(self, total: Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        all_reduce_mean_([p.grad for p in self.distiller.parameters() if p.grad is not None], self.ctx)
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.student.parameters(), self.cfg.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1

    def fit(self) -> Path:
        """Train to ``total_steps``; returns the path of the saved student."""
        loader = DataLoader(self.dataset, batch_size=self.cfg.batch_size, sampler=self.sampler,
                            num_workers=self.cfg.num_workers, pin_memory=self.device.type == "cuda")
        self.student.train()
        try:
            while self.step < self.total_steps:
                epoch, in_epoch = divmod(self.step, self.steps_per_epoch)
                self.sampler.set_position(epoch, in_epoch)
                for images, labels, indices in loader:
                    values = self.train_step(images, labels, indices, epoch)
                    self.logger.step(self.step, values, self.optimizer.param_groups[0]["lr"], self.cfg.frequent)
                    self._periodic(epoch_end=self.step % self.steps_per_epoch == 0)
                    if self.step >= self.total_steps:
                        break
            return self._finish()
        finally:
            self.logger.close()

    def _periodic(self, epoch_end: bool) -> None:
        every = self.cfg.checkpoint_every
        if (every and self.step % every == 0) or (not every and epoch_end) or self.step == self.total_steps:
            self.save()
        if self.cfg.verbose and self.step % self.cfg.verbose == 0 and self.step != self.total_steps:
            self.validate()

    def validate(self) -> dict[str, float]:
        results = self.verification.evaluate(self.student, self.device) if self.verification else {}
        if results:
            self.logger.scalars(self.step, results)
        return results

    def _finish(self) -> Path:
        from ..models.student_file import save_student

        results = self.validate()
        path = self.output / "student.pt"
        if self.ctx.is_main:
            meta = {"distill": self.cfg.distill, "steps": self.step, "lr_sizes": list(self.cfg.lr_sizes),
                    "verification": results}
            save_student(path, self.student, meta, network=self.cfg.network)
        barrier(self.ctx)
        return path

    def state_dict(self) -> dict:
        state = {name: getattr(self, name).state_dict() for name in STATEFUL}
        return {"step": self.step, "world_size": self.ctx.world_size, **state, "torch_rng": torch.get_rng_state()}

    def save(self) -> None:
        self.checkpoints.save(self.step, self.state_dict())

    def _resume(self) -> None:
        state = self.checkpoints.load_latest(map_location=self.device)
        if state is None:
            return  # nothing saved yet: start from scratch, as arcface_torch does
        for name in STATEFUL:
            getattr(self, name).load_state_dict(state[name])
        torch.set_rng_state(state["torch_rng"])
        self.step = int(state["step"])
