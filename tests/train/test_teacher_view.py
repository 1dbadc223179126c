"""The teacher's LR view (``teacher_view = "lr"``): the cache holds the teacher's embedding of each face's own
LR version (checked against the evaluation's independent degradation path), fixed per face whatever the batch,
seed or step, the very pixels the student trains on, and keyed apart from the HR cache."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from insightface_lr.data.degrade import DegradeConfig, degrade, degrade_to_size, resize
from insightface_lr.data.pixels import normalize_uint8, to_uint8
from insightface_lr.errors import ConfigError
from insightface_lr.train.config import build_config
from insightface_lr.train.teacher_cache import cache_key, open_or_build_cache
from insightface_lr.train.teacher_outputs import TeacherOutputs
from insightface_lr.train.teacher_view import FACE_SEED_OFFSET, build_teacher_view
from insightface_lr.train.views import make_views

N, LR = 6, 16


class PoolTeacher(torch.nn.Module):
    """A 112-px 'teacher': 8x8 average pool and a fixed linear map (sensitive to every LR detail)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(3 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.adaptive_avg_pool2d(x, 8).flatten(1))


@pytest.fixture
def faces() -> TensorDataset:
    gen = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (N, 3, 112, 112), dtype=torch.uint8, generator=gen)
    return TensorDataset(images, torch.arange(N))


def _view(**degrade_fields):
    return build_teacher_view("lr", DegradeConfig(**{"sizes": (LR,), "output_size": LR, **degrade_fields}))


@torch.no_grad()
def test_lr_cache_is_the_teacher_on_the_evaluation_degradation(tmp_path, faces) -> None:
    teacher, view = PoolTeacher(), _view()
    cache = open_or_build_cache(tmp_path, "lr", faces, teacher, batch_size=4, progress=False, dtype="float32",
                                views=view.cache_pair)
    images = faces.tensors[0]
    for column, x in enumerate((images, images.flip(-1))):  # evaluation: 112 -> 16 -> 112, bicubic
        expected = teacher(normalize_uint8(degrade_to_size(x, LR, output_size=112)))
        got = cache.lookup(torch.arange(N), torch.full((N,), bool(column)))
        assert torch.allclose(got, expected, atol=1e-5)


RANDOM = {"down_kernel": "random", "noise_std": (0.02, 0.08), "blur_sigma": (0.0, 1.5)}


def _reference_lr(image: torch.Tensor, index: int, flipped: bool) -> torch.Tensor:
    """One face's float LR view at 16 px, from its own generator (``FACE_SEED_OFFSET + 2 * index + flip``)."""
    x = (image.flip(-1) if flipped else image)[None].float() / 255
    config = DegradeConfig(sizes=(LR,), output_size=None, **RANDOM)
    return degrade(x, config, FACE_SEED_OFFSET + 2 * index + int(flipped))


@torch.no_grad()
def test_random_degradation_is_fixed_per_face_and_is_what_the_student_sees(tmp_path, faces) -> None:
    teacher, view = PoolTeacher(), _view(**RANDOM)
    images = faces.tensors[0]
    one = open_or_build_cache(tmp_path, "a", faces, teacher, batch_size=4, progress=False, dtype="float32",
                              views=view.cache_pair)
    other = open_or_build_cache(tmp_path, "b", faces, teacher, batch_size=5, progress=False, dtype="float32",
                                views=view.cache_pair)
    # the same rows whatever the batches (up to the teacher's own float rounding at another batch size)
    assert torch.allclose(one.lookup(torch.arange(N), torch.zeros(N, dtype=torch.bool)),
                          other.lookup(torch.arange(N), torch.zeros(N, dtype=torch.bool)), atol=1e-6)
    assert torch.allclose(one.lookup(torch.arange(N), torch.ones(N, dtype=torch.bool)),
                          other.lookup(torch.arange(N), torch.ones(N, dtype=torch.bool)), atol=1e-6)
    indices = torch.tensor([4, 1, 5])
    for seed, epoch, step in ((0, 0, 0), (7, 3, 11)):  # the run's seed, epoch and step change nothing but the flip
        views = make_views(images[indices], indices, view.degrade, seed, epoch, step, 0, view)
        for row, (index, flipped) in enumerate(zip(indices.tolist(), views.flipped.tolist(), strict=True)):
            lr = _reference_lr(images[index], index, flipped)
            assert torch.equal(views.lr[row], normalize_uint8(to_uint8(lr))[0])  # the student's pixels
            expected = teacher(normalize_uint8(to_uint8(resize(lr, 112, "bicubic"))))  # the same face, enlarged
            cached = one.lookup(torch.tensor([index]), torch.tensor([flipped]))
            assert torch.allclose(cached, expected, atol=1e-5)
        live = TeacherOutputs(teacher, view=view).embeddings(views.hr, indices, views.flipped, views.hr_pixels)
        assert torch.allclose(live, one.lookup(indices, views.flipped), atol=1e-5)


def test_cache_key_names_the_view_and_keeps_the_hr_key() -> None:
    old = hashlib.sha256(b"v1|t|d|112|float16").hexdigest()[:20]  # the key before views existed
    hr = build_teacher_view("hr", DegradeConfig(sizes=(LR,), output_size=LR))
    assert cache_key("t", "d", 112, "float16", hr.key_text()) == old
    lr16 = _view(seed=1).key_text()
    assert cache_key("t", "d", 112, "float16", lr16) != old
    assert lr16 == _view(seed=2).key_text()  # any run seed reads the same cache
    assert lr16 != build_teacher_view("lr", DegradeConfig(sizes=(12,), output_size=12)).key_text()
    assert lr16 != _view(down_kernel="area").key_text()


def test_bad_views_name_the_field() -> None:
    with pytest.raises(ConfigError, match="teacher_view"):
        build_config({"teacher_view": "both"})
    with pytest.raises(ConfigError, match="teacher_view.*one LR size"):
        build_teacher_view("lr", DegradeConfig(sizes=(12, 16), output_size=16))
    hr = build_teacher_view("hr", DegradeConfig(sizes=(12, 16), output_size=16))
    assert dataclasses.replace(hr).fixed_lr is False
