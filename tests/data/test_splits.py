"""Identity splits, open-set pairs and written subsets: seeded, whole identities, balanced folds."""

from __future__ import annotations

import numpy as np
import pytest

from insightface_lr.data.datasets import RecordDataset
from insightface_lr.data.faces import FaceSource
from insightface_lr.data.image_codec import encode_png
from insightface_lr.data.splits import (
    relabel,
    split_identities,
    verification_pairs,
    write_pairs_bin,
    write_subset_rec,
)
from insightface_lr.data.verification_bin import read_bin
from insightface_lr.errors import ConfigError, DataFormatError


def labels_of(counts: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(counts)), counts)


def test_subset_is_seeded_and_takes_whole_identities() -> None:
    labels = labels_of([3, 1, 4, 1, 5, 9, 2, 6, 5, 3])
    chosen, rest = split_identities(labels, 0.4, seed=7)
    assert len(chosen) == 4 and len(rest) == 6
    assert set(chosen).isdisjoint(rest) and set(chosen) | set(rest) == set(range(10))
    again, _ = split_identities(labels, 0.4, seed=7)
    assert np.array_equal(chosen, again)  # seeded
    others = {tuple(split_identities(labels, 0.4, seed=s)[0]) for s in range(8)}
    assert len(others) > 1  # ... and the seed matters
    faces_in, _ = relabel(labels, chosen)
    faces_out, _ = relabel(labels, rest)
    # every face of a chosen identity is in the subset, none of another: no identity is split
    assert set(labels[faces_in]) == set(chosen) and set(labels[faces_out]) == set(rest)
    assert len(faces_in) + len(faces_out) == len(labels)
    # order of the faces does not change the draw (it depends on the label set only)
    shuffled = labels[np.random.default_rng(0).permutation(len(labels))]
    assert np.array_equal(split_identities(shuffled, 0.4, seed=7)[0], chosen)


def test_split_edges() -> None:
    labels = labels_of([2, 2, 2])
    assert len(split_identities(labels, 0.01, 0)[0]) == 1  # at least one identity chosen
    assert len(split_identities(labels, 0.99, 0)[1]) == 1  # ... and one left over below 1.0
    assert len(split_identities(labels, 1.0, 0)[1]) == 0
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ConfigError, match="fraction"):
            split_identities(labels, bad, 0)


def test_relabel_renumbers_from_zero_in_label_order() -> None:
    keep, new = relabel([5, 2, 9, 2, 5], np.array([9, 2]))
    assert keep.tolist() == [1, 2, 3] and new.tolist() == [0, 1, 0]


def test_pairs_are_balanced_per_fold_and_genuine_means_same_identity() -> None:
    labels = labels_of([4, 1, 3, 5, 2])
    rows = verification_pairs(labels, pairs_per_fold=6, seed=3)
    assert rows.shape == (60, 3)
    for fold in rows.reshape(10, 6, 3):
        assert fold[:, 2].tolist() == [1, 1, 1, 0, 0, 0]
    for a, b, same in rows:
        assert (labels[a] == labels[b]) == bool(same)
        assert a != b
    assert np.array_equal(rows, verification_pairs(labels, 6, seed=3))
    with pytest.raises(DataFormatError, match="2 identities"):
        verification_pairs([0, 0, 0], 6, seed=0)


def test_subset_rec_and_pairs_bin_from_an_image_folder(tmp_path) -> None:
    root = tmp_path / "faces"
    for person, count in enumerate([2, 3, 1, 2]):
        (root / f"id{person}").mkdir(parents=True)
        for k in range(count):
            pixels = np.full((8, 8, 3), 10 * person + k, np.uint8)
            (root / f"id{person}" / f"{k}.png").write_bytes(encode_png(pixels))
    source = FaceSource(root)
    assert source.labels == [0, 0, 1, 1, 1, 2, 3, 3] and source.image_size == (8, 8)
    rec = write_subset_rec(source, tmp_path / "sub", np.array([1, 3]))
    written = RecordDataset(rec)
    assert written.labels == [0, 0, 0, 1, 1] and written.num_classes == 2
    assert [written.record(i)[1] for i in range(5)] == [source.encoded(i) for i in (2, 3, 4, 6, 7)]
    again = FaceSource(rec)  # a .rec is a face source too
    assert again.labels == written.labels and again.encoded(4) == source.encoded(7)
    images, issame = read_bin(write_pairs_bin(source, tmp_path / "val.bin", np.array([0, 1, 3]), 4, seed=1))
    assert len(images) == 80 and issame == ([True] * 2 + [False] * 2) * 10
    allowed = {source.encoded(i) for i in (0, 1, 2, 3, 4, 6, 7)}
    assert set(images) <= allowed  # only faces of the chosen identities
