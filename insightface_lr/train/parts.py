"""Build the pieces of a run from a :class:`TrainConfig`: data, student, head, teacher, distiller.

Each builder is a small function so the trainer composes them instead of owning their details, and
each failure names the config field and what was expected (exit code 2 from the command line).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..data.degrade import DegradeConfig
from ..errors import ConfigError, DataFormatError
from ..losses.distiller import DistillDims, Distiller, build_distiller
from ..losses.margin import build_head_from_margin_list
from ..losses.partial_fc import ShardedMarginClassifier
from ..models.factory import get_backbone
from ..registry import import_plugins
from .callbacks import VerificationCallback
from .config import TrainConfig
from .distributed import DistContext

# how many classes per training image :func:`check_num_classes` lets through (plus a slack for tiny sets)
CLASSES_PER_IMAGE = 2
CLASS_SLACK = 1000
FULL_INIT_LIMIT = 50_000_000  # class centres initialised from one global draw below this many values


class IndexedDataset(Dataset):
    """``(image, label, index)``: the index finds the sample's teacher-cache row and its flip coin."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        image, label = self.base[index]
        return image, label, index


def rec_path(cfg: TrainConfig) -> Path:
    """arcface_torch's ``rec`` is a folder holding ``train.rec``/``train.idx``; a ``.rec`` path works too."""
    if not cfg.rec:
        raise ConfigError("field `rec`: no training data given (a folder with train.rec/train.idx)")
    path = Path(cfg.rec)
    path = path / "train.rec" if path.suffix != ".rec" else path
    if not path.is_file():
        raise ConfigError(f"field `rec`: {path} does not exist (expected an MXNet train.rec with its .idx)")
    return path


def build_dataset(cfg: TrainConfig) -> tuple[Dataset, int]:
    """The training set and its number of classes (checked against the config's ``num_classes``, the
    number of images and ``max_num_classes`` before the classifier is allocated)."""
    from ..data.datasets import RecordDataset

    path = rec_path(cfg)
    dataset = RecordDataset(path)
    num_classes = int(dataset.num_classes)
    if cfg.num_classes and cfg.num_classes != num_classes:
        raise ConfigError(
            f"field `num_classes`: config says {cfg.num_classes} but {path} holds {num_classes} identities"
        )
    if cfg.num_image and cfg.num_image != len(dataset):  # arcface_torch sizes its schedule with it
        raise ConfigError(f"field `num_image`: config says {cfg.num_image} but {path} holds {len(dataset)} "
                          "images (epochs are counted from the data; set it to 0 or to the true count)")
    source = f"{path.with_name('property')} (num_classes)" if dataset.property is not None else f"{path} (labels)"
    check_num_classes(num_classes, len(dataset), source, cfg)
    return dataset, num_classes


def check_num_classes(num_classes: int, num_images: int, source: str, cfg: TrainConfig) -> None:
    """Refuse a class count that would allocate an absurd classifier (``num_classes x embedding_size``).

    arcface_torch expects labels ``0 .. K-1`` with every identity present, so ``K <= images``; up to
    :data:`CLASSES_PER_IMAGE` x images (+ :data:`CLASS_SLACK`) is let through for sets with gaps (a subset
    keeping its original labels). A larger ``K`` (a label of 2**40 in a 10-image .rec) is a data error
    unless the config states ``num_classes`` itself; ``max_num_classes`` caps it in every case.
    """
    gib = num_classes * cfg.embedding_size * 4 / 2**30  # float32 weights, before optimizer state
    limit = CLASSES_PER_IMAGE * num_images + CLASS_SLACK
    if not cfg.num_classes and num_classes > limit:
        raise DataFormatError(
            f"{source}: {num_classes} identities for {num_images} images (at most {limit} accepted; "
            f"expected labels 0..K-1 with every identity present); the classifier would hold {gib:.3g} GiB. "
            "Relabel the set contiguously, or set field `num_classes` to this value if the gaps are intended")
    if num_classes > cfg.max_num_classes:
        raise ConfigError(f"{source}: {num_classes} identities exceed field `max_num_classes` "
                          f"({cfg.max_num_classes}); the classifier would hold {gib:.3g} GiB of weights. Raise "
                          "`max_num_classes` (--set max_num_classes=N) if the set really has that many identities")


def build_student(cfg: TrainConfig) -> nn.Module:
    import_plugins(cfg.plugins)
    try:
        return get_backbone(cfg.network, embedding_size=cfg.embedding_size, input_size=cfg.student_input_size,
                            **dict(cfg.network_options))
    except ConfigError as exc:  # an option the network's factory does not take: name the field that set it
        if not cfg.network_options:
            raise
        raise ConfigError(f"field `network_options` {dict(cfg.network_options)}: {exc}") from None


def build_classifier(cfg: TrainConfig, num_classes: int, ctx: DistContext) -> ShardedMarginClassifier:
    head = build_head_from_margin_list(cfg.margin_list, mode=cfg.margin_mode)
    return ShardedMarginClassifier(
        cfg.embedding_size, num_classes, head, rank=ctx.rank, world_size=ctx.world_size,
        sample_rate=cfg.sample_rate,
    )


