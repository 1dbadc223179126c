"""The embedded synthetic face set: determinism, labels, disjoint test identities, and that LOW RESOLUTION
REALLY HURTS: a fixed fine-detail feature identifies people at 112 px and fails at 16 px."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from insightface_lr import cli
from insightface_lr.data.degrade import degrade_to_size
from insightface_lr.data.image_codec import decode_image
from insightface_lr.data.recordio import RecordReader, unpack
from insightface_lr.data.synthetic import (
    SyntheticFaceConfig,
    generate_faces,
    verification_pairs,
    write_synthetic_dataset,
)
from insightface_lr.data.verification_bin import load_bin_images, read_bin
from insightface_lr.errors import ConfigError

SMALL = SyntheticFaceConfig(num_identities=4, images_per_identity=3, seed=5)


def test_generate_is_deterministic_with_identity_major_labels() -> None:
    images, labels = generate_faces(SMALL)
    again, labels_again = generate_faces(SMALL)
    assert images.shape == (12, 112, 112, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert np.array_equal(images, again) and np.array_equal(labels, labels_again)
    other, _ = generate_faces(SyntheticFaceConfig(num_identities=4, images_per_identity=3, seed=6))
    assert np.abs(other.astype(int) - images).mean() > 10
    assert images.std() > 30  # not blank: faces, backgrounds, detail
    # images of one person differ (pose, expression, light, occlusion) but are not unrelated noise
    assert all(np.abs(images[i].astype(int) - images[i + 1]).mean() > 3 for i in (0, 3, 6))


def test_identity_offset_gives_new_people_and_identity_k_is_stable() -> None:
    images, labels = generate_faces(SyntheticFaceConfig(num_identities=2, images_per_identity=3, seed=5,
                                                        identity_offset=4))
    assert labels.tolist() == [4, 4, 4, 5, 5, 5]
    first_four, _ = generate_faces(SMALL)
    # person k looks the same whatever the set size: the first two of SMALL == a 2-person set
    two, _ = generate_faces(SyntheticFaceConfig(num_identities=2, images_per_identity=3, seed=5))
    assert np.array_equal(two, first_four[:6])
    assert min(np.abs(a.astype(int) - b).mean() for a in images for b in first_four) > 3


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="num_identities"):
        SyntheticFaceConfig(num_identities=0)
    with pytest.raises(ConfigError, match="occlusion_prob"):
        SyntheticFaceConfig(occlusion_prob=2.0)


def _gray(images: torch.Tensor) -> torch.Tensor:
    x = images.float() / 255
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def fine_detail_feature(images: torch.Tensor) -> torch.Tensor:
    """A FIXED (not learned) texture descriptor: amplitude spectrum of the high-passed central 64x64 crop,
    kept in the band of 2.5-7 px periods. The amplitude spectrum ignores where the face sits (pose shifts
    move fine detail by more than its period), so it measures WHICH fine detail is present."""
    gray = _gray(images)
    high = gray - F.avg_pool2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    window = torch.hann_window(64, periodic=False)
    crop = high[:, 0, 24:88, 24:88] * (window[:, None] * window[None, :])
    freq = torch.fft.fftfreq(64)
    radius = (freq[:, None] ** 2 + freq[None, :] ** 2).sqrt()
    band = (radius > 1 / 7) & (radius < 1 / 2.5)
    return torch.fft.fft2(crop).abs()[:, band]


def rank1(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Leave-one-out nearest-neighbour identification accuracy (cosine on centred features)."""
    f = features.reshape(len(features), -1)
    f = F.normalize(f - f.mean(dim=1, keepdim=True), dim=1)
    sim = f @ f.T
    sim.fill_diagonal_(-2.0)
    return (labels[sim.argmax(dim=1)] == labels).float().mean().item()


