"""Where a batch's teacher embeddings come from: the memory-mapped teacher cache, or the frozen teacher live.

The cache lives in the shared ``teacher_cache_dir`` (one per teacher, data, input size and teacher view, whatever
the method) and is built once, by rank 0 of the first run that needs it (the other ranks wait, then map the same
file; another run wanting it meanwhile waits on its lock and reuses it). It is needed when the run asks for it
(``teacher_cache``, the default) or when a term classifies with the teacher's class centres, which are the
normalised mean cached embedding of each identity.

A term that relates faces to a memory wider than the batch (``uses_teacher_memory`` = K, e.g. ``bank``) gets K
cache rows per step (:meth:`TeacherOutputs.memory`): K distinct random faces of the training set, each with a
random mirror, from a generator seeded by (seed, epoch, step, rank), so a resumed run draws the same memory and
every DDP rank draws its own (each rank's loss is an estimate over its own K anchors; DDP averages them). Such a
term needs the cache (a ConfigError naming `teacher_cache` without it); a training set of fewer than K faces
gives all of its faces, every step, in a random order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..errors import ConfigError
from ..losses.distiller import Distiller
from .config import TrainConfig
from .distributed import DistContext, barrier
from .parts import TeacherCentres, rec_path
from .run_record import notice
from .teacher_cache import TeacherCache, cache_key, default_cache_dir, file_fingerprint, open_or_build_cache
from .teacher_view import TeacherView

TEACHER_INPUT_SIZE = 112
MEMORY_SALT = 0x6A09E667F3BCC909  # keeps the memory's draws apart from the degradation's (seed, step, rank) ones


def memory_generator(seed: int, epoch: int, step: int, rank: int) -> torch.Generator:
    """A fresh generator per (seed, epoch, step, rank): the draw never depends on the global RNG or on history."""
    mixed = ((((seed * 1_000_003 + epoch) * 1_000_003 + step) * 101 + rank) ^ MEMORY_SALT) % 2**63
    return torch.Generator().manual_seed(mixed)


def draw_memory_rows(n: int, k: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(indices [min(k, n)], flipped [min(k, n)])``: distinct faces of ``range(n)`` in random order, each with a
    random mirror. A randperm of the whole set costs O(n) per step (~5M faces for MS1MV3), so when k << n we draw
    with replacement and redraw the repeats, keeping first occurrences: deterministic, a few rounds at most."""
    k = min(k, n)
    if 4 * k >= n:
        indices = torch.randperm(n, generator=generator)[:k]
    else:
        indices = torch.randint(n, (k,), generator=generator)
        while True:
            _, first = np.unique(indices.numpy(), return_index=True)
            indices = indices[torch.from_numpy(np.sort(first))]  # distinct, in the order first drawn
            if indices.numel() == k:
                break
            indices = torch.cat([indices, torch.randint(n, (k - indices.numel(),), generator=generator)])
    return indices, torch.randint(0, 2, (k,), generator=generator).bool()


HR_VIEW = TeacherView()  # the default: the teacher embeds the HR face


@dataclass
class TeacherOutputs:
    """The teacher side of a step: ``teacher`` (None without distillation), its ``cache`` (None: run the
    teacher live) and its class ``centres`` ``[C, Dt]`` (None unless a term uses them)."""

    teacher: nn.Module | None = None
    cache: TeacherCache | None = None
    centres: Tensor | None = None
    view: TeacherView = HR_VIEW

    def embeddings(self, hr: Tensor, indices: Tensor, flipped: Tensor, hr_pixels: Tensor | None = None
                   ) -> Tensor | None:
        """``[B, Dt]`` float teacher embeddings of the teacher's view (from the cache row of the same flip);
        a live teacher of the ``"lr"`` view degrades ``hr_pixels`` (the uint8 HR view) itself."""
        if self.teacher is None:
            return None
        if self.cache is not None:
            return self.cache.lookup(indices.cpu(), flipped.cpu()).to(hr.device)
        if self.view.name != "hr":
            hr = self.view.teacher_input(hr_pixels.cpu(), indices.cpu(), flipped.cpu()).to(hr.device)
        return self.teacher(hr).float()

    def memory(self, k: int, seed: int, epoch: int, step: int, rank: int, device: torch.device) -> Tensor:
        """``[min(k, N), Dt]`` float cached teacher embeddings of random training faces (see the module note)."""
        if self.cache is None:
            raise ConfigError("field `teacher_cache`: a distillation term reads a memory of cached teacher "
                              "embeddings (uses_teacher_memory); set teacher_cache = True")
        indices, flipped = draw_memory_rows(len(self.cache), k, memory_generator(seed, epoch, step, rank))
        return self.cache.lookup(indices, flipped).to(device)


def prepare_teacher_outputs(cfg: TrainConfig, ctx: DistContext, dataset: Dataset, num_classes: int,
                            teacher: nn.Module | None, distiller: Distiller,
                            progress: bool, head_centres: bool = False, view: TeacherView = HR_VIEW
                            ) -> TeacherOutputs:
    """Open (building it on rank 0 first if needed) the cache, and the centres when a term uses them or the
    margin head starts from them (``head_centres``)."""
    check_memory(cfg, ctx, distiller, len(dataset))
    uses_centres = distiller.uses_teacher_centres or head_centres
    distills = len(distiller.terms) > 0
    if teacher is None or not ((cfg.teacher_cache and distills) or uses_centres):
        return TeacherOutputs(teacher if distills else None, view=view)
    dtype = cfg.teacher_cache_dtype
    key = cache_key(teacher.checksum, file_fingerprint(rec_path(cfg)), TEACHER_INPUT_SIZE, dtype, view.key_text())
    root = Path(cfg.teacher_cache_dir).expanduser() if cfg.teacher_cache_dir else default_cache_dir()
    if ctx.is_main:  # one rank computes (or waits for another run that does), the others wait, then map it
        # batches of the run's size: 256 faces (x2 with the mirror) of a 112-px network allocate activations of
        # ~400 MB per layer, beyond glibc's mmap threshold (runtime.tune_malloc): each one faulted in afresh
        open_or_build_cache(root, key, dataset, teacher, batch_size=min(256, cfg.batch_size), device=ctx.device,
                            num_workers=cfg.num_workers, progress=progress, dtype=dtype, views=view.cache_pair)
    barrier(ctx)
    cache = open_or_build_cache(root, key, dataset, teacher, device=ctx.device, progress=False, dtype=dtype,
                                views=view.cache_pair)
    centres = None
    if uses_centres:
        labels = torch.as_tensor(dataset.labels)
        centres = TeacherCentres.from_cache(cache.embeddings, labels, num_classes)
        centres = centres.centres.to(ctx.device)
    # a run without distillation terms (a plain fine-tune from the teacher) reads no teacher embeddings
    return TeacherOutputs(teacher if distills else None, cache if cfg.teacher_cache and distills else None, centres,
                          view)


def check_memory(cfg: TrainConfig, ctx: DistContext, distiller: Distiller, num_faces: int) -> None:
    """A term reading a teacher memory needs the cache; a memory wider than the training set is all of it."""
    k = distiller.uses_teacher_memory
    if k and not cfg.teacher_cache:
        raise ConfigError(f"field `teacher_cache`: --distill {cfg.distill} draws a memory of {k} cached teacher "
                          "embeddings per step, which needs the teacher cache; set teacher_cache = True")
    if k > num_faces:
        notice(ctx, f"the teacher memory of {k} rows is wider than the training set: every step uses all of its "
                    f"{num_faces} faces")
