"""The embedded default face set: deterministic, identity-labelled faces rendered by code (no download).

Designed so that low resolution REALLY hurts. Each identity has
- coarse looks (face shape, feature positions, skin/hair/iris/lip colours) drawn close to one of a few
  shared prototypes (``coarse_clusters``), so that many identities look alike at 8-16 px;
- fine identity detail that vanishes below ~24 px: a high-passed skin texture, oriented skin stripes of a
  3-6 px period, small moles, a spoked iris pattern, brow and hair strands.
Each image varies pose (rotation, shift, scale), expression (eye/mouth opening, smile, gaze), lighting
(directional gradient, brightness, contrast), background and occlusion (a random bar or patch).

Rendering is vectorised over batches with torch: soft signed-distance shapes on a coordinate grid in the
face's canonical frame (x right, y down, crop = [-1, 1]^2, eyes/nose/mouth near ArcFace's aligned landmark
positions), so every texture moves with the pose. Draws are seeded per identity (``[seed, identity]``), so
identity ``k`` looks the same whatever ``num_identities`` is, and ``identity_offset`` gives disjoint people.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from .pixels import to_uint8

# Coarse looks, as unit-cube coordinates mapped to (low, high); canonical units (1 = half the crop).
_COARSE = {
    "face_w": (0.60, 0.76), "face_h": (0.84, 0.98), "face_cy": (0.04, 0.14), "chin": (0.0, 0.45),
    "eye_dx": (0.27, 0.35), "eye_y": (-0.12, -0.04), "eye_w": (0.10, 0.14), "eye_h": (0.045, 0.065),
    "brow_dy": (0.10, 0.16), "brow_thick": (0.025, 0.045), "brow_arch": (0.0, 0.05),
    "nose_len": (0.22, 0.32), "nose_w": (0.06, 0.10), "mouth_y": (0.55, 0.68), "mouth_w": (0.17, 0.26),
    "lip_h": (0.025, 0.045), "hairline": (-0.62, -0.42), "hair_volume": (0.04, 0.16),
    "skin_tone": (0.0, 1.0), "hair_tone": (0.0, 1.0), "iris_tone": (0.0, 1.0), "lip_tone": (0.0, 1.0),
}
# Fine identity detail (uniform per identity). Periods in pixels of a 112 crop.
_FINE = {
    "stripe_period": (3.0, 6.0), "stripe_angle": (0.0, np.pi), "stripe_phase": (0.0, 2 * np.pi),
    "iris_spokes": (5.0, 12.99), "iris_phase": (0.0, 2 * np.pi), "iris_ring": (0.45, 0.8),
    "brow_period": (2.0, 3.2), "brow_angle": (-0.7, 0.7), "hair_period": (3.0, 5.0),
    "hair_angle": (0.0, np.pi), "fringe_freq": (4.0, 12.0), "fringe_phase": (0.0, 2 * np.pi),
}
_MOLES = 6
_TEXTURE = 48  # per-identity skin/hair noise texture, texels across the crop (~2.3 px each at 112)
_BAKE = 160  # baked per-identity detail maps, texels across the crop (a 3 px stripe period gets ~4.3)
# Per-image nuisance columns, all drawn as U(0, 1) (so image j of an identity never depends on the count).
_NUISANCE = ("rot", "shift_x", "shift_y", "scale", "eye_open", "mouth_open", "smile", "gaze_x", "gaze_y",
             "light_dir", "light", "bright", "contrast", "bg_r", "bg_g", "bg_b", "occ", "occ_x", "occ_y",
             "occ_w", "occ_h", "occ_r", "occ_g", "occ_b")
_SKIN = np.array([[0.96, 0.80, 0.69], [0.80, 0.60, 0.46], [0.58, 0.40, 0.29], [0.36, 0.23, 0.16]])
_HAIR = np.array([[0.08, 0.06, 0.05], [0.35, 0.22, 0.12], [0.58, 0.30, 0.13], [0.86, 0.74, 0.47],
                  [0.62, 0.62, 0.62]])
_IRIS = np.array([[0.25, 0.14, 0.07], [0.50, 0.36, 0.16], [0.30, 0.48, 0.26], [0.30, 0.48, 0.72],
                  [0.52, 0.56, 0.60]])
_LIPS = np.array([[0.78, 0.45, 0.45], [0.66, 0.30, 0.33], [0.45, 0.22, 0.22]])


@dataclass(frozen=True)
class SyntheticFaceConfig:
    """Which faces to render and how much they vary; the strengths scale the default ranges (0 = off)."""

    num_identities: int = 200
    images_per_identity: int = 20
    image_size: int = 112
    seed: int = 0
    identity_offset: int = 0  # identities [offset, offset + num): disjoint sets for train and test
    coarse_clusters: int = 8  # coarse looks come from this many shared prototypes -> weak cue at LR
    coarse_jitter: float = 0.04  # per-identity deviation from its prototype (unit-cube std)
    fine_detail: float = 1.0  # contrast of the identity-specific fine detail
    pose: float = 1.0  # rotation +-8 deg, shift +-3 px, scale +-6 %
    expression: float = 1.0  # eye/mouth opening, smile, gaze
    lighting: float = 1.0  # directional gradient, brightness, contrast
    occlusion_prob: float = 0.25
    sensor_noise: float = 0.01  # Gaussian pixel noise std in [0, 1] units

    def __post_init__(self) -> None:
        for name in ("num_identities", "images_per_identity", "image_size", "coarse_clusters"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"SyntheticFaceConfig.{name}: expected a positive integer")
        if self.identity_offset < 0 or not 0.0 <= self.occlusion_prob <= 1.0:
            raise ConfigError("SyntheticFaceConfig: identity_offset must be >= 0, occlusion_prob in [0, 1]")


def _palette(colours: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Piecewise-linear colour ramp through ``colours [K, 3]`` at ``t [...]`` in [0, 1] -> ``[..., 3]``."""
    pos = np.clip(t, 0.0, 1.0) * (len(colours) - 1)
    lo = np.minimum(pos.astype(int), len(colours) - 2)
    frac = (pos - lo)[..., None]
    return colours[lo] * (1 - frac) + colours[lo + 1] * frac


