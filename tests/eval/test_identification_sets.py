"""Identification from an image folder / .rec: gallery-probe split and CMC end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from insightface_lr.data.datasets import ImageFolderDataset, RecordDataset
from insightface_lr.data.degrade import degrade_to_size
from insightface_lr.data.synthetic import write_synthetic_dataset
from insightface_lr.errors import DataFormatError
from insightface_lr.eval.identification_sets import identification_at_size, split_gallery_probes


def test_split_takes_first_images_of_each_identity() -> None:
    split = split_gallery_probes([2, 0, 2, 0, 1, 2, 1], gallery_per_id=1)
    assert split.gallery.tolist() == [0, 1, 4]
    assert split.probes.tolist() == [2, 3, 5, 6]
    two = split_gallery_probes([2, 0, 2, 0, 1, 2, 1], gallery_per_id=2)
    assert two.probes.tolist() == [5]
    with pytest.raises(DataFormatError, match="no probes"):
        split_gallery_probes([0, 1], gallery_per_id=1)


def pixel_model(x: torch.Tensor) -> torch.Tensor:
    """A fixed, BN-free embedding: the (down-sampled) pixels themselves, centred."""
    flat = torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1)
    return flat - flat.mean(dim=1, keepdim=True)


def test_identical_images_are_identified_at_rank_1(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for person in range(4):
        face = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        (tmp_path / f"id{person}").mkdir()
        for k in range(3):  # the same face three times: probes equal their gallery image
            Image.fromarray(face).save(tmp_path / f"id{person}" / f"{k}.png")
    dataset = ImageFolderDataset(tmp_path)
    result = identification_at_size(pixel_model, dataset, dataset.labels, size=32, input_size=32, ranks=(1, 2))
    assert result == {1: 1.0, 2: 1.0}


def test_rec_identification_equals_direct_computation(tmp_path) -> None:
    paths = write_synthetic_dataset(tmp_path, train_ids=6, test_ids=2, images_per_identity=4, pairs=4, seed=1)
    dataset = RecordDataset(paths.rec)
    labels = np.array([dataset[i][1] for i in range(len(dataset))])
    result = identification_at_size(pixel_model, dataset, labels, size=16, input_size=112, ranks=(1, 3))
    # independent re-derivation: first image per id = HR gallery, others = probes degraded to 16 px
    images = torch.stack([dataset[i][0] for i in range(len(dataset))]).float() / 255
    def embed(x):
        x = (x - 0.5) / 0.5
        return (pixel_model(x) + pixel_model(x.flip(-1))).numpy()
    first = np.array([np.flatnonzero(labels == k)[0] for k in np.unique(labels)])
    probes = np.setdiff1d(np.arange(len(labels)), first)
    gallery = embed(images[first])
    low = degrade_to_size(images[probes], 16, output_size=112)
    probe = embed(low)
    hits = {1: 0, 3: 0}
    for row, index in enumerate(probes):
        sims = [float(np.dot(probe[row], g) / np.linalg.norm(probe[row]) / np.linalg.norm(g)) for g in gallery]
        mate = sims[int(np.flatnonzero(labels[first] == labels[index])[0])]
        rank = 1 + sum(s >= mate for j, s in enumerate(sims) if labels[first][j] != labels[index])
        for k in hits:
            hits[k] += rank <= k
    assert result == pytest.approx({k: v / len(probes) for k, v in hits.items()}, abs=1e-9)
