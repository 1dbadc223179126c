"""Low-resolution synthesis: seeding, batching, resampling, blur, noise and the torch JPEG simulation.

References are independent of the code under test: PIL's libjpeg for JPEG, scipy for the DCT matrix and the
Gaussian filter, hand-made constant and stripe images whose correct LR version is known.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import fft as sp_fft
from scipy import ndimage

from insightface_lr.data import degrade as dg
from insightface_lr.data.degrade import (
    DOWN_KERNELS,
    DegradeConfig,
    apply_params,
    dct_matrix,
    degrade,
    degrade_to_size,
    gaussian_blur,
    jpeg_simulate,
    quantisation_tables,
    resize,
    sample_params,
)
from insightface_lr.errors import ConfigError, DataFormatError

FULL = DegradeConfig(size_range=(8, 32), down_kernel="random", blur_sigma=(0.0, 1.5), blur_prob=0.5,
                     noise_std=(0.0, 0.05), noise_prob=0.5, jpeg_quality=(20, 90), jpeg_prob=0.5)


def smooth_faces(n: int, size: int = 112, seed: int = 0, texture: float = 0.08) -> torch.Tensor:
    """Face-like test images, float [N, 3, S, S] in [0, 1] on 1/255 steps: smooth shapes plus mild texture."""
    g = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(torch.rand(n, 3, 7, 7, generator=g), size=(size, size), mode="bicubic")
    fine = texture * (torch.rand(n, 3, size, size, generator=g) - 0.5)
    return ((coarse + fine).clamp(0, 1) * 255).round() / 255


def test_same_seed_same_output_and_different_seeds_differ() -> None:
    x = (smooth_faces(12) * 255).to(torch.uint8)
    a, b = degrade(x, FULL, 7), degrade(x, FULL, 7)
    assert a.dtype == torch.uint8 and a.shape == (12, 3, 112, 112)
    assert torch.equal(a, b)
    assert not torch.equal(a, degrade(x, FULL, 8))
    # config.seed is the default; a Generator advances, so consecutive batches differ
    assert torch.equal(degrade(x, FULL), degrade(x, FULL, FULL.seed))
    g = torch.Generator().manual_seed(3)
    assert not torch.equal(degrade(x, FULL, g), degrade(x, FULL, g))


def test_batch_of_256_in_one_call_without_a_per_image_loop(monkeypatch) -> None:
    x = smooth_faces(256)
    calls = {"interpolate": 0, "jpeg": 0, "conv2d": 0}

    def counting(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(dg.F, "interpolate", counting("interpolate", F.interpolate))
    monkeypatch.setattr(dg.F, "conv2d", counting("conv2d", F.conv2d))
    monkeypatch.setattr(dg, "jpeg_simulate", counting("jpeg", dg.jpeg_simulate))
    config = DegradeConfig(sizes=(8, 16, 24), down_kernel="random", blur_sigma=(0.5, 1.0),
                           noise_std=0.02, jpeg_quality=(30, 90))
    out = degrade(x, config, 0)
    assert out.shape == (256, 3, 112, 112) and out.dtype == torch.float32
    groups = len(config.sizes) * len(DOWN_KERNELS)
    # per (size, kernel) group: one down-, one up-sampling, one JPEG call (+1 chroma upsampling inside it)
    assert calls["jpeg"] <= groups
    assert calls["interpolate"] <= 3 * groups < 256
    assert calls["conv2d"] == 2  # the separable per-sample blur: one grouped conv per axis, whole batch


def test_constant_image_stays_constant() -> None:
    x = torch.full((3, 3, 112, 112), 0.0)
    x[:, 0], x[:, 1], x[:, 2] = 0.2, 0.6, 0.9
    for kernel in DOWN_KERNELS:
        for size in (8, 13, 16, 32):
            out = degrade_to_size(x, size, kernel)
            assert out.shape == (3, 3, 112, 112)
            assert torch.allclose(out, x, atol=1e-5), (kernel, size)
    noiseless = DegradeConfig(size_range=(8, 32), down_kernel="random", blur_sigma=(0.0, 2.0))
    assert torch.allclose(degrade(x, noiseless, 1), x, atol=1e-5)
    for quality in (10, 50, 95):  # JPEG keeps a flat image flat (only its DC level is quantised)
        out = jpeg_simulate(x, quality)
        assert torch.all(out.amax(dim=(2, 3)) == out.amin(dim=(2, 3)))
    assert (jpeg_simulate(x, 95) - x).abs().max() <= 2.0 / 255


def test_antialiasing_suppresses_stripe_aliasing() -> None:
    # 0/1 stripes of period 2.5 px: far above the Nyquist limit of 16 px, so the right LR image is flat grey
    cols = torch.arange(112, dtype=torch.float32)
    stripes = (torch.sin(2 * torch.pi * cols / 2.5) > 0).float().expand(1, 3, 112, 112).contiguous()
    mean = stripes.mean()
    nearest = resize(stripes, 16, "nearest")
    assert (nearest - mean).abs().mean() > 0.3  # nearest samples the stripes: strong aliasing
    for kernel in ("bicubic", "bilinear", "area"):
        smooth = resize(stripes, 16, kernel)
        assert (smooth - mean).abs().mean() < 0.12, kernel
        assert (smooth - mean).abs().mean() < 0.3 * (nearest - mean).abs().mean()


def test_dct_matrix_is_orthonormal_and_is_the_dct_ii() -> None:
    d = dct_matrix(8, torch.float64)
    assert torch.allclose(d @ d.T, torch.eye(8, dtype=torch.float64), atol=1e-12)
    reference = sp_fft.dct(np.eye(8), type=2, norm="ortho", axis=0)  # columns = DCT of unit vectors
    np.testing.assert_allclose(d.numpy(), reference, atol=1e-12)


def test_quantisation_tables_follow_ijg_scaling() -> None:
    luma, chroma = quantisation_tables(torch.tensor([50, 100, 10, 75]))
    assert luma[0, 0, 0] == 16 and chroma[0, 0, 0] == 17  # quality 50: the base tables
    assert torch.all(luma[1] == 1) and torch.all(chroma[1] == 1)  # quality 100: all ones
    assert luma[2, 0, 0] == 80  # quality 10: scale 500 % -> floor((16 * 500 + 50) / 100)
    assert luma[3, 0, 0] == 8  # quality 75: scale 50 % -> floor((16 * 50 + 50) / 100)


def test_jpeg_quality_100_is_near_identity() -> None:
    x = (torch.rand(4, 3, 40, 40, generator=torch.Generator().manual_seed(0)) * 255).round() / 255
    err = (jpeg_simulate(x, 100, chroma_subsampling=False) - x).abs() * 255
    assert err.max() <= 5 and err.mean() < 1.0
    smooth = smooth_faces(2, 112, texture=0.0)  # with 4:2:0 subsampling: identity where chroma is smooth
    assert ((jpeg_simulate(smooth, 100) - smooth).abs() * 255).mean() < 2.0


def test_jpeg_error_grows_as_quality_drops() -> None:
    x = smooth_faces(4, 64)
    errors = [(jpeg_simulate(x, q) - x).abs().mean().item() for q in (100, 90, 70, 50, 30, 15, 5)]
    assert all(a < b for a, b in zip(errors, errors[1:], strict=False)), errors


@pytest.mark.parametrize("quality", [90, 50, 15])
def test_jpeg_simulation_matches_libjpeg(quality: int) -> None:
    x = smooth_faces(3, 64, seed=1)
    sim = jpeg_simulate(x, quality)
    for i in range(3):
        arr = (x[i].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=quality)  # PIL default: 4:2:0
        real = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.float64)
        sim_i = sim[i].permute(1, 2, 0).double().numpy() * 255
        real_error = np.abs(real - arr).mean()
        assert np.abs(sim_i - real).mean() < 0.35 * real_error + 0.5, (quality, real_error)


def test_jpeg_per_sample_quality_equals_separate_calls() -> None:
    x = smooth_faces(3, 24)  # 24 is not a multiple of 16: exercises the padding
    batched = jpeg_simulate(x, torch.tensor([20, 60, 95]))
    for i, q in enumerate((20, 60, 95)):
        assert torch.equal(batched[i : i + 1], jpeg_simulate(x[i : i + 1], q))


def test_per_sample_blur_matches_scipy() -> None:
    x = smooth_faces(3, 32, seed=2)
    sigma = torch.tensor([0.0, 0.7, 1.6])
    out = gaussian_blur(x, sigma)
    assert torch.equal(out[0], x[0])
    radius = int(np.ceil(3 * 1.6))  # the batch shares the widest kernel's radius
    for i in (1, 2):
        ref = np.stack([ndimage.gaussian_filter(x[i, c].double().numpy(), float(sigma[i]), mode="nearest",
                                                truncate=radius / float(sigma[i])) for c in range(3)])
        np.testing.assert_allclose(out[i].numpy(), ref, atol=2e-5)


def test_sizes_are_respected() -> None:
    params = sample_params(600, DegradeConfig(size_range=(8, 12)), 0)
    assert set(params.sizes.tolist()) == {8, 9, 10, 11, 12}
    params = sample_params(600, DegradeConfig(sizes=(12, 20)), 0)
    assert set(params.sizes.tolist()) == {12, 20}
    x = smooth_faces(5)
    small = degrade(x, DegradeConfig(sizes=(16,), output_size=None, down_kernel="area"))
    assert small.shape == (5, 3, 16, 16)
    assert torch.allclose(small, F.avg_pool2d(x, 7), atol=1e-6)  # 112 / 16 = 7: area = 7x7 block mean
    assert degrade(x, DegradeConfig(sizes=(20,), output_size=64)).shape == (5, 3, 64, 64)
    assert degrade_to_size(x, 12, output_size=None).shape == (5, 3, 12, 12)


def test_noise_std_is_per_sample() -> None:
    x = torch.full((4, 3, 112, 112), 0.5)
    config = DegradeConfig(sizes=(112,), output_size=None, noise_std=(0.0, 0.1))
    params = sample_params(4, config, 5)
    residual = apply_params(x, params, config) - x
    np.testing.assert_allclose(residual.std(dim=(1, 2, 3)).numpy(), params.noise_std.numpy(), rtol=0.05,
                               atol=1e-6)


def test_uint8_and_float_inputs_agree() -> None:
    x = smooth_faces(6)
    as_float = degrade(x, FULL, 3)
    as_uint8 = degrade((x * 255).round().to(torch.uint8), FULL, 3)
    assert ((as_float * 255).round() - as_uint8.float()).abs().max() <= 1


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ConfigError, match="down_kernel"):
        DegradeConfig(down_kernel="lanczos")
    with pytest.raises(ConfigError, match="output_size"):
        DegradeConfig(sizes=(8, 16), output_size=None)
    with pytest.raises(ConfigError, match="jpeg_quality"):
        DegradeConfig(jpeg_quality=(0, 50))
    with pytest.raises(ConfigError, match="blur_prob"):
        DegradeConfig(blur_prob=1.5)
    with pytest.raises(DataFormatError, match=r"\[N, 3, H, W\]"):
        degrade(torch.zeros(3, 112, 112))
    assert DegradeConfig(sizes=[16], blur_sigma=[0, 1]).blur_sigma == (0.0, 1.0)  # lists from config files
