"""A frozen embedding network: :class:`FrozenModel`, what a teacher and any model under evaluation are wrapped in.

Its own module (not :mod:`.teacher`, which loads files into it) so that :mod:`.onnx_teacher`, a kind of frozen
model, and :mod:`.teacher`, which builds one from an ``.onnx`` path, do not import each other.
"""

from __future__ import annotations

import torch
from torch import nn

from .weights import state_dict_sha256


class FrozenModel(nn.Module):
    """A frozen embedding network (a distillation teacher, or any model under evaluation):
    ``forward(x [B,3,S,S] model input, RGB) -> [B,D]`` without gradients.

    ``train()`` cannot switch it out of eval mode (BatchNorm statistics and dropout stay fixed while the
    student trains) and ``requires_grad_()`` cannot unfreeze it. ``checksum`` identifies the weights and
    keys the teacher-embedding cache.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        checksum: str | None = None,
        embedding_size: int | None = None,
        input_size: int | None = None,
        fast: bool = False,
    ) -> None:
        """``fast``: run the frozen network through :func:`~insightface_lr.models.inference.inference_net` (BN
        folded, channels-last where measured faster; built on first use); ``model`` stays the network as
        loaded, with its BatchNorm layers (what FaceBN adapts and a student started from it copies)."""
        super().__init__()
        self.model, self.fast = model, fast
        self.input_size = int(input_size or getattr(model, "input_size", 112))
        self.checksum = checksum or state_dict_sha256(model.state_dict())
        self.requires_grad_(False)
        self.train(False)
        size = embedding_size or getattr(model, "embedding_size", None)
        self.embedding_size = int(size) if size else self._probe_embedding_size()

    def train(self, mode: bool = True) -> FrozenModel:
        # Frozen means frozen: a trainer's blanket model.train() must not re-enable BN updates here.
        return super().train(False)

    def requires_grad_(self, requires_grad: bool = True) -> FrozenModel:
        return super().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: float [B,3,S,S], model input (data.pixels), RGB -> embeddings float [B,D] (not normalised)."""
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != (self.input_size, self.input_size):
            raise ValueError(
                f"teacher expects input [B,3,{self.input_size},{self.input_size}], got {list(x.shape)}"
            )
        with torch.no_grad():
            out = self._runner(x.device)(x)
        # some backbones (arcface_torch mbf with norm_output) return (embedding, norm)
        return out[0] if isinstance(out, (tuple, list)) else out

    def _runner(self, device: torch.device) -> nn.Module:
        """The module that computes the embeddings: ``model``, or its inference copy (kept outside the module
        tree, so it is not in the state dict, and rebuilt when the input moves to another device)."""
        if not self.fast:
            return self.model
        cached = self.__dict__.get("_inference")
        if cached is None or cached[0] != device:
            from .inference import inference_net

            cached = self.__dict__["_inference"] = (device, inference_net(self.model))
        return cached[1]

    def _probe_embedding_size(self) -> int:
        device = next((p.device for p in self.model.parameters()), torch.device("cpu"))
        x = torch.zeros(2, 3, self.input_size, self.input_size, device=device)
        return int(self.forward(x).shape[-1])


