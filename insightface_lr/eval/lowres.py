"""Verification of a model on a ``.bin`` pair set at a given probe resolution.

The probes are the faces degraded once to ``size`` px as uint8 (:mod:`.probes`: the evaluation path of
:func:`insightface_lr.data.degrade.degrade_to_size` as matrix products, the same kernel), resized to the model
input batch by batch. ``mode="lr-lr"`` degrades both faces of a pair; ``"hr-lr"`` keeps the
first face of each pair (gallery) at HR and degrades the second (probe).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..data.degrade import degrade_to_size
from ..data.pixels import denormalize, normalize
from ..errors import ConfigError
from .probes import model_probes, to_input_size
from .verification import VerificationResult, embed_pairs, verification_metrics

PAIR_MODES = ("lr-lr", "hr-lr")


def degrade_normalised(x: torch.Tensor, size: int, input_size: int, kernel: str = "bicubic") -> torch.Tensor:
    """Normalised faces ``[B,3,H,W]`` degraded to ``size`` px and resized to ``input_size`` (normalised)."""
    return normalize(degrade_to_size(denormalize(x), size, kernel=kernel, output_size=input_size))


def probe_chain(image_size: int, size: int, input_size: int) -> tuple[int, ...]:
    """The resizes :func:`degrade_normalised` really applies to ``image_size`` faces probed at ``size`` for a
    model of ``input_size`` (a resize to the current side is the identity). Two probe sizes with the same chain
    give bit-identical model inputs: e.g. a 16-px student sees a 112-px probe exactly as a 16-px one."""
    chain = [size] if size != image_size else []
    current = chain[-1] if chain else image_size
    return (*chain, input_size) if input_size != current else tuple(chain)


def degraded_model_fn(
    model_fn: Callable[[torch.Tensor], torch.Tensor], size: int, input_size: int, kernel: str = "bicubic"
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Wrap ``model_fn`` (normalised float input) so its input is first degraded to ``size`` px and
    resized to the model's ``input_size``."""
    return lambda x: model_fn(degrade_normalised(x, size, input_size, kernel))


def embed_at_size(
    model_fn: Callable[[torch.Tensor], torch.Tensor], images: np.ndarray, size: int, input_size: int,
    batch_size: int = 64, device: str | torch.device = "cpu", progress: bool = False,
    probes: np.ndarray | None = None, distinct: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """``[2, N, D]`` (original + flip) embeddings of uint8 ``[N,H,W,3]`` faces seen at ``size`` px: the faces
    degraded once to uint8 ``size``-px probes and shrunk to the model input if smaller
    (:func:`.probes.model_probes`; ``probes`` if already made), enlarged per batch if the input is larger.
    ``distinct`` (:func:`distinct_faces` of ``images``): embed each distinct face once and copy it to its
    repeats; only for a model whose output for a face does not depend on the rest of its batch (FaceBN off or
    calibrated, never test-batch statistics)."""
    low = model_probes(images, size, input_size) if probes is None else probes
    if distinct is not None:
        first, inverse = distinct
        return embed_at_size(model_fn, images, size, input_size, batch_size, device, progress,
                             probes=low[first])[:, inverse]
    # the mirrored view reuses each resized batch (resizing commutes with a horizontal flip)
    return embed_pairs(model_fn, low, batch_size=batch_size, flip=True, device=device, progress=progress,
                       preprocess=lambda x: to_input_size(x, input_size))


def lowres_verification(
    model_fn: Callable[[torch.Tensor], torch.Tensor], images: np.ndarray, issame: np.ndarray, size: int,
    input_size: int, mode: str = "lr-lr", batch_size: int = 64, device: str | torch.device = "cpu",
    hr_embeddings: np.ndarray | None = None, probes: np.ndarray | None = None,
    distinct: tuple[np.ndarray, np.ndarray] | None = None,
) -> VerificationResult:
    """InsightFace 10-fold verification with probes at ``size`` px (``mode`` in :data:`PAIR_MODES`);
    ``probes``: :func:`.probes.model_probes` of ``images`` at ``size`` when already made; ``distinct``: see
    :func:`embed_at_size`."""
    if mode not in PAIR_MODES:
        raise ConfigError(f"pair mode: expected one of {PAIR_MODES}, got {mode!r}")
    low = embed_at_size(model_fn, images, size, input_size, batch_size, device, probes=probes, distinct=distinct)
    if mode == "hr-lr":
        if hr_embeddings is None:
            hr_embeddings = embed_at_size(model_fn, images, images.shape[1], input_size, batch_size, device)
        low = low.copy()
        low[:, 0::2] = hr_embeddings[:, 0::2]  # gallery face of each pair stays at HR
    return verification_metrics(low, issame)