def _identity_params(config: SyntheticFaceConfig) -> tuple[dict[str, Tensor], Tensor]:
    """Per-identity parameters (name -> ``[I]`` or ``[I, k]``) and textures ``[I, 2, T, T]`` (skin, hair)."""
    ids = range(config.identity_offset, config.identity_offset + config.num_identities)
    protos = np.random.default_rng([config.seed, 1 << 20]).random((config.coarse_clusters, len(_COARSE)))
    rows, textures = [], []
    for k in ids:  # a few hundred tiny draws; pixels are rendered batched
        rng = np.random.default_rng([config.seed, k])
        coarse = protos[rng.integers(config.coarse_clusters)] + config.coarse_jitter * rng.normal(
            size=len(_COARSE))
        rows.append(np.concatenate([np.clip(coarse, 0, 1), rng.random(len(_FINE) + 4 * _MOLES)]))
        textures.append(rng.normal(size=(2, _TEXTURE, _TEXTURE)))
    u = np.stack(rows)
    p: dict[str, np.ndarray] = {}
    for j, (name, (lo, hi)) in enumerate(list(_COARSE.items()) + list(_FINE.items())):
        p[name] = lo + (hi - lo) * u[:, j]
    moles = u[:, len(_COARSE) + len(_FINE):].reshape(-1, 4, _MOLES)
    p["mole_u"], p["mole_v"] = moles[:, 0] - 0.5, -0.45 + 1.2 * moles[:, 1]
    p["mole_r"] = 0.014 + 0.016 * moles[:, 2]
    p["mole_dark"] = np.where(moles[:, 3] < 0.7, 0.25 + 0.5 * moles[:, 3], 0.0)  # ~70 % of slots visible
    p["skin_rgb"], p["hair_rgb"] = _palette(_SKIN, p["skin_tone"]), _palette(_HAIR, p["hair_tone"])
    p["iris_rgb"], p["lip_rgb"] = _palette(_IRIS, p["iris_tone"]), _palette(_LIPS, p["lip_tone"])
    tex = torch.from_numpy(np.stack(textures)).float()
    # high-pass: only fine texture identifies (its low frequencies would survive down-sampling)
    tex = tex - F.avg_pool2d(F.pad(tex, (2, 2, 2, 2), mode="circular"), 5, stride=1)
    tex = tex / tex.std(dim=(2, 3), keepdim=True)
    return {k: torch.from_numpy(np.asarray(v)).float() for k, v in p.items()}, tex


