"""Identification benchmarks built from data a user has: an image folder (one sub-folder per identity)
or an InsightFace ``train.rec``, optionally with a distractor set (TinyFace style).

Protocol: for every identity the first ``gallery_per_id`` images (in dataset order) form the HR gallery,
the remaining images are probes seen at ``size`` px (degraded with the training code); distractors join
the gallery with label -1. Embeddings are flip-fused, scores are cosine similarities, and the metrics
come from :mod:`insightface_lr.eval.identification` (CMC rank-k, open-set DIR@FPIR).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import DataFormatError
from .identification import cmc, cosine_scores
from .lowres import embed_at_size


@dataclass(frozen=True)
class GallerySplit:
    gallery: np.ndarray  # indices into the dataset
    probes: np.ndarray


def split_gallery_probes(labels: Sequence[int], gallery_per_id: int = 1) -> GallerySplit:
    """First ``gallery_per_id`` images of each identity -> gallery, the rest -> probes (vectorised)."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size == 0:
        raise DataFormatError("identification: the dataset is empty")
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_labels)) + 1]
    rank_in_id = np.arange(labels.size) - np.repeat(starts, np.diff(np.r_[starts, labels.size]))
    in_gallery = rank_in_id < gallery_per_id
    if not (~in_gallery).any():
        raise DataFormatError(f"identification: no probes left after {gallery_per_id} gallery image(s) per id")
    return GallerySplit(gallery=np.sort(order[in_gallery]), probes=np.sort(order[~in_gallery]))


def load_images(dataset: Dataset, indices: np.ndarray, batch_size: int = 256, num_workers: int = 0,
                source: str = "dataset") -> np.ndarray:
    """uint8 ``[N,H,W,3]`` faces of ``dataset`` (items ``(uint8 [3,H,W], label)``) at ``indices``."""
    subset = torch.utils.data.Subset(dataset, indices.tolist())
    loader = DataLoader(subset, batch_size=batch_size, num_workers=num_workers, collate_fn=_images_only)
    batches = list(loader)
    shapes = sorted({tuple(image.shape) for batch in batches for image in batch})
    if len(shapes) > 1:  # torch.stack would fail with a bare RuntimeError naming no file
        raise DataFormatError(f"{source}: images differ in size (CxHxW {shapes[0]} and {shapes[-1]}); "
                              "expected aligned faces of one size, e.g. 112x112")
    return torch.stack([image for batch in batches for image in batch]).permute(0, 2, 3, 1).contiguous().numpy()


def _images_only(items: list[tuple[torch.Tensor, int]]) -> list[torch.Tensor]:
    return [image for image, _ in items]


@dataclass(frozen=True)
class IdentificationSet:
    """The faces of one benchmark, decoded once: HR gallery (+ distractors, kept apart so they are embedded
    exactly as :func:`identification_at_size` embeds them) and the probes, still at HR."""

    gallery_images: np.ndarray  # uint8 [G, H, W, 3]
    gallery_labels: np.ndarray  # [G]
    probe_images: np.ndarray  # uint8 [P, H, W, 3]
    probe_labels: np.ndarray  # [P]
    distractor_images: np.ndarray | None = None  # uint8 [X, H', W', 3], label -1

    @property
    def all_gallery_labels(self) -> np.ndarray:
        extra = 0 if self.distractor_images is None else len(self.distractor_images)
        return np.concatenate([self.gallery_labels, np.full(extra, -1, dtype=np.int64)])


def load_identification_set(dataset: Dataset, labels: Sequence[int], gallery_per_id: int = 1,
                            distractors: Dataset | None = None, source: str = "dataset",
                            distractor_source: str = "distractors") -> IdentificationSet:
    """Split ``dataset`` (first ``gallery_per_id`` images per identity -> gallery) and decode every face."""
    split = split_gallery_probes(labels, gallery_per_id)
    labels = np.asarray(labels, dtype=np.int64)
    extra = None
    if distractors is not None:
        if len(distractors) == 0:
            raise DataFormatError(f"{distractor_source}: holds no image")
        extra = load_images(distractors, np.arange(len(distractors)), source=distractor_source)
    return IdentificationSet(load_images(dataset, split.gallery, source=source), labels[split.gallery],
                             load_images(dataset, split.probes, source=source), labels[split.probes], extra)


def gallery_embeddings(model_fn: Callable[[torch.Tensor], torch.Tensor], faces: IdentificationSet,
                       input_size: int, batch_size: int = 64, device: str | torch.device = "cpu") -> np.ndarray:
    """Flip-fused ``[G (+X), D]`` embeddings of the gallery (then the distractors) at HR."""
    hr = faces.gallery_images.shape[1]
    gallery = embed_at_size(model_fn, faces.gallery_images, hr, input_size, batch_size, device).sum(0)
    if faces.distractor_images is not None:
        extra = embed_at_size(model_fn, faces.distractor_images, hr, input_size, batch_size, device).sum(0)
        gallery = np.concatenate([gallery, extra])
    return gallery


def probe_cmc(model_fn: Callable[[torch.Tensor], torch.Tensor], faces: IdentificationSet, gallery: np.ndarray,
              size: int, input_size: int, ranks=(1, 5, 20), batch_size: int = 64,
              device: str | torch.device = "cpu", lr_faces: np.ndarray | None = None) -> dict[int, float]:
    """CMC of the probes seen at ``size`` px (embedded by ``model_fn``) against ``gallery`` embeddings;
    ``lr_faces``: the probe faces already degraded for this model (:func:`.probes.model_probes`)."""
    probes = embed_at_size(model_fn, faces.probe_images, size, input_size, batch_size, device,
                           probes=lr_faces).sum(0)
    return cmc(cosine_scores(probes, gallery), faces.probe_labels, faces.all_gallery_labels, ranks=ranks)


def identification_at_size(
    model_fn: Callable[[torch.Tensor], torch.Tensor], dataset: Dataset, labels: Sequence[int], size: int,
    input_size: int, gallery_per_id: int = 1, distractors: Dataset | None = None, ranks=(1, 5, 20),
    batch_size: int = 64, device: str | torch.device = "cpu",
) -> dict[int, float]:
    """Closed-set CMC of LR probes (``size`` px) against an HR gallery (+ distractors)."""
    faces = load_identification_set(dataset, labels, gallery_per_id, distractors)
    gallery = gallery_embeddings(model_fn, faces, input_size, batch_size, device)
    return probe_cmc(model_fn, faces, gallery, size, input_size, ranks, batch_size, device)
