"""Teacher cache: equals the live teacher (float16: within its rounding), half the float32 bytes, built once
into a shared folder where other keys stay, safe under concurrent builders, never half-read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from insightface_lr.data.pixels import normalize_uint8
from insightface_lr.errors import ConfigError
from insightface_lr.train import teacher_cache
from insightface_lr.train.teacher_cache import (
    cache_key,
    default_cache_dir,
    file_fingerprint,
    open_or_build_cache,
)

FLOAT16_REL = 2.0 ** -11  # round-to-nearest float16: relative error of one value (normal range)


class CountingTeacher(torch.nn.Module):
    def __init__(self, fail_after: int | None = None, scale: float = 1.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(3 * 8 * 8, 5)
        self.calls = 0
        self.fail_after = fail_after
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("killed mid-build")
        return self.proj(x.flatten(1)) * self.scale


@pytest.fixture
def dataset() -> TensorDataset:
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8, generator=g)
    return TensorDataset(images, torch.arange(10))


def _live(teacher, dataset, idx, flipped) -> torch.Tensor:
    x = normalize_uint8(dataset.tensors[0][idx])
    x = torch.where(flipped[:, None, None, None], x.flip(-1), x)
    with torch.no_grad():
        return teacher(x)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_cache_equals_live_teacher_with_flip(tmp_path, dataset, dtype) -> None:
    teacher = CountingTeacher()
    cache = open_or_build_cache(tmp_path, "k1", dataset, teacher, batch_size=4, progress=False, dtype=dtype)
    idx = torch.tensor([0, 7, 3])
    flipped = torch.tensor([False, True, True])
    live, got = _live(teacher, dataset, idx, flipped), cache.lookup(idx, flipped)
    assert got.dtype == torch.float32 and len(cache) == 10 and cache.embeddings.dtype == np.dtype(dtype)
    if dtype == "float32":
        assert torch.allclose(got, live, atol=1e-6)
    else:  # each value rounded once: relative error <= 2^-11, cosine error far below 1e-6
        assert torch.all((got - live).abs() <= live.abs() * FLOAT16_REL + 1e-7)
        cosine = torch.nn.functional.cosine_similarity(got.double(), live.double())
        assert torch.all(1 - cosine < 1e-6) and not torch.equal(got, live)


def test_float16_cache_is_half_the_float32_bytes(tmp_path, dataset) -> None:
    half = open_or_build_cache(tmp_path, "h", dataset, CountingTeacher(), progress=False, dtype="float16")
    full = open_or_build_cache(tmp_path, "f", dataset, CountingTeacher(), progress=False, dtype="float32")
    data_bytes = 10 * 2 * 5 * 4  # what the float32 cache stores
    assert full.embeddings.nbytes == data_bytes and half.embeddings.nbytes * 2 == data_bytes
    header = (tmp_path / "f" / "embeddings.npy").stat().st_size - data_bytes  # .npy header, a few dozen bytes
    assert (tmp_path / "h" / "embeddings.npy").stat().st_size == header + data_bytes // 2


def test_values_beyond_float16_range_are_stored_as_float32(tmp_path, dataset) -> None:
    teacher = CountingTeacher(scale=1e6)
    cache = open_or_build_cache(tmp_path, "k", dataset, teacher, batch_size=4, progress=False)
    assert cache.embeddings.dtype == np.float32 and cache.meta["dtype"] == "float32"
    idx, flipped = torch.arange(10), torch.zeros(10, dtype=torch.bool)
    assert torch.isfinite(cache.lookup(idx, flipped)).all()
    cached, live = cache.lookup(idx, flipped), _live(teacher, dataset, idx, flipped)
    # float32 to float32's own rounding: the cache's batches of 4 and the live batch of 10 sum the 192 products in
    # another order (an error of ~1e-7 of the row's scale, ~0.1 here, large relative to a value near cancellation);
    # float16 storage would be off by ~1e-3 of the value (hundreds here)
    torch.testing.assert_close(cached, live, rtol=1e-6, atol=1e-6 * float(live.abs().max()))


def test_cache_is_reused_and_other_keys_stay_side_by_side(tmp_path, dataset) -> None:
    first = CountingTeacher()
    open_or_build_cache(tmp_path, "k1", dataset, first, batch_size=4, progress=False)
    assert first.calls == 3
    again = CountingTeacher()
    open_or_build_cache(tmp_path, "k1", dataset, again, batch_size=4, progress=False)
    assert again.calls == 0  # reused, the teacher never ran
    other = CountingTeacher()
    open_or_build_cache(tmp_path, "k2", dataset, other, batch_size=4, progress=False)
    assert other.calls == 3 and (tmp_path / "k1" / "meta.json").is_file()  # another run's cache is kept
    assert (tmp_path / "k1" / "embeddings.npy").stat().st_mode & 0o222 == 0  # mapped read-only, kept so


def test_old_float32_caches_are_read_as_they_are(tmp_path, dataset) -> None:
    """A cache written before float16 (no dtype in meta.json) under the float32 key is reused, not rebuilt."""
    old_key = cache_key("t", "d", 112, "float32")
    text = "v1|t|d|112"  # the key format of the float32-only caches
    import hashlib

    assert old_key == hashlib.sha256(text.encode()).hexdigest()[:20] != cache_key("t", "d", 112)
    rows = np.random.default_rng(0).normal(size=(10, 2, 5)).astype(np.float32)
    (tmp_path / old_key).mkdir()
    np.save(tmp_path / old_key / "embeddings.npy", rows)
    (tmp_path / old_key / "meta.json").write_text(json.dumps({"key": old_key, "format": 1, "num_images": 10}))
    teacher = CountingTeacher()
    cache = open_or_build_cache(tmp_path, old_key, dataset, teacher, progress=False, dtype="float32")
    assert teacher.calls == 0
    got = cache.lookup(torch.tensor([4, 2]), torch.tensor([True, False]))
    assert torch.equal(got, torch.from_numpy(rows[[4, 2], [1, 0]]))


def test_killed_build_leaves_nothing_to_read(tmp_path, dataset) -> None:
    with pytest.raises(KeyboardInterrupt):
        dying = CountingTeacher(fail_after=1)
        open_or_build_cache(tmp_path, "k1", dataset, dying, batch_size=4, progress=False)
    assert [p for p in tmp_path.iterdir() if p.is_dir()] == []
    # a SIGKILLed builder leaves its hidden folder: the next builder of that key removes it, not another key's
    (tmp_path / ".k1.dead").mkdir()
    (tmp_path / ".k1.dead" / "embeddings.npy").write_bytes(b"torn")
    (tmp_path / ".k2.busy").mkdir()
    teacher = CountingTeacher()
    cache = open_or_build_cache(tmp_path, "k1", dataset, teacher, batch_size=4, progress=False)
    assert teacher.calls == 3 and len(cache) == 10
    assert not (tmp_path / ".k1.dead").exists() and (tmp_path / ".k2.busy").is_dir()


def test_full_disk_is_one_clear_error_before_building(tmp_path, dataset, monkeypatch) -> None:
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(teacher_cache.shutil, "disk_usage", lambda _path: usage(1000, 900, 100))
    with pytest.raises(ConfigError, match="teacher_cache_dir.*needs"):
        open_or_build_cache(tmp_path, "k1", dataset, CountingTeacher(), progress=False)
    assert not (tmp_path / "k1").exists()


def test_default_folder_follows_xdg_cache_home(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "insightface_lr" / "teacher_cache"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "insightface_lr" / "teacher_cache"


def test_keys_depend_on_teacher_data_size_and_dtype(tmp_path) -> None:
    data = tmp_path / "train.rec"
    data.write_bytes(b"a" * 3000)
    fp = file_fingerprint(data, sample_bytes=1024)
    keys = {cache_key("t", fp, 112), cache_key("t2", fp, 112), cache_key("t", fp, 96),
            cache_key("t", fp, 112, "float32")}
    assert len(keys) == 4
    data.write_bytes(b"a" * 2999 + b"b")  # a change at the end of a large file is seen
    assert file_fingerprint(data, sample_bytes=1024) != fp


BUILDER = '''
import json, os, sys, time
import torch
from torch.utils.data import TensorDataset
from insightface_lr.train.teacher_cache import open_or_build_cache

class SlowTeacher(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(3 * 8 * 8, 5)
        self.calls = 0
    def forward(self, x):
        self.calls += 1
        while not os.path.exists(sys.argv[2]):  # hold the build open until the test releases it
            time.sleep(0.05)
        return self.proj(x.flatten(1))

g = torch.Generator().manual_seed(1)
data = TensorDataset(torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8, generator=g), torch.arange(40))
teacher = SlowTeacher()
cache = open_or_build_cache(sys.argv[1], "shared", data, teacher, batch_size=4, progress=False)
print(json.dumps({"calls": teacher.calls, "rows": cache.lookup(torch.arange(40), torch.ones(40)).tolist()}))
'''


def _wait_for(condition, process, what: str, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"exited before {what}: {process.communicate()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_two_concurrent_builders_produce_one_intact_cache(tmp_path) -> None:
    script, release, log = tmp_path / "builder.py", tmp_path / "release", tmp_path / "second.err"
    script.write_text(BUILDER)
    root = tmp_path / "cache"
    run = [sys.executable, str(script), str(root), str(release)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.Popen(run, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: any(p.is_dir() for p in root.glob(".shared.*")), first, "the first build")
    with open(log, "w") as err:
        second = subprocess.Popen(run, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        # the second finds no cache yet: without the lock it would build its own, with it it waits
        _wait_for(lambda: "waiting for another run" in log.read_text(), second, "the second to wait")
        release.touch()
        (out1, err1), (out2, _) = first.communicate(timeout=300), second.communicate(timeout=300)
    assert first.returncode == 0 and second.returncode == 0, err1 + log.read_text()
    one, two = json.loads(out1), json.loads(out2)
    assert one["calls"] == 10 and two["calls"] == 0 and "teacher cache: building" not in log.read_text()
    assert one["rows"] == two["rows"]
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["shared"]  # no half-built folder left
    assert np.load(root / "shared" / "embeddings.npy").shape == (40, 2, 5)


def test_teacher_centres_from_cache_in_chunks_equal_direct_mean() -> None:
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