def _nuisance(config: SyntheticFaceConfig) -> Tensor:
    """Per-image U(0, 1) draws ``[N, len(_NUISANCE)]``, identity-major order."""
    ids = range(config.identity_offset, config.identity_offset + config.num_identities)
    draws = [np.random.default_rng([config.seed, k, 1]).random((config.images_per_identity, len(_NUISANCE)))
             for k in ids]
    return torch.from_numpy(np.concatenate(draws)).float()


def _soft(sdf: Tensor, width: float = 0.012) -> Tensor:
    """Antialiased inside-mask of a signed distance (negative inside), ~one pixel wide edge at 112."""
    return torch.sigmoid(-sdf / width)


def _gauss(d2: Tensor, sigma: Tensor | float) -> Tensor:
    """Gaussian blob of squared distance ``d2``; the clamp keeps exp off its (very slow) underflow path."""
    return torch.exp(-(d2 / (2 * sigma**2)).clamp(max=30.0))


def _ellipse(du: Tensor, dv: Tensor, a: Tensor | float, b: Tensor | float) -> Tensor:
    """Signed distance to an axis-aligned ellipse ``a, b``: (r - 1) / |grad r|, right for thin ones too."""
    r = torch.sqrt((du / a) ** 2 + (dv / b) ** 2 + 1e-12)
    return (r - 1.0) * r / torch.sqrt((du / a**2) ** 2 + (dv / b**2) ** 2 + 1e-12)


def _mix(img: Tensor, colour: Tensor, mask: Tensor) -> Tensor:
    """Paint ``colour [B|1, 3, ...]`` over ``img [B, 3, H, W]`` with coverage ``mask [B, H, W]``."""
    return torch.lerp(img, colour.expand_as(img), mask.unsqueeze(1))


def _col(p: dict[str, Tensor], name: str) -> Tensor:
    return p[name].view(-1, 3, 1, 1)


def _stripes(u: Tensor, v: Tensor, period_px: Tensor, angle: Tensor, phase: Tensor | float) -> Tensor:
    """``sin`` stripes in the canonical frame; period given in pixels of a 112 crop (1 unit = 56 px)."""
    k = 2 * torch.pi * 56.0 / period_px
    return torch.sin(k * (u * torch.cos(angle) + v * torch.sin(angle)) + phase)


def _detail_maps(p: dict[str, Tensor], tex: Tensor, fine: float) -> Tensor:
    """Bake each identity's fine detail into canonical maps ``[I, 2, _BAKE, _BAKE]``: skin and hair gain.

    Skin: high-passed noise, oriented 3-6 px stripes and moles; hair: noise and strands. Baked once per
    identity and resampled with the pose, instead of re-evaluating blobs and waves at every pixel.
    """
    t = (torch.arange(_BAKE, dtype=torch.float32) + 0.5) / _BAKE * 2 - 1
    v, u = t.view(1, -1, 1), t.view(1, 1, -1)
    q = {k: val.view(-1, 1, 1) for k, val in p.items() if val.ndim == 1}
    noise = F.interpolate(tex, size=(_BAKE, _BAKE), mode="bilinear", align_corners=False)
    skin = 1 + fine * (0.07 * noise[:, 0] + 0.06 * _stripes(u, v, q["stripe_period"], q["stripe_angle"],
                                                           q["stripe_phase"]))
    m = {k: p[k][..., None, None] for k in ("mole_u", "mole_v", "mole_r", "mole_dark")}  # [I, M, 1, 1]
    d2 = (u.unsqueeze(1) - m["mole_u"]) ** 2 + (v.unsqueeze(1) - m["mole_v"]) ** 2
    moles = (m["mole_dark"] * _gauss(d2, m["mole_r"])).sum(1).clamp(max=0.8)
    hair = 1 + fine * (0.18 * noise[:, 1] + 0.15 * _stripes(u, v, q["hair_period"], q["hair_angle"], 0.0))
    return torch.stack([skin * (1 - fine * moles), hair], 1)


