"""Process-group setup for ``torchrun`` (gloo on CPU, nccl on CUDA) and the few collectives we need.

Nothing here runs at import time: :func:`init_distributed` is called by the trainer's entry point.
A single process (no ``WORLD_SIZE`` in the environment) gets a context with world size 1 and no group.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..devices import resolve_device


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device_preference: str = "auto", timeout_s: float = 300.0) -> DistContext:
    """Join the ``torchrun`` process group if there is one; otherwise a single-process context.

    The timeout bounds how long surviving ranks wait in a collective when another rank died, so a crash
    ends the job with an error instead of a hang.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference, local_rank, source="field `device`")
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def all_reduce_mean_(tensors: Iterable[torch.Tensor], ctx: DistContext) -> None:
    """Average tensors in place across ranks (used for the distiller's few parameters: DDP wraps only
    the student, and the sharded classifier must not be averaged)."""
    if not ctx.distributed:
        return
    for tensor in tensors:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(ctx.world_size)


def global_mean(named: dict[str, torch.Tensor], ctx: DistContext) -> dict[str, float]:
    """Scalars averaged over ranks in one collective, as Python floats (a logged loss curve is then that
    of the global batch: per-rank distillation terms are means over the local batch)."""
    stacked = torch.stack([v.float().reshape(()) for v in named.values()])
    all_reduce_mean_([stacked], ctx)
    return dict(zip(named, stacked.tolist(), strict=True))


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
