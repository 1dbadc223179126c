"""A distributed sampler that can resume mid-epoch.

Each epoch draws one permutation of the dataset from ``(seed, epoch)``; the global batch ``k`` is the
slice ``perm[k*B:(k+1)*B]`` and rank ``r`` of ``W`` takes every ``W``-th element of it. So the set of samples
in a global step does not depend on the number of processes (a 2-process run sees the same global batches
as a 1-process run), and resuming at step ``k`` only needs ``(epoch, k)``: no iterator state is saved.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from ..errors import ConfigError


class ResumableDistributedSampler(Sampler[int]):
    def __init__(
        self, num_samples: int, global_batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0
    ) -> None:
        if global_batch_size % world_size:
            raise ConfigError(
                f"field `batch_size`: global batch {global_batch_size} not divisible by {world_size} ranks"
            )
        if num_samples < global_batch_size:
            raise ConfigError(
                f"field `batch_size`: {num_samples} samples is fewer than one batch ({global_batch_size})"
            )
        self.num_samples = num_samples
        self.global_batch_size = global_batch_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.epoch = 0
        self.start_step = 0

    @property
    def steps_per_epoch(self) -> int:
        # drop_last, as arcface_torch does: every step has a full global batch
        return self.num_samples // self.global_batch_size

    def set_position(self, epoch: int, step_in_epoch: int = 0) -> None:
        self.epoch, self.start_step = epoch, step_in_epoch

    def global_indices(self) -> torch.Tensor:
        """[steps_per_epoch, global_batch] sample indices of this epoch, all ranks."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.num_samples, generator=generator)
        used = self.steps_per_epoch * self.global_batch_size
        return perm[:used].view(self.steps_per_epoch, self.global_batch_size)

    def __iter__(self) -> Iterator[int]:
        batches = self.global_indices()[self.start_step:, self.rank :: self.world_size]
        return iter(batches.reshape(-1).tolist())

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * (self.global_batch_size // self.world_size)