def _head(u: Tensor, v: Tensor, p: dict[str, Tensor], detail: Tensor, img: Tensor) -> Tensor:
    """Hair mass, ears, face (shaded, with the identity's skin detail ``detail[:, 0]``) and fringe."""
    hair_col = _col(p, "hair_rgb") * detail[:, 1:2]
    vol = p["hair_volume"]
    hair = _soft(_ellipse(u, v - p["face_cy"] + 0.1, p["face_w"] + vol, p["face_h"] + vol))
    img = _mix(img, hair_col, hair * _soft(v - p["face_cy"] - 0.25, 0.05))
    skin = _col(p, "skin_rgb")
    img = _mix(img, skin * 0.9, _soft(_ellipse(u.abs() - p["face_w"], v - p["eye_y"] - 0.12, 0.07, 0.14)))  # ears
    dv = v - p["face_cy"]
    width = p["face_w"] * (1 - p["chin"] * dv.clamp(min=0) ** 2)
    face_sdf = _ellipse(u, dv, width, p["face_h"])
    shade = 0.82 + 0.18 * torch.sigmoid(-face_sdf / 0.08)  # darker towards the outline: some 3-D feel
    img = _mix(img, skin * (shade.unsqueeze(1) * detail[:, :1]), _soft(face_sdf))
    fringe = _soft(v - p["hairline"] - 0.05 * torch.sin(p["fringe_freq"] * u + p["fringe_phase"]), 0.02)
    return _mix(img, hair_col, fringe * _soft(face_sdf + 0.01))


def _eye(u: Tensor, v: Tensor, p: dict[str, Tensor], img: Tensor, side: float, fine: float) -> Tensor:
    """Eye white, spoked iris (gaze), pupil, lid and textured brow of one ``side`` (-1 left, +1 right)."""
    du, dv = u - side * p["eye_dx"], v - p["eye_y"]
    eye_sdf = _ellipse(du, dv, p["eye_w"], p["eye_h"] * p["eye_open"])
    white = _soft(eye_sdf)
    img = _mix(img, torch.full_like(img[:1, :, :1, :1], 0.93), white)
    r_iris = p["eye_h"] * 0.95
    gu, gv = du - p["gaze_x"], dv - p["gaze_y"]
    radius = torch.sqrt(gu**2 + gv**2 + 1e-12)
    spokes = torch.sin(torch.floor(p["iris_spokes"]) * torch.atan2(gv, gu) + p["iris_phase"] + side)
    ring = _gauss((radius / r_iris - p["iris_ring"]) ** 2, 0.06)
    pattern = 1 + fine * (0.4 * spokes * (radius / r_iris) - 0.45 * ring)
    img = _mix(img, _col(p, "iris_rgb") * pattern.unsqueeze(1), white * _soft(radius - r_iris, 0.008))
    img = _mix(img, torch.full_like(img[:1, :, :1, :1], 0.04), white * _soft(radius - 0.38 * r_iris, 0.008))
    lid = _soft(eye_sdf.abs() - 0.008, 0.006) * (dv < 0.01)
    img = _mix(img, _col(p, "hair_rgb") * 0.5, lid)
    bu, bv = du, v - (p["eye_y"] - p["brow_dy"]) + p["brow_arch"] * (1 - (du / p["eye_w"]) ** 2)
    brow = _soft(bv.abs() - p["brow_thick"] / 2, 0.008) * _soft(bu.abs() - 1.25 * p["eye_w"], 0.02)
    strands = 1 + fine * 0.35 * _stripes(bu, bv, p["brow_period"], p["brow_angle"] * side + 1.3, 0.0)
    img = _mix(img, _col(p, "hair_rgb") * 0.85 * strands.unsqueeze(1), brow * 0.9)
    return img


def _nose_mouth(u: Tensor, v: Tensor, p: dict[str, Tensor], img: Tensor) -> Tensor:
    """Nose ridge shading, nostrils and tip highlight; lips with opening and smile."""
    tip = p["eye_y"] + p["nose_len"] + 0.08
    ridge = _gauss((u - 0.045) ** 2, 0.018) * _soft(v - tip, 0.03) * _soft(p["eye_y"] - v, 0.03)
    nostrils = sum(_gauss((u - s * p["nose_w"] * 0.55) ** 2 + (v - tip) ** 2, 0.018) for s in (-1.0, 1.0))
    highlight = _gauss(u**2 + (v - tip + 0.04) ** 2, 0.04)
    img = img * (1 - 0.10 * ridge - 0.45 * nostrils + 0.08 * highlight).unsqueeze(1)
    du = u / p["mouth_w"]
    dv = v - p["mouth_y"] + p["smile"] * 0.05 * (1 - du**2)
    lips = _soft(_ellipse(u, dv, p["mouth_w"], p["lip_h"] + 0.05 * p["mouth_open"]))
    img = _mix(img, _col(p, "lip_rgb"), lips)
    inner = _soft(_ellipse(u, dv, 0.85 * p["mouth_w"], 0.045 * p["mouth_open"] + 0.004), 0.006)
    return _mix(img, torch.tensor([0.25, 0.08, 0.08]).view(1, 3, 1, 1), inner)


