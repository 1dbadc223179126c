"""The training loop: an LR student distilled from a frozen HR teacher, single process or ``torchrun``.

One loop serves every method: a method is a registered distillation term (``--distill aird``) that
:class:`~insightface_lr.train.step.DistillStep` computes, never a fork of this file. The trainer composes the
parts, loops, steps the optimiser, logs, validates, saves and resumes. DDP wraps the student only; the
sharded classifier is never wrapped and the distiller's few parameters are averaged by hand.

Resuming is exact: every random draw is a function of (seed, epoch, step, sample index), and a
checkpoint holds the model, head shard, distiller, optimiser, scheduler, AMP scaler and torch RNG.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ..devices import resolve_device
from ..errors import ConfigError, InsightFaceLRError
from . import parts
from .assembly import build_run
from .callbacks import TrainLogger
from .checkpoint import CheckpointFolder
from .config import TrainConfig
from .distributed import DistContext, all_reduce_mean_, barrier, global_mean
from .run_record import claim_output, notice, plain_config, run_record, write_run_file
from .sampler import ResumableDistributedSampler
from .schedule import build_optimizer, build_scheduler

# the parts of a checkpoint restored with ``load_state_dict`` (plus "step", "world_size", "torch_rng", and
# "run": the config it was trained with, see run_record)
STATEFUL = ("student", "classifier", "distiller", "optimizer", "scheduler", "scaler")


class TrainingDivergedError(InsightFaceLRError):
    """The loss became NaN or infinite."""


class Trainer:
    """The training loop of ``insightface-lr train``: one process, or one rank under ``torchrun``.

    ``Trainer(cfg, ctx, progress).fit()`` trains ``cfg`` (a :class:`~insightface_lr.train.config.TrainConfig`)
    and returns the path of the saved ``student.pt``. The output folder, checkpoints, ``--resume`` and logs
    follow the README's "Training" section."""

    def __init__(self, cfg: TrainConfig, ctx: DistContext | None = None, progress: bool = True) -> None:
        self.cfg, self.progress = cfg, progress
        self.ctx = ctx or DistContext(device=resolve_device(cfg.device, source="field `device`"))
        self.device = self.ctx.device
        self.output = Path(cfg.output or "work_dirs/insightface_lr")
        self.record = run_record(cfg)
        self.checkpoints = CheckpointFolder(self.output / "checkpoints", self.ctx)
        resumed = claim_output(cfg, self.output, self.checkpoints, self.ctx, self.device)
        if cfg.fp16 and self.device.type != "cuda":
            notice(self.ctx, f"warning: field `fp16`: mixed precision needs CUDA; training in float32 on {self.device}")
        run = build_run(cfg, self.ctx, self.device, self.progress)
        self.cfg, self.start = run.cfg, run.start  # the network and sizes as run (a pretrained start's)
        self.dataset, self.num_classes, self.step_fn = run.dataset, run.num_classes, run.step
        self.student, self.classifier, self.distiller = run.student, run.classifier, run.distiller
        self.accumulate = cfg.gradient_acc
        global_batch = cfg.batch_size * self.ctx.world_size
        self.sampler = ResumableDistributedSampler(len(self.dataset), global_batch, self.ctx.rank,
                                                   self.ctx.world_size, cfg.seed)
        # steps are optimiser steps: each one takes `gradient_acc` micro-batches of the sampler
        self.steps_per_epoch = self.sampler.steps_per_epoch // self.accumulate
        if self.steps_per_epoch < 1:
            raise ConfigError(f"field `gradient_acc`: {self.accumulate} micro-batches per step, but an epoch "
                              f"has only {self.sampler.steps_per_epoch} batches of {global_batch}")
        self.total_steps = cfg.max_steps or cfg.num_epoch * self.steps_per_epoch
        params = [*self.student.parameters(), *self.classifier.parameters(), *self.distiller.parameters()]
        self.optimizer = build_optimizer(cfg.optimizer, params, cfg.lr, cfg.momentum, cfg.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, cfg.warmup_epoch * self.steps_per_epoch, self.total_steps)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.step_fn.amp)
        self.step = 0
        self.stop_requested = False  # set by a signal handler: fit() stops after the current step
        self.checkpoints.remove_torn()
        if resumed is not None:
            self._load(resumed)
        self.logger: TrainLogger | None = None  # opened by fit(): a Trainer that never trains writes nothing
        self.verification = parts.build_verification(self.cfg) if self.ctx.is_main else None

    def train_step(self, images: Tensor, labels: Tensor, indices: Tensor, epoch: int) -> dict[str, float]:
        """One optimiser step on one batch (``gradient_acc`` = 1)."""
        return self.accumulate_step([(images, labels, indices)], epoch)

    def accumulate_step(self, batches: Sequence[tuple[Tensor, Tensor, Tensor]], epoch: int) -> dict[str, float]:
        """One optimiser step on ``len(batches)`` micro-batches, as arcface_torch accumulates: each backward
        takes loss / N, so the gradient is that of the mean loss over all N batches. Returns the mean parts."""
        count = len(batches)
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, Tensor] = {}
        for micro, (images, labels, indices) in enumerate(batches):
            # distinct degradation draws per micro-batch; with one batch per step this is the step itself
            named = self.step_fn(images, labels, indices, epoch, self.step * count + micro)
            values = global_mean({k: v.detach() for k, v in named.items()}, self.ctx)
            if not torch.isfinite(named["loss"]):
                raise TrainingDivergedError(f"step {self.step}: loss is {values['loss']}; parts: {values}")
            sync = micro == count - 1 or not self.ctx.distributed
            with contextlib.nullcontext() if sync else self.step_fn.model.no_sync():
                self.scaler.scale(named["loss"] / count).backward()
            for key, value in values.items():
                sums[key] = sums.get(key, 0.0) + value
        self._optimizer_step()
        return {key: value / count for key, value in sums.items()}

    def _optimizer_step(self) -> None:
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
        if self.ctx.is_main:
            write_run_file(self.output, self.record)
        self.logger = TrainLogger(self.output, self.total_steps, self.step, self.cfg.batch_size
                                  * self.ctx.world_size * self.accumulate, enabled=self.ctx.is_main,
                                  progress=self.progress, header=plain_config(self.cfg))  # as run, resolved
        self.student.train()
        try:
            while self.step < self.total_steps:
                epoch, in_epoch = divmod(self.step, self.steps_per_epoch)
                self.sampler.set_position(epoch, in_epoch * self.accumulate)
                self._train_epoch(iter(loader), epoch)
            return self._finish()
        finally:
            self.logger.close()

    def _train_epoch(self, batches: Iterator, epoch: int) -> None:
        """Optimiser steps to the end of ``epoch`` (or of training); micro-batches left over are dropped."""
        end = min((epoch + 1) * self.steps_per_epoch, self.total_steps)
        while self.step < end:
            values = self.accumulate_step([next(batches) for _ in range(self.accumulate)], epoch)
            self.logger.step(self.step, values, self.optimizer.param_groups[0]["lr"], self.cfg.frequent)
            self._periodic(epoch_end=self.step % self.steps_per_epoch == 0)
            if self.stop_requested:
                raise KeyboardInterrupt

    def _periodic(self, epoch_end: bool) -> None:
        every = self.cfg.checkpoint_every
        if (every and self.step % every == 0) or (not every and epoch_end) or self.step == self.total_steps:
            self.save()
        if self.cfg.verbose and self.step % self.cfg.verbose == 0 and self.step != self.total_steps:
            self.validate()

    def validate(self) -> dict[str, float]:
        """Verification accuracy on the config's ``val_targets`` at HR and every LR size (empty without them)."""
        results = self.verification.evaluate(self.student, self.device) if self.verification else {}
        if results and self.logger is not None:
            self.logger.scalars(self.step, results)
        return results

    def _finish(self) -> Path:
        from ..models.student_file import save_student

        results = self.validate()
        path = self.output / "student.pt"
        if self.ctx.is_main:
            meta = {"distill": self.cfg.distill, "steps": self.step, "lr_sizes": list(self.cfg.lr_sizes),
                    "verification": results, "config_hash": self.record["hash"],
                    "started_from": self.start.meta if self.start is not None else None}
            save_student(path, self.student, meta, network=self.cfg.network, plugins=self.cfg.plugins)
        barrier(self.ctx)
        return path

    def state_dict(self) -> dict:
        """Everything an exact resume needs: step, model/optimiser/schedule/sampler states, RNG and the run record."""
        state = {name: getattr(self, name).state_dict() for name in STATEFUL}
        return {"step": self.step, "world_size": self.ctx.world_size, **state, "torch_rng": torch.get_rng_state(),
                "run": self.record}

    def save(self) -> None:
        """An atomic checkpoint of :meth:`state_dict` at the current step."""
        self.checkpoints.save(self.step, self.state_dict())

    def _load(self, state: dict) -> None:
        for name in STATEFUL:
            getattr(self, name).load_state_dict(state[name])
        torch.set_rng_state(state["torch_rng"])
        self.step = int(state["step"])