def init_centres(classifier: ShardedMarginClassifier, seed: int) -> None:
    """Draw all class centres from one seeded tensor and keep this rank's rows, so a run's
    initial state does not depend on the number of processes (when the table is not huge)."""
    c, d = classifier.num_classes, classifier.embedding_size
    if c * d > FULL_INIT_LIMIT:
        return
    full = torch.normal(0.0, 0.01, (c, d), generator=torch.Generator().manual_seed(seed + 1))
    start = classifier.class_start
    with torch.no_grad():
        classifier.weight.copy_(full[start:start + classifier.num_local])


def wrap_student(student: nn.Module, ctx: DistContext, channels_last: bool = True) -> nn.Module:
    """The student as trained: channels-last (field ``channels_last``; measured on a 2-core CPU by
    ``benchmarks/train_layout.py``: MobileFaceNet x1.7, the 16-px bridge student x3.4, IResNet-18 x1.05 per
    training step, and the usual choice on CUDA), DDP-wrapped under ``torchrun`` (the student only)."""
    if channels_last:
        student.to(memory_format=torch.channels_last)
    if not ctx.distributed:
        return student
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(student, device_ids=device_ids)


def build_degrade(cfg: TrainConfig) -> DegradeConfig:
    fields = {"sizes": cfg.lr_sizes, "output_size": cfg.student_input_size, "seed": cfg.seed, **dict(cfg.degrade)}
    try:
        return DegradeConfig(**fields)
    except TypeError as exc:
        raise ConfigError(f"field `degrade`: {exc}") from None


def build_verification(cfg: TrainConfig) -> VerificationCallback:
    """arcface_torch's ``val_targets`` (``<rec>/<name>.bin``) at HR and at the run's LR sizes."""
    return VerificationCallback(str(rec_path(cfg).parent), cfg.val_targets, cfg.val_sizes or cfg.lr_sizes,
                                cfg.student_input_size)


def build_teacher(cfg: TrainConfig, device: torch.device) -> nn.Module | None:
    """The frozen teacher: for distillation, and for ``student_init = "teacher"`` (the student copies it)."""
    if cfg.distill.strip() in ("", "none") and cfg.student_init.strip() != "teacher":
        return None
    if not cfg.teacher:
        needs = f"--distill {cfg.distill}" if cfg.distill.strip() not in ("", "none") else "--student-init teacher"
        raise ConfigError(f"field `teacher`: {needs} needs a teacher (.pth, .pt, .onnx or an MXNet checkpoint)")
    from ..models.model_path import check_model_path
    from ..models.teacher import load_teacher

    check_model_path(cfg.teacher, "field `teacher`")

    teacher = load_teacher(cfg.teacher, network=cfg.teacher_network, device=device)
    if type(teacher).__name__ == "FrozenModel":  # a torch network (not onnxruntime): run its inference copy,
        teacher.fast = True  # BN folded, channels-last: the cache of a 112-px teacher is its costliest forward
    return teacher


def init_head_from_centres(classifier: ShardedMarginClassifier, centres: Tensor) -> None:
    """This rank's rows of the class centres ``[C, D]`` (the teacher's normalised mean embeddings) as the margin
    head's weights, so that fine-tuning a pretrained network starts from a head that already classifies."""
    if centres.shape != (classifier.num_classes, classifier.embedding_size):
        raise ConfigError(f"field `head_init`: teacher centres {list(centres.shape)} do not fit the head "
                          f"[{classifier.num_classes}, {classifier.embedding_size}]")
    start = classifier.class_start
    with torch.no_grad():
        classifier.weight.copy_(centres[start:start + classifier.num_local])


def build_run_distiller(cfg: TrainConfig, teacher: nn.Module | None, num_classes: int) -> Distiller:
    teacher_dim = int(getattr(teacher, "embedding_size", 0) or cfg.embedding_size)
    dims = DistillDims(student_dim=cfg.embedding_size, teacher_dim=teacher_dim, num_classes=num_classes)
    return build_distiller(cfg.distill, dims, config=cfg.distill_config, weights=cfg.distill_weights,
                           normalise=cfg.distill_normalise)


@dataclass
class TeacherCentres:
    """Frozen teacher class centres ``[C, Dt]`` for terms that classify with the teacher (CCFace, AIRD's
    prediction term): the normalised mean teacher embedding of each identity, since an arcface_torch
    ``backbone.pth`` does not carry its classifier."""

    centres: Tensor

    @classmethod
    def from_cache(
        cls, embeddings: np.ndarray, labels: Tensor, num_classes: int, chunk: int = 65_536
    ) -> TeacherCentres:
        """From the memory-mapped cache ``[N, 2, Dt]`` (original + flip), read in chunks so that a
        multi-million-image cache is never loaded whole: each face counts once (its flip-fused, unit
        embedding), each class centre is the normalised sum of its faces."""
        # a label beyond the property file's count would be a bare IndexError inside index_add_
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise DataFormatError(f"training labels lie in [{int(labels.min())}, {int(labels.max())}] but "
                                  f"num_classes is {num_classes} (the property file or field `num_classes`)")
        sums = torch.zeros(num_classes, embeddings.shape[-1])
        for start in range(0, embeddings.shape[0], chunk):
            block = torch.from_numpy(np.array(embeddings[start:start + chunk], dtype=np.float32)).sum(dim=1)
            sums.index_add_(0, labels[start:start + chunk].long(), torch.nn.functional.normalize(block, dim=1))
        return cls(torch.nn.functional.normalize(sums, dim=1))