def _scene(x: Tensor, y: Tensor, n: dict[str, Tensor], img: Tensor, occlusion_prob: float) -> Tensor:
    """Directional light, brightness/contrast, then an occluding bar/patch (pixel frame ``x, y``)."""
    gradient = torch.cos(n["light_dir"]) * x + torch.sin(n["light_dir"]) * y
    gain = (1 + n["light"] * gradient) * n["contrast"]  # light, then contrast about mid-grey, in one op
    img = torch.addcmul((0.5 - 0.5 * n["contrast"] + n["bright"]).unsqueeze(1), img, gain.unsqueeze(1))
    hit = (n["occ"].view(-1) < occlusion_prob).nonzero().squeeze(1)  # only the occluded faces
    o = {k: n[k][hit] for k in ("occ_x", "occ_y", "occ_w", "occ_h", "occ_r", "occ_g", "occ_b")}
    box = _soft((x - o["occ_x"]).abs() - o["occ_w"]) * _soft((y - o["occ_y"]).abs() - o["occ_h"])
    colour = torch.stack([o["occ_r"], o["occ_g"], o["occ_b"]], 1).view(-1, 3, 1, 1)
    return img.index_copy(0, hit, _mix(img[hit], colour, box))


def _scaled_nuisance(u: Tensor, c: SyntheticFaceConfig) -> dict[str, Tensor]:
    """Map U(0, 1) draws ``[B, K]`` to physical nuisance values (name -> ``[B, 1, 1]``)."""
    n = {name: u[:, j].view(-1, 1, 1) for j, name in enumerate(_NUISANCE)}
    sym = lambda t: 2 * t - 1
    out = {"rot": sym(n["rot"]) * 0.14 * c.pose, "shift_x": sym(n["shift_x"]) * 0.055 * c.pose,
           "shift_y": sym(n["shift_y"]) * 0.055 * c.pose, "scale": 1 + sym(n["scale"]) * 0.06 * c.pose,
           "eye_open": 1 - 0.6 * c.expression * n["eye_open"] ** 2,
           "mouth_open": c.expression * n["mouth_open"] ** 2,
           "smile": sym(n["smile"]) * c.expression, "gaze_x": sym(n["gaze_x"]) * 0.025 * c.expression,
           "gaze_y": sym(n["gaze_y"]) * 0.01 * c.expression, "light_dir": n["light_dir"] * 2 * torch.pi,
           "light": n["light"] * 0.35 * c.lighting, "bright": sym(n["bright"]) * 0.12 * c.lighting,
           "contrast": 1 + sym(n["contrast"]) * 0.18 * c.lighting, "occ_w": 0.08 + 0.35 * n["occ_w"],
           "occ_h": 0.08 + 0.25 * n["occ_h"], "occ_x": sym(n["occ_x"]) * 0.7, "occ_y": sym(n["occ_y"]) * 0.7}
    out.update({k: n[k].view(-1) for k in ("bg_r", "bg_g", "bg_b", "occ_r", "occ_g", "occ_b")})
    out["occ"] = n["occ"]
    return out


def _pose_extremes(c: SyntheticFaceConfig) -> dict[str, Tensor]:
    """The 16 extreme poses of the config (every pose draw lies between them), as a nuisance dict."""
    corners = torch.cartesian_prod(*[torch.tensor([0.0, 1.0])] * 4)
    u = torch.zeros(len(corners), len(_NUISANCE))
    u[:, [_NUISANCE.index(k) for k in ("rot", "shift_x", "shift_y", "scale")]] = corners
    return _scaled_nuisance(u, c)


