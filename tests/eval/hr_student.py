"""One tiny model for the evaluation tests: a 16-px bridge_student whose BatchNorm running statistics are
the exact population statistics of given HR faces (as if it had been trained on them), so FaceBN off is the
"source" model and FaceBN on measurably moves away from it on degraded probes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from insightface_lr.models.teacher import save_student
from insightface_lr.registry import BACKBONES


def hr_calibrated_student(path: Path, images: np.ndarray, embedding_size: int = 32) -> Path:
    """Save (``save_student``) a seeded bridge_student whose BN stats are those of uint8 ``[N,H,W,3]`` faces."""
    torch.manual_seed(0)
    model = BACKBONES.build("bridge_student", embedding_size=embedding_size, input_size=16)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = torch.nn.functional.interpolate(x, size=16, mode="bicubic", antialias=True, align_corners=False)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the pass: the population statistics
    model.train()
    with torch.no_grad():
        model((x - 0.5) / 0.5)
    return save_student(path, model.eval(), network="bridge_student")