def test_low_resolution_really_hurts(tmp_path: Path) -> None:
    images, labels = generate_faces(SyntheticFaceConfig(num_identities=20, images_per_identity=5, seed=3))
    x, y = torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(labels)
    low = degrade_to_size(x, 16)  # antialiased 112 -> 16 -> 112, the evaluation path
    hr_fine, lr_fine = rank1(fine_detail_feature(x), y), rank1(fine_detail_feature(low), y)
    lr_pixels = rank1(_gray(low), y)  # the coarse cue that survives: raw LR pixels
    chance = 4 / 99
    assert hr_fine > 0.6, hr_fine  # at 112 px the fine detail identifies people
    assert lr_fine < hr_fine - 0.4, (hr_fine, lr_fine)  # ... and it is gone at 16 px
    assert lr_pixels < hr_fine - 0.25, (hr_fine, lr_pixels)  # coarse looks are shared: a weak cue
    assert lr_pixels > chance  # but not nothing
    # a sample grid for eyeballing (not committed): identities in rows
    grid = images.reshape(20, 5, 112, 112, 3)[:6].transpose(0, 2, 1, 3, 4).reshape(6 * 112, 5 * 112, 3)
    Image.fromarray(grid).save(tmp_path / "synthetic_grid.png")
    assert Image.open(tmp_path / "synthetic_grid.png").size == (5 * 112, 6 * 112)


def test_verification_pairs() -> None:
    first, second, same = verification_pairs(num_identities=5, images_per_identity=4, pairs=101, seed=1)
    assert len(first) == len(second) == len(same) == 101 and same.sum() == 50
    ident_a, ident_b = first // 4, second // 4
    assert np.array_equal(ident_a == ident_b, same)  # positives same person, negatives different
    assert np.all(first[same] != second[same])  # a positive pair is two different images
    assert same[:50].any() and same[50:].any() and not same[:50].all()  # shuffled, not blocked
    with pytest.raises(ConfigError, match="identities"):
        verification_pairs(1, 4, 10)


def test_write_synthetic_dataset_round_trip(tmp_path: Path) -> None:
    paths = write_synthetic_dataset(tmp_path / "a", train_ids=3, test_ids=3, images_per_identity=2, pairs=8,
                                    seed=2)
    assert paths.property.read_text().strip() == "3,112,112"
    train, train_labels = generate_faces(SyntheticFaceConfig(num_identities=3, images_per_identity=2, seed=2))
    with RecordReader(paths.rec, paths.idx) as reader:
        header0, _ = unpack(reader.read_idx(0))
        assert header0.label[0] == 7  # images are keys 1..6
        for key in range(1, 7):
            header, payload = unpack(reader.read_idx(key))
            assert int(np.ravel(header.label)[0]) == train_labels[key - 1]
            assert np.abs(decode_image(payload).astype(int) - train[key - 1]).mean() < 3  # JPEG q95
    test_images, issame = load_bin_images(paths.test_bin)
    assert test_images.shape == (16, 112, 112, 3) and issame.tolist().count(True) == 4
    # identify each .bin image among the rendered DISJOINT test people (offset 3): pairs are consistent
    test, test_labels = generate_faces(SyntheticFaceConfig(num_identities=3, images_per_identity=2, seed=2,
                                                           identity_offset=3))
    dist = np.abs(test_images[:, None].astype(np.int16) - test[None]).mean(axis=(2, 3, 4))
    who = test_labels[dist.argmin(axis=1)]
    assert dist.min(axis=1).max() < 3 and set(who) <= {3, 4, 5}
    assert np.array_equal(who[0::2] == who[1::2], issame)
    train_dist = np.abs(test_images[:, None].astype(np.int16) - train[None]).mean(axis=(2, 3, 4))
    assert train_dist.min() > 5  # no training face in the test set
    again = write_synthetic_dataset(tmp_path / "b", train_ids=3, test_ids=3, images_per_identity=2, pairs=8,
                                    seed=2)
    for name in ("rec", "idx", "property", "test_bin"):
        assert getattr(paths, name).read_bytes() == getattr(again, name).read_bytes(), name
    assert read_bin(paths.test_bin)[1] == issame.tolist()


def test_synth_command(tmp_path: Path, capsys) -> None:
    out = tmp_path / "synth"
    code = cli.main(["synth", "--out", str(out), "--train-ids", "2", "--test-ids", "2",
                     "--images-per-id", "2", "--pairs", "4", "--seed", "1"])
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"train.rec", "train.idx", "property", "test.bin"}
    assert "train.rec" in capsys.readouterr().out
    assert cli.main(["synth", "--out", str(out), "--pairs", "0"]) == 2
    assert "--pairs" in capsys.readouterr().err