def _window(n: dict[str, Tensor], size: int, box: tuple[float, float, float, float]) -> tuple[slice, slice]:
    """Pixel rows and columns covering the canonical ``box = (u0, u1, v0, v1)`` in every pose of ``n``."""
    u = torch.tensor([box[0], box[1], box[0], box[1]]).view(1, 4)
    v = torch.tensor([box[2], box[2], box[3], box[3]]).view(1, 4)
    rot, scale = n["rot"].view(-1, 1), n["scale"].view(-1, 1)
    x = scale * (torch.cos(rot) * u - torch.sin(rot) * v) + n["shift_x"].view(-1, 1)
    y = scale * (torch.sin(rot) * u + torch.cos(rot) * v) + n["shift_y"].view(-1, 1)
    to_px = lambda t, f: int(min(max(f((float(t) + 1) * size / 2 - 0.5), 0), size))
    return (slice(to_px(y.min(), np.floor), to_px(y.max(), np.ceil) + 1),
            slice(to_px(x.min(), np.floor), to_px(x.max(), np.ceil) + 1))


def _render(labels: Tensor, noise: Tensor, ident: dict[str, Tensor], tex: Tensor,
            c: SyntheticFaceConfig, gen: torch.Generator) -> Tensor:
    """Render ``[B, 3, S, S]`` floats for local identity indices ``labels [B]`` and draws ``noise [B, K]``."""
    s, n = c.image_size, _scaled_nuisance(noise, c)
    used, inverse = torch.unique(labels, return_inverse=True)  # bake detail only for this batch's people
    maps = _detail_maps({k: v[used] for k, v in ident.items()}, tex[used], c.fine_detail)
    p = {k: (v[labels].view(-1, 1, 1) if v.ndim == 1 else v[labels]) for k, v in ident.items()}
    p.update({k: n[k] for k in ("eye_open", "mouth_open", "smile", "gaze_x", "gaze_y")})
    grid = (torch.arange(s, dtype=torch.float32) + 0.5) / s * 2 - 1
    y, x = grid.view(1, s, 1), grid.view(1, 1, s)
    cos, sin = torch.cos(n["rot"]), torch.sin(n["rot"])
    dx, dy = x - n["shift_x"], y - n["shift_y"]
    u, v = (cos * dx + sin * dy) / n["scale"], (-sin * dx + cos * dy) / n["scale"]
    detail = F.grid_sample(maps[inverse], torch.stack([u, v], -1), mode="bilinear", padding_mode="border",
                           align_corners=False)
    bg = 0.15 + 0.7 * torch.stack([n["bg_r"], n["bg_g"], n["bg_b"]], 1).view(-1, 3, 1, 1)
    img = _head(u, v, p, detail, (bg * (1 + 0.15 * y).unsqueeze(1)).expand(-1, 3, s, s))
    # paint the features only inside the window where they can be in any pose (a fraction of the frame);
    # the window depends on the config alone, so a face never depends on the rest of its batch
    extremes = _pose_extremes(c)
    for box, paint in (((-0.75, 0.0, -0.5, 0.16), lambda *a: _eye(*a, -1.0, c.fine_detail)),
                       ((0.0, 0.75, -0.5, 0.16), lambda *a: _eye(*a, 1.0, c.fine_detail)),
                       ((-0.42, 0.42, -0.25, 0.95), _nose_mouth)):
        rows, cols = _window(extremes, s, box)
        img[:, :, rows, cols] = paint(u[:, rows, cols], v[:, rows, cols], p, img[:, :, rows, cols])
    img = _scene(x, y, n, img, c.occlusion_prob)
    # uniform noise of the same std: as good for a sensor model, and cheaper to draw than normal
    noise = torch.rand(img.shape, generator=gen).sub_(0.5).mul_(c.sensor_noise * 12**0.5)
    return img.add_(noise).clamp_(0.0, 1.0)


