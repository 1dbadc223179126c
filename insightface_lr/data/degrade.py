"""Low-resolution synthesis: the seeded, batched degradation that turns HR faces into LR probes.

METHODS.md, "Low-resolution synthesis": down-sample 112 -> s (s from a list or uniform in a range) with an
antialiased kernel, optional Gaussian blur, noise and JPEG, then up-sample to the model's input size.

Image convention (input and output): ``[N, 3, H, W]`` RGB, either ``uint8`` in [0, 255] or floating point
in [0, 1]. NOT the model input (:mod:`insightface_lr.data.pixels`): degrade pixels first, normalise after.
The output has the input's dtype and range (uint8 outputs are rounded). Faces are expected square (H == W).

Order of the stages follows a camera: blur at the HR scale (optics, sigma in HR pixels), down-sampling
(sensor), additive Gaussian noise at the LR scale (sensor, std in [0, 1] pixel units), JPEG at the LR scale
(storage), up-sampling (the model's fixed input). Every random choice is per sample; the whole batch is
processed in one call, looping only over the few distinct (size, kernel) groups.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError, DataFormatError
from .pixels import to_uint8, to_unit

DOWN_KERNELS: tuple[str, ...] = ("bicubic", "bilinear", "area", "nearest")
UP_KERNELS: tuple[str, ...] = ("bicubic", "bilinear", "nearest")


def _as_range(name: str, value, cast) -> tuple:
    """Accept a scalar (fixed value) or ``(low, high)``; lists from config files become tuples."""
    if isinstance(value, (int, float)):
        value = (value, value)
    try:
        low, high = (cast(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"DegradeConfig.{name}: expected a number or (low, high), got {value!r}") from None
    if low > high:
        raise ConfigError(f"DegradeConfig.{name}: low {low} > high {high}")
    return (low, high)


@dataclass(frozen=True)
class DegradeConfig:
    """How HR faces are degraded; defaults = METHODS.md (bicubic, sizes 8..32, no blur/noise/JPEG).

    ``sizes`` lists the LR sizes drawn uniformly per sample; ``size_range=(lo, hi)`` instead draws every
    integer in [lo, hi] uniformly. ``output_size=None`` keeps the LR size (then only one size is allowed,
    so that the batch stays one tensor). Each optional stage is applied to a sample with its probability,
    with a parameter drawn uniformly from its range; a range of zeros (or ``jpeg_quality=None``) turns it off.
    """

    sizes: tuple[int, ...] = (8, 12, 16, 20, 24, 32)
    size_range: tuple[int, int] | None = None
    down_kernel: str = "bicubic"  # one of DOWN_KERNELS or "random" (uniform per sample)
    up_kernel: str = "bicubic"
    output_size: int | None = 112
    blur_sigma: tuple[float, float] = (0.0, 0.0)  # in HR pixels
    blur_prob: float = 1.0
    noise_std: tuple[float, float] = (0.0, 0.0)  # in [0, 1] pixel units
    noise_prob: float = 1.0
    jpeg_quality: tuple[int, int] | None = None  # IJG quality 1..100
    jpeg_prob: float = 1.0
    jpeg_chroma_subsampling: bool = True  # 4:2:0 as libjpeg/PIL do by default
    seed: int = 0

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)
        sizes = (self.sizes,) if isinstance(self.sizes, int) else tuple(int(s) for s in self.sizes)
        put("sizes", sizes)
        if self.size_range is not None:
            put("size_range", _as_range("size_range", self.size_range, int))
        put("blur_sigma", _as_range("blur_sigma", self.blur_sigma, float))
        put("noise_std", _as_range("noise_std", self.noise_std, float))
        if self.jpeg_quality is not None:
            put("jpeg_quality", _as_range("jpeg_quality", self.jpeg_quality, int))
        self._validate()

    def _validate(self) -> None:
        candidates = self.candidate_sizes()
        if not candidates or min(candidates) < 1:
            raise ConfigError(f"DegradeConfig.sizes/size_range: expected positive sizes, got {candidates}")
        if self.down_kernel not in DOWN_KERNELS + ("random",):
            raise ConfigError(f"DegradeConfig.down_kernel: expected one of {DOWN_KERNELS + ('random',)}, "
                              f"got {self.down_kernel!r}")
        if self.up_kernel not in UP_KERNELS:
            raise ConfigError(f"DegradeConfig.up_kernel: expected one of {UP_KERNELS}, "
                              f"got {self.up_kernel!r}")
        if self.output_size is None and len(candidates) != 1:
            raise ConfigError("DegradeConfig.output_size: None (stay small) needs exactly one LR size, "
                              f"got {candidates}")
        if self.output_size is not None and self.output_size < 1:
            raise ConfigError(f"DegradeConfig.output_size: expected a positive size, got {self.output_size}")
        if self.blur_sigma[0] < 0 or self.noise_std[0] < 0:
            raise ConfigError("DegradeConfig.blur_sigma/noise_std: expected non-negative ranges")
        if self.jpeg_quality is not None and not (1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100):
            raise ConfigError(f"DegradeConfig.jpeg_quality: expected within [1, 100], "
                              f"got {self.jpeg_quality}")
        for f in fields(self):
            if f.name.endswith("_prob") and not 0.0 <= getattr(self, f.name) <= 1.0:
                raise ConfigError(f"DegradeConfig.{f.name}: expected a probability in [0, 1]")

    def candidate_sizes(self) -> tuple[int, ...]:
        """The LR sizes a sample can get (drawn uniformly)."""
        if self.size_range is not None:
            return tuple(range(self.size_range[0], self.size_range[1] + 1))
        return self.sizes


@dataclass(frozen=True)
class DegradeParams:
    """Per-sample draws of one :func:`degrade` call; every tensor is ``[N]`` on the CPU."""

    sizes: Tensor  # int64, LR side length
    kernels: Tensor  # int64, index into DOWN_KERNELS
    blur_sigma: Tensor  # float32, 0 = no blur
    noise_std: Tensor  # float32, 0 = no noise
    jpeg_quality: Tensor  # int64, 0 = no JPEG
    noise_seed: int  # seeds the device generator of the noise tensor


def _generator(generator: torch.Generator | int | None, config: DegradeConfig) -> torch.Generator:
    if isinstance(generator, torch.Generator):
        return generator
    g = torch.Generator()
    g.manual_seed(config.seed if generator is None else int(generator))
    return g


def sample_params(n: int, config: DegradeConfig,
                  generator: torch.Generator | int | None = None) -> DegradeParams:
    """Draw the per-sample degradation of a batch of ``n`` faces (CPU generator; same seed -> same draws)."""
    g = _generator(generator, config)
    rand = lambda: torch.rand(n, generator=g)
    pick = lambda values: torch.tensor(values)[torch.randint(len(values), (n,), generator=g)]
    sizes = pick(config.candidate_sizes())
    kernel_names = DOWN_KERNELS if config.down_kernel == "random" else (config.down_kernel,)
    kernels = pick([DOWN_KERNELS.index(k) for k in kernel_names])

    def ranged(low_high: tuple[float, float], prob: float) -> Tensor:
        value = low_high[0] + (low_high[1] - low_high[0]) * rand()
        return torch.where(rand() < prob, value, torch.zeros_like(value))

    blur = ranged(config.blur_sigma, config.blur_prob)
    noise = ranged(config.noise_std, config.noise_prob)
    quality_range = config.jpeg_quality or (0, 0)
    quality = ranged(quality_range, config.jpeg_prob if config.jpeg_quality else 0.0).round().long()
    noise_seed = int(torch.randint(2**62, (1,), generator=g))
    return DegradeParams(sizes, kernels, blur, noise, quality, noise_seed)


def resize(x: Tensor, size: int, kernel: str = "bicubic") -> Tensor:
    """Resize float ``[N, C, H, W]`` to ``[N, C, size, size]``, antialiased when shrinking.

    Bilinear/bicubic use torch's antialiased (PIL-like) filters when down-sampling; "area" averages by
    nature; "nearest" is "nearest-exact" (pixel centres, as PIL), the aliasing baseline.
    """
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    if kernel in ("bicubic", "bilinear"):
        shrinking = size < max(x.shape[-2:])
        out = F.interpolate(x, size=(size, size), mode=kernel, align_corners=False, antialias=shrinking)
        return out.clamp(0.0, 1.0) if kernel == "bicubic" else out  # bicubic overshoots at edges
    if kernel == "area":
        return F.interpolate(x, size=(size, size), mode="area")
    if kernel == "nearest":
        return F.interpolate(x, size=(size, size), mode="nearest-exact")
    raise ConfigError(f"resize kernel: expected one of {DOWN_KERNELS}, got {kernel!r}")


def gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Blur float ``[N, C, H, W]`` with a per-sample Gaussian ``sigma [N]`` (0 = unchanged).

    One separable depthwise convolution over the whole batch: the batch and channels are folded into the
    groups of a single conv, each group with its own sample's kernel; borders replicate the edge pixels.
    """
    sigma = sigma.to(device=x.device, dtype=x.dtype)
    max_sigma = float(sigma.max()) if sigma.numel() else 0.0
    if max_sigma <= 0.0:
        return x
    n, c, h, w = x.shape
    radius = max(1, math.ceil(3.0 * max_sigma))
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    # sigma -> 0 gives exp(-inf) = 0 off-centre, i.e. a delta kernel: no special case needed.
    kernel = torch.exp(-0.5 * (offsets / sigma.clamp_min(1e-6)[:, None]) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # [N*C, K]
    y = F.pad(x.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(y, kernel.view(n * c, 1, 1, -1), groups=n * c)
    y = F.conv2d(y, kernel.view(n * c, 1, -1, 1), groups=n * c)
    return y.view(n, c, h, w)


def _to_float(images: Tensor) -> Tensor:
    if images.ndim != 4 or images.shape[1] != 3:
        raise DataFormatError(f"degrade: expected images [N, 3, H, W], got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return to_unit(images)
    if not images.is_floating_point():
        raise DataFormatError(f"degrade: expected uint8 or float images in [0, 1], got {images.dtype}")
    return images


def _from_float(out: Tensor, like: Tensor) -> Tensor:
    if like.dtype == torch.uint8:
        return to_uint8(out)
    return out.to(like.dtype)


# --- JPEG, simulated in torch -----------------------------------------------------------------------------
# IJG (ITU T.81 Annex K) base quantisation tables, scaled by quality as libjpeg's jpeg_quality_scaling does.
_LUMA_TABLE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)
_CHROMA_TABLE = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
) + (99,) * 32
# JFIF full-range YCbCr (rows: Y, Cb, Cr); offsets +128 on the chroma rows.
_RGB_TO_YCC = (
    (0.299, 0.587, 0.114),
    (-0.168735892, -0.331264108, 0.5),
    (0.5, -0.418687589, -0.081312411),
)


def dct_matrix(n: int = 8, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> Tensor:
    """Orthonormal DCT-II matrix ``D [n, n]``: ``D @ block @ D.T`` is JPEG's 8x8 forward DCT."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] = d[0] / math.sqrt(2.0)
    return d.to(dtype=dtype, device=device)


def quantisation_tables(quality: Tensor) -> tuple[Tensor, Tensor]:
    """Luma and chroma tables ``[N, 8, 8]`` for IJG qualities ``[N]`` (1..100), clipped to 1..255."""
    q = quality.to(torch.float64).clamp(1, 100)
    scale = torch.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)[:, None, None]
    make = lambda base: ((torch.tensor(base, dtype=torch.float64).view(1, 8, 8) * scale + 50) // 100)
    return make(_LUMA_TABLE).clamp(1, 255), make(_CHROMA_TABLE).clamp(1, 255)


def _dct_quantise(plane: Tensor, table: Tensor) -> Tensor:
    """Round-trip ``[N, C, H, W]`` samples (0..255, H and W multiples of 8) through quantised block DCT."""
    n, c, h, w = plane.shape
    d = dct_matrix(8, plane.dtype, plane.device)
    blocks = (plane - 128.0).reshape(n, c, h // 8, 8, w // 8, 8).transpose(3, 4)  # [N, C, bh, bw, 8, 8]
    step = table.to(plane).view(n, 1, 1, 1, 8, 8)
    coef = torch.round((d @ blocks @ d.T) / step) * step
    blocks = d.T @ coef @ d
    # the decoder emits 8-bit samples
    return (blocks.transpose(3, 4).reshape(n, c, h, w) + 128.0).round().clamp(0.0, 255.0)


def jpeg_simulate(x: Tensor, quality: Tensor | int, chroma_subsampling: bool = True) -> Tensor:
    """Encode+decode float RGB ``[N, 3, H, W]`` in [0, 1] as baseline JPEG would, batched, per-sample quality.

    RGB -> YCbCr (JFIF), optional 4:2:0 chroma subsampling (2x2 mean; decoded with the triangle filter of
    libjpeg's "fancy" upsampling, i.e. bilinear), 8x8 block DCT as a matrix product, quantisation with the
    IJG tables scaled by ``quality``, rounding, inverse. Edges are padded by replication to whole blocks
    (as encoders do) and cropped back. Returns ``[N, 3, H, W]`` in [0, 1] on 1/255 steps.
    """
    n, _, h, w = x.shape
    quality = torch.full((n,), int(quality)) if isinstance(quality, int) else quality.reshape(n)
    luma_q, chroma_q = quantisation_tables(quality.cpu())
    unit = 16 if chroma_subsampling else 8
    x = F.pad(x * 255.0, (0, (-w) % unit, 0, (-h) % unit), mode="replicate")
    to_ycc = torch.tensor(_RGB_TO_YCC, dtype=x.dtype, device=x.device)
    offset = torch.tensor([0.0, 128.0, 128.0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    ycc = (torch.einsum("oc,nchw->nohw", to_ycc, x) + offset).round().clamp(0.0, 255.0)
    luma = _dct_quantise(ycc[:, :1], luma_q)
    chroma = ycc[:, 1:]
    if chroma_subsampling:
        chroma = F.avg_pool2d(chroma, 2)
    chroma = _dct_quantise(chroma, chroma_q)
    if chroma_subsampling:
        chroma = F.interpolate(chroma, scale_factor=2.0, mode="bilinear", align_corners=False)
    rgb = torch.einsum("oc,nchw->nohw", torch.linalg.inv(to_ycc), torch.cat([luma, chroma], 1) - offset)
    return (rgb.round().clamp(0.0, 255.0) / 255.0)[:, :, :h, :w]


def apply_params(images: Tensor, params: DegradeParams, config: DegradeConfig) -> Tensor:
    """Degrade ``images`` with pre-drawn ``params`` (see :func:`degrade` for the conventions)."""
    x = _to_float(images)
    x = gaussian_blur(x, params.blur_sigma)
    n, device = x.shape[0], x.device
    side = config.output_size or (int(params.sizes[0]) if n else 0)
    out = x.new_empty((n, 3, side, side))
    noise_gen = torch.Generator(device=device)
    noise_gen.manual_seed(params.noise_seed)
    group_key = params.sizes * len(DOWN_KERNELS) + params.kernels
    for key in torch.unique(group_key).tolist():  # a handful of (size, kernel) groups, never per image
        idx = (group_key == key).nonzero().squeeze(1)
        size, kernel = divmod(key, len(DOWN_KERNELS))
        lr = resize(x[idx.to(device)], size, DOWN_KERNELS[kernel])
        std = params.noise_std[idx]
        if bool((std > 0).any()):
            noise = torch.randn(lr.shape, generator=noise_gen, device=device, dtype=lr.dtype)
            lr = (lr + std.to(device=device, dtype=lr.dtype).view(-1, 1, 1, 1) * noise).clamp(0.0, 1.0)
        quality = params.jpeg_quality[idx]
        if bool((quality > 0).any()):
            jpeg = (quality > 0).nonzero().squeeze(1).to(device)
            lr = lr.index_copy(0, jpeg, jpeg_simulate(lr[jpeg], quality[quality > 0],
                                                      chroma_subsampling=config.jpeg_chroma_subsampling))
        if config.output_size is not None:
            lr = resize(lr, config.output_size, config.up_kernel)
        out[idx.to(device)] = lr
    return _from_float(out, images)


def degrade(images: Tensor, config: DegradeConfig | None = None,
            generator: torch.Generator | int | None = None) -> Tensor:
    """Degrade a batch of HR faces to LR in one call.

    Args:
        images: ``[N, 3, H, W]`` uint8 in [0, 255] or float in [0, 1] (RGB, not normalised), any device.
        config: the pipeline; default ``DegradeConfig()``.
        generator: a ``torch.Generator`` (CPU; advanced by the call, for a stream of batches), an int seed,
            or None for ``config.seed``. Same seed and input -> identical output.
    Returns:
        ``[N, 3, S, S]`` with S = ``config.output_size`` (or the single LR size), same dtype as ``images``.
    """
    config = config or DegradeConfig()
    params = sample_params(images.shape[0], config, generator)
    return apply_params(images, params, config)


def degrade_to_size(images: Tensor, size: int, kernel: str = "bicubic",
                    output_size: int | None = 112) -> Tensor:
    """The plain, deterministic evaluation path: antialiased ``H -> size``, then bicubic up to output_size.

    ``images`` as in :func:`degrade`; the result has its dtype, shape ``[N, 3, S, S]``.
    """
    if kernel not in DOWN_KERNELS:
        raise ConfigError(f"degrade_to_size kernel: expected one of {DOWN_KERNELS}, got {kernel!r}")
    x = resize(_to_float(images), int(size), kernel)
    if output_size is not None:
        x = resize(x, int(output_size), "bicubic")
    return _from_float(x, images)
