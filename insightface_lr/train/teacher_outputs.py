"""Where a batch's teacher embeddings come from: the memory-mapped teacher cache, or the frozen teacher live.

The cache lives in the shared ``teacher_cache_dir`` (one per teacher, data, input size and teacher view, whatever
the method) and is built once, by rank 0 of the first run that needs it (the other ranks wait, then map the same
file; another run wanting it meanwhile waits on its lock and reuses it). It is needed when the run asks for it
(``teacher_cache``, the default) or when a term classifies with the teacher's class centres, which are the
normalised mean cached embedding of each identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..losses.distiller import Distiller
from .config import TrainConfig
from .distributed import DistContext, barrier
from .parts import TeacherCentres, rec_path
from .teacher_cache import TeacherCache, cache_key, default_cache_dir, file_fingerprint, open_or_build_cache
from .teacher_view import TeacherView

TEACHER_INPUT_SIZE = 112
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


def prepare_teacher_outputs(cfg: TrainConfig, ctx: DistContext, dataset: Dataset, num_classes: int,
                            teacher: nn.Module | None, distiller: Distiller,
                            progress: bool, head_centres: bool = False, view: TeacherView = HR_VIEW
                            ) -> TeacherOutputs:
    """Open (building it on rank 0 first if needed) the cache, and the centres when a term uses them or the
    margin head starts from them (``head_centres``)."""
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