def generate_faces(config: SyntheticFaceConfig | None = None,
                   chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Render the face set: images uint8 ``[N, S, S, 3]`` RGB and labels int64 ``[N]`` (identity-major).

    Labels are global identity numbers ``identity_offset + k``. Same config -> identical arrays.
    """
    c = config or SyntheticFaceConfig()
    ident, tex = _identity_params(c)
    noise = _nuisance(c)
    local = torch.arange(c.num_identities).repeat_interleave(c.images_per_identity)
    gen = torch.Generator().manual_seed(c.seed * 1_000_003 + c.identity_offset)
    out = np.empty((len(local), c.image_size, c.image_size, 3), dtype=np.uint8)
    with torch.no_grad():
        for start in range(0, len(local), chunk):  # chunks bound memory; each chunk is one batched render
            sl = slice(start, start + chunk)
            img = _render(local[sl], noise[sl], ident, tex, c, gen)
            out[sl] = to_uint8(img).permute(0, 2, 3, 1).numpy()  # img is clamped to [0, 1]
    return out, (local + c.identity_offset).numpy().astype(np.int64)


def verification_pairs(num_identities: int, images_per_identity: int, pairs: int,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random verification pairs over an identity-major set: ``(first [P], second [P], issame [P])``.

    Half (rounded down) are positives (two different images of one identity), the rest negatives (two
    different identities), shuffled so every one of the 10 folds holds both kinds.
    """
    if num_identities < 2 or images_per_identity < 2 or pairs < 2:
        raise ConfigError("verification pairs need >= 2 identities, >= 2 images per identity and >= 2 pairs, "
                          f"got {num_identities}, {images_per_identity}, {pairs}")
    rng = np.random.default_rng([seed, 1 << 21])
    n_pos, n_neg = pairs // 2, pairs - pairs // 2
    ipi = images_per_identity
    k = rng.integers(num_identities, size=n_pos)
    i = rng.integers(ipi, size=n_pos)
    j = (i + rng.integers(1, ipi, size=n_pos)) % ipi  # a different image of the same person
    k1 = rng.integers(num_identities, size=n_neg)
    k2 = (k1 + rng.integers(1, num_identities, size=n_neg)) % num_identities  # a different person
    i1, i2 = rng.integers(ipi, size=(2, n_neg))
    first = np.concatenate([k * ipi + i, k1 * ipi + i1])
    second = np.concatenate([k * ipi + j, k2 * ipi + i2])
    same = np.concatenate([np.ones(n_pos, bool), np.zeros(n_neg, bool)])
    order = rng.permutation(pairs)
    return first[order], second[order], same[order]


@dataclass(frozen=True)
class SyntheticDatasetPaths:
    """Files written by :func:`write_synthetic_dataset`."""

    rec: Path  # train.rec (train.idx and property beside it)
    idx: Path
    property: Path
    test_bin: Path


def write_synthetic_dataset(out_dir: str | os.PathLike, train_ids: int = 200, test_ids: int = 100,
                            images_per_identity: int = 20, pairs: int = 3000, seed: int = 0,
                            base: SyntheticFaceConfig | None = None) -> SyntheticDatasetPaths:
    """Write the embedded face set in InsightFace's formats: ``train.rec/.idx/property`` and ``test.bin``.

    Train: identities ``0 .. train_ids-1`` (labels as written). Test: ``pairs`` verification pairs from the
    DISJOINT identities ``train_ids .. train_ids+test_ids-1``. Images are JPEG (quality 95, as InsightFace
    packs them). ``base`` supplies the variation strengths. Same arguments -> byte-identical files.
    """
    from . import image_codec, recordio, verification_bin

    base = base or SyntheticFaceConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = replace(base, num_identities=train_ids, images_per_identity=images_per_identity, seed=seed,
                    identity_offset=0)
    test = replace(train, num_identities=test_ids, identity_offset=train_ids)
    first, second, same = verification_pairs(test_ids, images_per_identity, pairs, seed)  # validate first
    images, labels = generate_faces(train)
    rec = recordio.write_rec_dataset(out, (image_codec.encode_jpeg(im) for im in images), labels.tolist(),
                                     image_size=(train.image_size, train.image_size))
    test_images, _ = generate_faces(test)
    encoded = [image_codec.encode_jpeg(im) for im in test_images]  # each test image encoded once
    bins = [encoded[i] for pair in zip(first, second, strict=True) for i in pair]
    test_bin = verification_bin.write_bin(out / "test.bin", bins, same.tolist())
    return SyntheticDatasetPaths(rec=Path(rec), idx=Path(rec).with_suffix(".idx"),
                                 property=Path(rec).parent / "property", test_bin=Path(test_bin))
