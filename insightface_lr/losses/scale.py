"""Loss terms measured in units of their own starting value: ``value / value_at_first_step``.

Why: distillation terms live on very different scales. From a pretrained start, Hinton KD on scale-64 cosine
logits (tau = 4) is ~60-110 while an embedding cosine distance is ~0.1-0.5: one weight grid cannot reach both,
and a KD weight of 1 swamps the margin loss and undoes the pretrained network. Dividing each term by its own
(detached) value at the first training step makes every term start at its weight, so one grid
(``distill_weights``) means the same for every method: the fair alternative to a per-method grid.

The reference is a buffer: saved in checkpoints with the distiller, so a resumed run divides by the same
number; under DDP it is the mean over the ranks' first values, so every rank scales alike.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

EPS = 1e-8  # a term that starts at exactly 0 is left in its raw units (divided by 1)


class FirstValueScale(nn.Module):
    """``scale(value [scalar]) -> value / reference``; ``reference`` is set from ``value`` on the first call
    (detached, mean over DDP ranks); the reference stays fixed after that."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("reference", torch.zeros(()))

    def forward(self, value: Tensor) -> Tensor:
        if float(self.reference) == 0.0:
            first = value.detach().float().reshape(())
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                first = first.clone()
                torch.distributed.all_reduce(first)
                first /= torch.distributed.get_world_size()
            self.reference.copy_(first if float(first.abs()) > EPS else torch.ones(()))
        return value / self.reference.to(value.dtype)
