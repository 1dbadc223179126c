"""Finite but absurd identity labels: a 10-image ``train.rec`` whose labels (or ``property`` file) announce
2**40 or 10**9 identities must be refused with a one-line error naming the file, before the trainer
allocates a ``num_classes x embedding_size`` classifier; real set sizes must pass.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from insightface_lr.cli import main
from insightface_lr.data.image_codec import encode_jpeg
from insightface_lr.data.recordio import write_rec_dataset
from insightface_lr.data.synthetic import SyntheticFaceConfig, generate_faces
from insightface_lr.errors import ConfigError, DataFormatError
from insightface_lr.train.config import TrainConfig
from insightface_lr.train.parts import TeacherCentres, build_dataset, check_num_classes


def write_rec(folder: Path, labels: list[int], keep_property: bool = True) -> Path:
    """``folder/train.rec`` (+ idx, and ``property`` = max label + 1 when kept) of 16-px synthetic faces."""
    images, _ = generate_faces(SyntheticFaceConfig(num_identities=1, images_per_identity=len(labels),
                                                   image_size=16, seed=0))
    write_rec_dataset(folder, [encode_jpeg(image) for image in images], labels, image_size=(16, 16))
    if not keep_property:
        (folder / "property").unlink()
    return folder


@pytest.mark.parametrize("huge", [2**40, 10**9])
@pytest.mark.parametrize("keep_property", [True, False])
def test_huge_label_is_refused_naming_the_file(tmp_path: Path, huge: int, keep_property: bool) -> None:
    folder = write_rec(tmp_path, [*range(9), huge], keep_property)
    tracemalloc.start()
    try:
        with pytest.raises(DataFormatError) as info:
            build_dataset(TrainConfig(rec=str(folder), embedding_size=16))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(info.value)
    source = f"{folder / 'property'} (num_classes)" if keep_property else f"{folder / 'train.rec'} (labels)"
    assert message.startswith(source), message
    assert f"{huge + 1} identities for 10 images (at most 1020 accepted" in message
    assert "field `num_classes`" in message and "GiB" in message
    assert peak < 50 * 2**20  # nothing sized by the class count was built


def test_train_cli_refuses_before_the_classifier(plugin_dir, tiny_data, train_args, tmp_path, capsys,
                                                monkeypatch) -> None:
    """Through ``insightface-lr train``: exit 2, one line, no output written (2**40 x 16 floats = 64 TiB:
    without the check the classifier allocation itself would fail with a bare RuntimeError)."""
    monkeypatch.syspath_prepend(str(plugin_dir))
    folder = write_rec(tmp_path / "data", [*range(9), 2**40], keep_property=False)
    code = main(train_args(folder, tmp_path / "out", "--max-steps", "1"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("insightface-lr train: error: ") and "train.rec (labels)" in err[0]
    assert "1099511627777 identities for 10 images" in err[0]
    assert not (tmp_path / "out" / "student.pt").exists()


def test_explicit_num_classes_allows_gaps_but_not_past_the_cap(tmp_path: Path) -> None:
    folder = write_rec(tmp_path, [*range(9), 4999], keep_property=False)  # 5000 classes, 10 images
    with pytest.raises(DataFormatError, match="5000 identities for 10 images"):
        build_dataset(TrainConfig(rec=str(folder)))
    dataset, num_classes = build_dataset(TrainConfig(rec=str(folder), num_classes=5000))  # the user says so
    assert num_classes == 5000 and len(dataset) == 10
    with pytest.raises(ConfigError, match=r"5000 identities exceed field `max_num_classes` \(1000\).*Raise"):
        build_dataset(TrainConfig(rec=str(folder), num_classes=5000, max_num_classes=1000))
    with pytest.raises(ConfigError, match="field `max_num_classes`: expected a positive integer"):
        TrainConfig(max_num_classes=0)


def test_a_huge_explicit_num_classes_still_meets_the_cap(tmp_path: Path) -> None:
    folder = write_rec(tmp_path, [*range(9), 10**9], keep_property=True)
    with pytest.raises(ConfigError, match=r"1000000001 identities exceed field `max_num_classes` \(10000000\)"):
        build_dataset(TrainConfig(rec=str(folder), num_classes=10**9 + 1, embedding_size=512))


@pytest.mark.parametrize(("num_classes", "num_images"), [
    (93_431, 5_179_510),      # MS1MV3
    (10_572, 494_414),        # CASIA-WebFace
    (2_059_906, 42_474_557),  # WebFace42M
    (360_232, 17_091_657),    # Glint360K
    (6, 36),                  # the tests' tiny set
    (1_000, 1),               # a one-image smoke test that keeps a small label
])
def test_real_set_sizes_pass(num_classes: int, num_images: int) -> None:
    check_num_classes(num_classes, num_images, "set", TrainConfig())


def test_real_small_rec_passes(tiny_data: Path) -> None:
    dataset, num_classes = build_dataset(TrainConfig(rec=str(tiny_data)))
    assert num_classes == 6 and len(dataset) == 36


def test_teacher_centres_refuse_labels_beyond_num_classes() -> None:
    """A property file smaller than the labels: a one-line data error instead of index_add_'s IndexError."""
    cache = np.ones((4, 2, 3), dtype=np.float32)
    with pytest.raises(DataFormatError, match=r"labels lie in \[0, 7\] but num_classes is 3"):
        TeacherCentres.from_cache(cache, torch.tensor([0, 1, 7, 2]), num_classes=3)
    centres = TeacherCentres.from_cache(cache, torch.tensor([0, 1, 2, 2]), num_classes=3).centres
    torch.testing.assert_close(centres.norm(dim=1), torch.ones(3))
