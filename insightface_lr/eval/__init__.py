"""Evaluation metrics: InsightFace verification, 1:N identification, IJB template verification.

Import-light: the sub-modules (numpy only; torch only inside ``embed_pairs``) load on first use of
the names below.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it; resolved lazily (PEP 562)
_PUBLIC = {
    "VerificationResult": "insightface_lr.eval.verification",
    "verification_metrics": "insightface_lr.eval.verification",
    "fuse_flip": "insightface_lr.eval.verification",
    "embed_pairs": "insightface_lr.eval.verification",
    "l2_normalize": "insightface_lr.eval.verification",
    "cosine_scores": "insightface_lr.eval.identification",
    "match_ranks": "insightface_lr.eval.identification",
    "cmc": "insightface_lr.eval.identification",
    "open_set": "insightface_lr.eval.identification",
    "pool_templates": "insightface_lr.eval.ijb",
    "template_pair_scores": "insightface_lr.eval.ijb",
    "roc_curve": "insightface_lr.eval.ijb",
    "tar_at_far": "insightface_lr.eval.ijb",
    "ijb_tar_at_far": "insightface_lr.eval.ijb",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'insightface_lr.eval' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
