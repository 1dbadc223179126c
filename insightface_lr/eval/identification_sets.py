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


def load_images(dataset: Dataset, indices: np.ndarray, batch_size: int = 256, num_workers: int = 0) -> np.ndarray:
    """uint8 ``[N,H,W,3]`` faces of ``dataset`` (items ``(uint8 [3,H,W], label)``) at ``indices``."""
    subset = torch.utils.data.Subset(dataset, indices.tolist())
    batches = [images for images, _ in DataLoader(subset, batch_size=batch_size, num_workers=num_workers)]
    return torch.cat(batches).permute(0, 2, 3, 1).contiguous().numpy()


def identification_at_size(
    model_fn: Callable[[torch.Tensor], torch.Tensor], dataset: Dataset, labels: Sequence[int], size: int,
    input_size: int, gallery_per_id: int = 1, distractors: Dataset | None = None, ranks=(1, 5, 20),
    batch_size: int = 64, device: str | torch.device = "cpu",
) -> dict[int, float]:
    """Closed-set CMC of LR probes (``size`` px) against an HR gallery (+ distractors)."""
    split = split_gallery_probes(labels, gallery_per_id)
    labels = np.asarray(labels, dtype=np.int64)
    gallery_images = load_images(dataset, split.gallery)
    hr = gallery_images.shape[1]
    gallery = embed_at_size(model_fn, gallery_images, hr, input_size, batch_size, device).sum(0)
    gallery_labels = labels[split.gallery]
    if distractors is not None:
        extra = load_images(distractors, np.arange(len(distractors)))
        gallery = np.concatenate([gallery, embed_at_size(model_fn, extra, hr, input_size, batch_size, device).sum(0)])
        gallery_labels = np.concatenate([gallery_labels, np.full(len(extra), -1)])
    probe_images = load_images(dataset, split.probes)
    probes = embed_at_size(model_fn, probe_images, size, input_size, batch_size, device).sum(0)
    scores = cosine_scores(probes, gallery)
    return cmc(scores, labels[split.probes], gallery_labels, ranks=ranks)
