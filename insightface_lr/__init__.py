"""insightface-lr: low-resolution face recognition by knowledge distillation for InsightFace.

Importing the package has no side effects (no process group, no argument parsing, no mxnet) and
stays cheap: heavy sub-modules are imported on first use of the public names below.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"  # the one place: setup.py reads it, CHANGELOG.md names it (tests/test_version.py)

# public name -> module that defines it; resolved lazily (PEP 562)
_PUBLIC = {
    "Registry": "insightface_lr.registry",
    "register_backbone": "insightface_lr.registry",
    "register_head": "insightface_lr.registry",
    "register_distill_term": "insightface_lr.registry",
    "register_loss": "insightface_lr.registry",
    "get_backbone": "insightface_lr.models",
    "FaceBN": "insightface_lr.models.facebn",
    "load_teacher": "insightface_lr.models.teacher",
    "save_student": "insightface_lr.models.student_file",
    "load_student": "insightface_lr.models.student_file",
    "export_onnx": "insightface_lr.models.export",
    "export_model_package": "insightface_lr.models.export",
    "build_distiller": "insightface_lr.losses.distiller",
    "DistillInputs": "insightface_lr.losses.distiller",
    "ShardedMarginClassifier": "insightface_lr.losses.partial_fc",
    "DegradeConfig": "insightface_lr.data.degrade",
    "degrade": "insightface_lr.data.degrade",
    "RecordDataset": "insightface_lr.data.datasets",
    "read_bin": "insightface_lr.data.verification_bin",
    "load_config": "insightface_lr.train.config",
    "Trainer": "insightface_lr.train.trainer",
    "verification_metrics": "insightface_lr.eval.verification",
    "lowres_verification": "insightface_lr.eval.lowres",
}

__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'insightface_lr' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
