"""The inference path of a torch face network: what ``eval`` and the demo's evaluation run with FaceBN off,
what ``benchmarks/student_speed.py`` measures, and what ``export`` writes to ONNX (BN folded there too).

Three steps, each kept only where it measured faster (BENCHMARKS.md section 6, 1 thread, same run):

* BatchNorm folded into the preceding conv / linear (:func:`~insightface_lr.models.fuse.fold_batchnorm`):
  one memory pass less per layer. Never for FaceBN, which needs the BN layers: :class:`FaceBN` wraps the
  original network (``EvalModel.module``), this path only serves FaceBN "off".
* channels-last (NHWC) activations: oneDNN's depthwise and 1x1 kernels read NHWC without reordering (a 1x1
  conv becomes one matrix product), and its 3x3 convs on small maps gain too. ``CHANNELS_LAST`` holds the
  measured choice per network class; a class not listed keeps NCHW.
* ``torch.inference_mode`` (no autograd version counters or views to track).

``torch.compile`` is not used: on the bridge student it gained less than channels-last at batch 256 and its
~90 s compilation is not repaid by an evaluation sweep of a few minutes (measured in the same run).
"""

from __future__ import annotations

import torch
from torch import nn

from .fuse import fold_batchnorm

# network class -> channels-last activations, measured by benchmarks/student_speed.py (BENCHMARKS.md 6)
# (1 thread, same rounds, x eager: bridge_student@16 b256 NHWC 1.68 vs NCHW 1.15; mbf@32 b64 1.16 vs 1.16;
# r18@16 b64 1.31 vs 0.94). Other classes keep NCHW until measured.
CHANNELS_LAST: dict[str, bool] = {"BridgeStudent": True, "MobileFaceNet": True, "IResNet": True, "MxnetGraphNet": True}


class InferenceNet(nn.Module):
    """``model`` (already folded) run under ``inference_mode``, on NHWC inputs when ``channels_last``.

    ``forward(x [B,3,S,S]) -> [B,D]``: a tuple output (arcface_torch mbf with ``norm_output``) gives its first
    entry; the result is an ordinary tensor (cloned outside inference mode), usable anywhere after.
    """

    def __init__(self, model: nn.Module, channels_last: bool) -> None:
        super().__init__()
        self.model, self.channels_last = model, bool(channels_last)
        self.input_size = getattr(model, "input_size", None)
        self.embedding_size = getattr(model, "embedding_size", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            if self.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            out = self.model(x)
            out = out[0] if isinstance(out, (tuple, list)) else out
        return out.clone()


def inference_net(model: nn.Module, channels_last: bool | None = None) -> InferenceNet:
    """An eval-mode copy of ``model`` for inference: BN folded, NHWC where measured faster (``channels_last``
    None: :data:`CHANNELS_LAST` by class name). ``model`` itself is not modified."""
    if channels_last is None:
        channels_last = CHANNELS_LAST.get(type(model).__name__, False)
    folded = fold_batchnorm(model)
    if channels_last:
        folded = folded.to(memory_format=torch.channels_last)
    return InferenceNet(folded, channels_last)
