"""Backbones and model wrappers. Importing this package registers the built-in backbones.

Create a backbone with :func:`get_backbone` (the factory contract is in :mod:`insightface_lr.models.factory`);
``BACKBONES.build(name, ...)`` reaches the same factories without the option check.
"""

from __future__ import annotations

from ..registry import BACKBONES
from . import (  # noqa: F401
    bridge_student,
    export,
    facebn,
    fuse,
    iresnet,
    mobilefacenet,
    mxnet,
    onnx_teacher,
    teacher,
)
from .bridge_student import BridgeStudent
from .facebn import FaceBN
from .factory import get_backbone
from .fuse import fold_batchnorm
from .iresnet import IResNet
from .mobilefacenet import MobileFaceNet

__all__ = ["BACKBONES", "BridgeStudent", "FaceBN", "IResNet", "MobileFaceNet", "fold_batchnorm", "get_backbone"]
