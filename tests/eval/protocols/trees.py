"""Tiny benchmark trees in the official layouts, and a stub model whose embeddings the test controls.

Every image is one solid colour; the stub embeds a face as the mean of its central 2 x 2 pixels (normalised as
InsightFace does, ``(p / 255 - 0.5) / 0.5``), so the embedding of an image IS the 3-vector its colour encodes
(:func:`colour`), whatever resizing or alignment happened before. Tests pick vectors to make cosine rankings by
hand, and :func:`file_vector` reads the vector back from the file with plain Pillow for independent references.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.io import savemat
from torch import nn

from insightface_lr.eval.model_loading import EvalModel

INPUT = 16


class CentreColour(nn.Module):
    """[B, 3, S, S] -> [B, 3]: the mean of the central 2 x 2 pixels (invariant to flips and to solid resizes)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[-1] // 2
        return x[:, :, c - 1:c + 1, c - 1:c + 1].mean(dim=(2, 3))


def stub_model(name: str = "stub") -> EvalModel:
    net = CentreColour()
    return EvalModel(name, net, net, INPUT, 3, False, "<module>")


def colour(vector) -> tuple[int, int, int]:
    v = np.clip(np.asarray(vector, dtype=np.float64), -1, 1)
    return tuple(int(round((x * 0.5 + 0.5) * 255)) for x in v)


def write_face(path: Path, vector, size: tuple[int, int] = (20, 16)) -> Path:
    """A solid ``size`` (h, w) image encoding ``vector``; JPEG unless the suffix says otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (size[1], size[0]), colour(vector))
    image.save(path, quality=100) if path.suffix.lower() in (".jpg", ".jpeg") else image.save(path)
    return path


def file_vector(path: Path) -> np.ndarray:
    """The embedding direction of a solid image, read with plain Pillow (independent of the loader)."""
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    return (rgb[rgb.shape[0] // 2, rgb.shape[1] // 2] / 255 - 0.5) / 0.5


def cos(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def cells(names) -> np.ndarray:
    """A MATLAB cell array (N x 1) of strings, as scipy writes and reads it."""
    out = np.empty((len(names), 1), dtype=object)
    for i, name in enumerate(names):
        out[i, 0] = name
    return out


def write_name_ids(path: Path, names_key: str, ids_key: str, names, ids) -> None:
    """TinyFace / SurvFace ``*_img_ID_pairs.mat``: ``names_key`` cell array + ``ids_key`` double column."""
    savemat(path, {names_key: cells(names), ids_key: np.asarray(ids, dtype=np.float64).reshape(-1, 1)})


def rank_of_mate(probe, label, gallery, gallery_labels) -> int:
    """Plain loop: 1 + the number of non-mated gallery entries scoring at least the best mate."""
    best = max(cos(probe, g) for g, lab in zip(gallery, gallery_labels, strict=True) if lab == label)
    return 1 + sum(1 for g, lab in zip(gallery, gallery_labels, strict=True) if lab != label and cos(probe, g) >= best)


def random_vectors(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    return [rng.uniform(-0.9, 0.9, size=3) for _ in range(n)]


def nearest_tar(scores, labels, far) -> float:
    """Plain loop: the full ROC (a point per distinct threshold), then the point nearest ``far``, top TPR on ties."""
    pos, neg = sum(labels), len(labels) - sum(labels)
    points = [(0.0, 0.0)] + [(sum(1 for s, y in zip(scores, labels, strict=True) if s >= t and not y) / neg,
                              sum(1 for s, y in zip(scores, labels, strict=True) if s >= t and y) / pos)
                             for t in sorted(set(scores), reverse=True)]
    best = min(abs(f - far) for f, _ in points)
    return max(t for f, t in points if abs(f - far) == best)
