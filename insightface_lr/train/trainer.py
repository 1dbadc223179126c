"""The training loop: an LR student distilled from a frozen HR teacher, single process or ``torchrun``.

One loop serves every method: a method is a registered distiller (``--distill aird``), never a fork of
this file. DDP wraps the student only; the sharded margin classifier is never wrapped (each rank owns
different class centres) and the distiller's few parameters are averaged by hand. The teacher is frozen
and, by default, replaced after its first pass by the memory-mapped teacher cache.

Resuming is exact: every random draw is a function of (seed, epoch, step, sample index), and a
checkpoint holds the model, head shard, distiller, optimiser, scheduler, AMP scaler and torch RNG.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ..data.degrade import DegradeConfig
from ..errors import ConfigError, InsightFaceLRError
from ..losses.distiller import DistillInputs
from ..losses.partial_fc import gather_rows
from . import parts
from .callbacks import TrainLogger, VerificationCallback
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .distributed import DistContext, all_reduce_mean_, barrier, resolve_device
from .sampler import ResumableDistributedSampler
from .schedule import build_optimizer, build_scheduler
from .teacher_cache import cache_key, file_fingerprint, open_or_build_cache
from .views import make_views

CHECKPOINT_NAME = re.compile(r"step(\d+)_rank(\d+)\.pt$")
FULL_INIT_LIMIT = 50_000_000  # class centres initialised from one global draw below this many values


class TrainingDivergedError(InsightFaceLRError):
    """The loss became NaN or infinite."""


class Trainer:
    def __init__(self, cfg: TrainConfig, ctx: DistContext | None = None, progress: bool = True) -> None:
        self.cfg = cfg
        self.ctx = ctx or DistContext(device=resolve_device(cfg.device))
        self.device = self.ctx.device
        self.output = Path(cfg.output or "work_dirs/insightface_lr")
        self.progress = progress
        torch.manual_seed(cfg.seed)  # identical student init on every rank
        dataset, self.num_classes = parts.build_dataset(cfg)
        self.dataset = parts.IndexedDataset(dataset)
        self.student = parts.build_student(cfg).to(self.device)
        self.classifier = parts.build_classifier(cfg, self.num_classes, self.ctx).to(self.device)
        self._init_centres()
        self.teacher = parts.build_teacher(cfg, self.device)
        self.distiller = parts.build_run_distiller(cfg, self.teacher, self.num_classes).to(self.device)
        self.cache, self.teacher_centres = self._prepare_teacher_outputs(dataset)
        self.degrade = self._degrade_config()
        self.sampler = ResumableDistributedSampler(
            len(dataset), cfg.batch_size * self.ctx.world_size, self.ctx.rank, self.ctx.world_size, cfg.seed
        )
        self.steps_per_epoch = self.sampler.steps_per_epoch
        self.total_steps = cfg.max_steps or cfg.num_epoch * self.steps_per_epoch
        params = [*self.student.parameters(), *self.classifier.parameters(), *self.distiller.parameters()]
        self.optimizer = build_optimizer(cfg.optimizer, params, cfg.lr, cfg.momentum, cfg.weight_decay)
        warmup = cfg.warmup_epoch * self.steps_per_epoch
        self.scheduler = build_scheduler(self.optimizer, warmup, self.total_steps)
        self.amp = self.device.type == "cuda" and cfg.fp16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.model = self._wrap_student()
        self.step = 0
        self._remove_torn_checkpoints()
        if cfg.resume:
            self._resume()
        self.logger = TrainLogger(self.output, self.total_steps, self.step,
                                  cfg.batch_size * self.ctx.world_size, enabled=progress and self.ctx.is_main)
        val_sizes = cfg.val_sizes or cfg.lr_sizes
        self.verification = (VerificationCallback(str(parts.rec_path(cfg).parent), cfg.val_targets, val_sizes,
                                                  cfg.student_input_size) if self.ctx.is_main else None)

    # ----- setup helpers -----
    def _init_centres(self) -> None:
        """Draw all class centres from one seeded tensor and keep this rank's rows, so a run's
        initial state does not depend on the number of processes (when the table is not huge)."""
        c, d = self.num_classes, self.cfg.embedding_size
        if c * d > FULL_INIT_LIMIT:
            return
        full = torch.normal(0.0, 0.01, (c, d), generator=torch.Generator().manual_seed(self.cfg.seed + 1))
        start = self.classifier.class_start
        with torch.no_grad():
            self.classifier.weight.copy_(full[start:start + self.classifier.num_local])

    def _degrade_config(self) -> DegradeConfig:
        fields = {"sizes": self.cfg.lr_sizes, "output_size": self.cfg.student_input_size,
                  "seed": self.cfg.seed, **dict(self.cfg.degrade)}
        try:
            return DegradeConfig(**fields)
        except TypeError as exc:
            raise ConfigError(f"field `degrade`: {exc}") from None

    def _prepare_teacher_outputs(self, dataset):
        if self.teacher is None:
            return None, None
        uses_centres = self.distiller.uses_teacher_centres
        if not (self.cfg.teacher_cache or uses_centres):
            return None, None
        key = cache_key(self.teacher.checksum, file_fingerprint(parts.rec_path(self.cfg)), 112)
        root = self.output / "teacher_cache"
        if self.ctx.is_main:  # one rank computes, the others wait and then map the same file
            open_or_build_cache(root, key, dataset, self.teacher, device=self.device,
                                num_workers=self.cfg.num_workers, progress=self.progress)
        barrier(self.ctx)
        cache = open_or_build_cache(root, key, dataset, self.teacher, device=self.device, progress=False)
        centres = None
        if uses_centres:
            labels = torch.as_tensor(dataset.labels)
            centres = parts.TeacherCentres.from_cache(cache.embeddings, labels, self.num_classes).centres
            centres = centres.to(self.device)
        return (cache if self.cfg.teacher_cache else None), centres

    def _wrap_student(self) -> torch.nn.Module:
        if self.device.type == "cuda":
            self.student = self.student.to(memory_format=torch.channels_last)
        if not self.ctx.distributed:
            return self.student
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(self.student, device_ids=device_ids)

    # ----- one step -----
    def _teacher_embeddings(self, views, indices: Tensor) -> Tensor | None:
        if self.teacher is None:
            return None
        if self.cache is not None:
            return self.cache.lookup(indices.cpu(), views.flipped.cpu()).to(self.device)
        return self.teacher(views.hr).float()

    def train_step(self, images: Tensor, labels: Tensor, indices: Tensor, epoch: int) -> dict[str, float]:
        images, labels = images.to(self.device, non_blocking=True), labels.to(self.device).long()
        views = make_views(images, indices, self.degrade, self.cfg.seed, epoch, self.step, self.ctx.rank)
        autocast = (torch.autocast("cuda", dtype=torch.float16) if self.amp else contextlib.nullcontext())
        with autocast:
            lr_input = views.lr.contiguous(memory_format=torch.channels_last) if self.device.type == "cuda" \
                else views.lr
            embedding = self.model(lr_input).float()
        margin_loss = self.classifier(embedding, labels)
        total, named = margin_loss * self.cfg.margin_weight, {"margin": margin_loss.detach()}
        teacher = self._teacher_embeddings(views, indices)
        if teacher is not None and len(self.distiller.terms):
            inputs = DistillInputs(student=embedding, teacher=teacher, labels=labels,
                                   teacher_centres=self.teacher_centres)
            if self.ctx.distributed and self.distiller.uses_teacher_bank:  # relations over the global batch
                sizes = [labels.numel()] * self.ctx.world_size  # the sampler gives every rank a full batch
                inputs = replace(inputs, teacher_bank=gather_rows(teacher.detach(), sizes),
                                 labels_bank=gather_rows(labels, sizes))
            distill_total, distill_parts = self.distiller(inputs)
            total = total + distill_total
            named.update(distill_parts)
        named["loss"] = total.detach()
        values = self._global_mean(named)
        if not torch.isfinite(total):
            raise TrainingDivergedError(f"step {self.step}: loss is {values['loss']}; parts: {values}")
        self._backward_and_step(total)
        return values

    def _global_mean(self, named: dict[str, Tensor]) -> dict[str, float]:
        """Loss parts averaged over ranks, so the logged curve is that of the global batch (per-rank
        distillation terms are means over the local batch; DDP averages their gradients the same way)."""
        stacked = torch.stack([v.float().reshape(()) for v in named.values()])
        all_reduce_mean_([stacked], self.ctx)
        return dict(zip(named, stacked.tolist(), strict=True))

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

    # ----- loop -----
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
                    lr = self.optimizer.param_groups[0]["lr"]
                    self.logger.step(self.step, values, lr, self.cfg.frequent)
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
        if self.verification is None or not self.verification.sets:
            return {}
        self.student.eval()
        results = self.verification(self.student, self.device)
        self.student.train()
        self.logger.scalars(self.step, results)
        return results

    def _finish(self) -> Path:
        from ..models.teacher import save_student

        results = self.validate()
        path = self.output / "student.pt"
        if self.ctx.is_main:
            meta = {"distill": self.cfg.distill, "steps": self.step, "lr_sizes": list(self.cfg.lr_sizes),
                    "verification": results}
            save_student(path, self.student, meta, network=self.cfg.network)
        barrier(self.ctx)
        return path

    # ----- checkpoints -----
    def _checkpoint_path(self, step: int, rank: int) -> Path:
        return self.output / "checkpoints" / f"step{step:08d}_rank{rank}.pt"

    def state_dict(self) -> dict:
        return {
            "step": self.step, "world_size": self.ctx.world_size,
            "student": self.student.state_dict(), "classifier": self.classifier.state_dict(),
            "distiller": self.distiller.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }

    def save(self) -> None:
        save_checkpoint(self._checkpoint_path(self.step, self.ctx.rank), self.state_dict())
        barrier(self.ctx)
        if self.ctx.is_main:  # keep the two newest complete steps
            for step in sorted(self._complete_steps())[:-2]:
                for rank in range(self.ctx.world_size):
                    self._checkpoint_path(step, rank).unlink(missing_ok=True)

    def _complete_steps(self) -> set[int]:
        found: dict[int, set[int]] = {}
        for path in (self.output / "checkpoints").glob("step*_rank*.pt"):
            match = CHECKPOINT_NAME.search(path.name)
            if match:
                found.setdefault(int(match[1]), set()).add(int(match[2]))
        return {s for s, ranks in found.items() if ranks >= set(range(self.ctx.world_size))}

    def _remove_torn_checkpoints(self) -> None:
        """Delete this rank's temp files left by a process killed inside ``save_checkpoint``: they are
        never read (not under a checkpoint name) but each is a full-size checkpoint's worth of disk."""
        for path in (self.output / "checkpoints").glob(f".step*_rank{self.ctx.rank}.pt.*.tmp"):
            path.unlink(missing_ok=True)

    def _resume(self) -> None:
        steps = self._complete_steps()
        if not steps:
            return  # nothing saved yet: start from scratch, as arcface_torch does
        state = load_checkpoint(self._checkpoint_path(max(steps), self.ctx.rank), map_location=self.device)
        if state["world_size"] != self.ctx.world_size:
            raise ConfigError(f"--resume: checkpoint was written by {state['world_size']} processes, "
                              f"this run has {self.ctx.world_size}")
        self.student.load_state_dict(state["student"])
        self.classifier.load_state_dict(state["classifier"])
        self.distiller.load_state_dict(state["distiller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        self.step = int(state["step"])
