"""LR probes made once: the separable matrix form of the evaluation's resizes against torch's interpolation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from insightface_lr.data.degrade import resize
from insightface_lr.data.pixels import to_uint8, to_unit
from insightface_lr.errors import ConfigError
from insightface_lr.eval import probes as probes_module
from insightface_lr.eval.probes import ProbeSets, lr_probes, resampling_matrix, resize_separable, to_input_size


@pytest.mark.parametrize("kernel", ["bicubic", "bilinear"])
@pytest.mark.parametrize("source, size", [(112, 16), (112, 8), (112, 12), (112, 32), (16, 112), (12, 16), (24, 16)])
def test_matrix_resize_equals_torch_interpolation(source, size, kernel):
    x = torch.rand(3, 3, source, source, dtype=torch.float64, generator=torch.Generator().manual_seed(size))
    weights = resampling_matrix(source, size, kernel).double()
    assert weights.shape == (size, source)
    torch.testing.assert_close(weights.sum(1), torch.ones(size, dtype=torch.float64), atol=1e-6, rtol=0)
    # independent reference: torch's own 2-D call, antialiased when shrinking (data.degrade.resize's choice)
    reference = F.interpolate(x, size=(size, size), mode=kernel, align_corners=False, antialias=size < source)
    torch.testing.assert_close(weights @ x @ weights.T, reference, atol=1e-6, rtol=0)
    torch.testing.assert_close(resize_separable(x.float(), size, kernel), resize(x.float(), size, kernel),
                               atol=1e-5, rtol=0)


def test_bicubic_is_clamped_like_resize():
    x = torch.zeros(1, 1, 112, 112)
    x[..., ::2] = 1.0  # a pattern whose bicubic resize overshoots
    out = resize_separable(x, 16)
    assert out.min() >= 0.0 and out.max() <= 1.0
    torch.testing.assert_close(out, resize(x, 16), atol=1e-5, rtol=0)


def test_lr_probes_are_the_uint8_degradation():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 112, 112, 3), dtype=np.uint8)
    low = lr_probes(images, 16)
    assert low.shape == (40, 16, 16, 3) and low.dtype == np.uint8
    reference = to_uint8(resize(to_unit(torch.from_numpy(images).permute(0, 3, 1, 2)), 16)).permute(0, 2, 3, 1).numpy()
    diff = np.abs(low.astype(int) - reference.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # float rounding may tip a value sitting on .5
    assert lr_probes(images, 112) is images  # the faces' own size: no copy, no change
    # chunked work gives the same as one chunk (CHUNK is only a memory bound)
    assert np.array_equal(lr_probes(images[:7], 16), low[:7])


def test_lr_probes_refuse_other_inputs():
    with pytest.raises(ConfigError, match="uint8 faces"):
        lr_probes(np.zeros((2, 112, 112, 3), dtype=np.float32), 16)
    with pytest.raises(ConfigError, match="kernel"):
        resampling_matrix(112, 16, "nearest")


def test_to_input_size_up_is_float_and_down_stays_8_bit():
    from insightface_lr.data.pixels import normalize_uint8

    images = np.random.default_rng(1).integers(0, 256, size=(4, 112, 112, 3), dtype=np.uint8)
    faces = torch.from_numpy(images).permute(0, 3, 1, 2)
    x = normalize_uint8(faces).contiguous()  # as embed_pairs hands batches over (lr_probes' are strided)
    assert to_input_size(x, 112) is x
    # shrinking: exactly the uint8 probe of that size (a 112-px face into a 16-px model = its 16-px probe)
    down = to_input_size(x, 16)
    assert torch.equal(down, normalize_uint8(torch.from_numpy(lr_probes(images, 16)).permute(0, 3, 1, 2)))
    # enlarging: float, torch's bicubic of the 8-bit probe
    low = normalize_uint8(torch.from_numpy(lr_probes(images, 16)).permute(0, 3, 1, 2))
    torch.testing.assert_close(to_input_size(low, 112), resize((low + 1) / 2, 112) * 2 - 1, atol=2e-5, rtol=0)


def test_probe_sets_degrade_each_size_once(monkeypatch):
    calls = []
    real = probes_module.lr_probes
    monkeypatch.setattr(probes_module, "lr_probes", lambda images, size: calls.append(size) or real(images, size))
    sets = ProbeSets(np.zeros((3, 112, 112, 3), dtype=np.uint8))
    assert sets.at(16) is sets.at(16) and sets.at(8).shape == (3, 8, 8, 3)
    assert calls == [16, 8]


def test_probes_shrunk_to_a_smaller_model_input_are_kept_and_chain_exactly():
    from insightface_lr.eval.probes import model_probes

    images = np.random.default_rng(2).integers(0, 256, size=(9, 112, 112, 3), dtype=np.uint8)
    sets = ProbeSets(images)
    # a 112-px probe of a 16-px model is exactly its 16-px probe; a 32-px one is the 32-px probe shrunk again
    assert np.array_equal(sets.at(112, 16), sets.at(16))
    assert np.array_equal(sets.at(112, 16), model_probes(images, 112, 16))
    assert np.array_equal(sets.at(32, 16), lr_probes(lr_probes(images, 32), 16))
    assert sets.at(32, 16) is sets.at(32, 16)  # made once
    assert sets.at(16, 112) is sets.at(16)  # a larger input: enlarged per batch in float, not stored


def test_all_sizes_in_one_pass_equal_one_size_at_a_time(monkeypatch):
    from insightface_lr.eval.probes import lr_probes_at

    images = np.random.default_rng(3).integers(0, 256, size=(11, 112, 112, 3), dtype=np.uint8)
    together = lr_probes_at(images, (16, 8, 112, 24))
    assert together[112] is images
    for size in (16, 8, 24):
        assert np.array_equal(together[size], lr_probes(images, size))
    sets = ProbeSets(images)
    sets.prepare((16, 8))
    monkeypatch.setattr(probes_module, "lr_probes", lambda *a: pytest.fail("prepared sizes are not made again"))
    assert np.array_equal(sets.at(16), together[16]) and np.array_equal(sets.at(8), together[8])
