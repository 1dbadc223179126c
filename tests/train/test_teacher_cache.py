"""Teacher cache: equals the live teacher, built once, rebuilt when stale, never half-read."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from insightface_lr.data.pixels import normalize_uint8
from insightface_lr.train.teacher_cache import (
    cache_key,
    file_fingerprint,
    open_or_build_cache,
)


class CountingTeacher(torch.nn.Module):
    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(3 * 8 * 8, 5)
        self.calls = 0
        self.fail_after = fail_after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("killed mid-build")
        return self.proj(x.flatten(1))


@pytest.fixture
def dataset() -> TensorDataset:
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8, generator=g)
    return TensorDataset(images, torch.arange(10))


def test_cache_equals_live_teacher_with_flip(tmp_path, dataset) -> None:
    teacher = CountingTeacher()
    cache = open_or_build_cache(tmp_path, "k1", dataset, teacher, batch_size=4, progress=False)
    idx = torch.tensor([0, 7, 3])
    flipped = torch.tensor([False, True, True])
    x = normalize_uint8(dataset.tensors[0][idx])
    x = torch.where(flipped[:, None, None, None], x.flip(-1), x)
    with torch.no_grad():
        live = teacher(x)
    assert torch.allclose(cache.lookup(idx, flipped), live, atol=1e-6)
    assert len(cache) == 10


def test_cache_is_reused_and_rebuilt_when_key_changes(tmp_path, dataset) -> None:
    first = CountingTeacher()
    open_or_build_cache(tmp_path, "k1", dataset, first, batch_size=4, progress=False)
    assert first.calls == 3
    again = CountingTeacher()
    open_or_build_cache(tmp_path, "k1", dataset, again, batch_size=4, progress=False)
    assert again.calls == 0  # reused, the teacher never ran
    other = CountingTeacher()
    open_or_build_cache(tmp_path, "k2", dataset, other, batch_size=4, progress=False)
    assert other.calls == 3 and not (tmp_path / "k1").exists()  # stale cache removed


def test_killed_build_leaves_nothing_to_read(tmp_path, dataset) -> None:
    with pytest.raises(KeyboardInterrupt):
        dying = CountingTeacher(fail_after=1)
        open_or_build_cache(tmp_path, "k1", dataset, dying, batch_size=4, progress=False)
    assert list(tmp_path.iterdir()) == []
    teacher = CountingTeacher()
    cache = open_or_build_cache(tmp_path, "k1", dataset, teacher, batch_size=4, progress=False)
    assert teacher.calls == 3 and len(cache) == 10


def test_keys_depend_on_teacher_data_and_size(tmp_path) -> None:
    data = tmp_path / "train.rec"
    data.write_bytes(b"a" * 3000)
    fp = file_fingerprint(data, sample_bytes=1024)
    assert cache_key("t", fp, 112) != cache_key("t2", fp, 112) != cache_key("t", fp, 96)
    data.write_bytes(b"a" * 2999 + b"b")  # a change at the end of a large file is seen
    assert file_fingerprint(data, sample_bytes=1024) != fp


def test_teacher_centres_from_cache_in_chunks_equal_direct_mean() -> None:
    import numpy as np

    from insightface_lr.train.parts import TeacherCentres

    rng = np.random.default_rng(0)
    cache = rng.normal(size=(10, 2, 4)).astype(np.float32)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 2])
    centres = TeacherCentres.from_cache(cache, labels, num_classes=3, chunk=3).centres
    fused = cache.sum(axis=1)
    unit = fused / np.linalg.norm(fused, axis=1, keepdims=True)
    for k in range(3):
        expected = unit[labels.numpy() == k].sum(axis=0)
        assert np.allclose(centres[k].numpy(), expected / np.linalg.norm(expected), atol=1e-6)
