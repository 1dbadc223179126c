"""Model-parallel margin classifier with PartialFC v2 semantics (An et al., "Killing Two Birds with One
Stone: Efficient and Robust Training of Face Recognition CNNs by Partial FC", CVPR 2022, arXiv 2203.15565).

Each rank holds the class centres of classes ``[class_start, class_start + num_local)`` (arcface_torch's
split: the first ``num_classes % world_size`` ranks hold one class more). A step all-gathers the
embeddings and labels of the global batch, computes the cosines against the local centres, applies the
margin head (labels of other shards are -1 there) and a softmax cross-entropy whose max and sum-exp
are all-reduced across ranks, so every rank returns the same loss: the mean over the global batch.

Gradients: the centres get the exact gradient of that loss (each rank owns its shard; **never wrap
this module in DDP**, it would average unrelated shards). The local embeddings get the sum over ranks
of the partial gradients, times ``world_size`` when ``scale_grad_for_ddp`` (arcface_torch's choice),
because DDP on the backbone then divides by ``world_size`` when it averages.

Without ``torch.distributed`` initialised, one process holds the whole class set. The parameter is
named ``weight`` ``[num_local, D]`` like arcface_torch's shard checkpoints ``softmax_fc_gpu_{rank}.pt``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ..errors import ConfigError
from ..registry import HEADS
from . import margin as _margin  # noqa: F401  (registers the built-in heads for `head="arcface"`)

__all__ = ["ShardedMarginClassifier", "shard_range"]


def shard_range(num_classes: int, rank: int, world_size: int) -> tuple[int, int]:
    """``(class_start, num_local)`` of ``rank``: arcface_torch's PartialFC split."""
    base, extra = divmod(num_classes, world_size)
    return base * rank + min(rank, extra), base + int(rank < extra)


class ShardedMarginClassifier(nn.Module):
    """``forward(local_embeddings [B, D], local_labels [B]) -> loss`` (global-batch mean, float32 or float64).

    ``head``: a margin head (``nn.Module`` or callable ``(cosine [N, C], labels [N]) -> logits``) or a
    registered head name. ``sample_rate < 1``: in training mode each step keeps the positive classes
    of the shard plus random negatives, ``int(sample_rate * num_local)`` centres in all.
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        head: nn.Module | Callable[[Tensor, Tensor], Tensor] | str,
        rank: int | None = None,
        world_size: int | None = None,
        sample_rate: float = 1.0,
        scale_grad_for_ddp: bool = True,
        group: Any = None,
    ) -> None:
        super().__init__()
        self.rank, self.world_size = _resolve_rank(rank, world_size, group)
        _validate(embedding_size, num_classes, self.world_size, sample_rate)
        self.embedding_size, self.num_classes, self.sample_rate = embedding_size, num_classes, sample_rate
        self.class_start, self.num_local = shard_range(num_classes, self.rank, self.world_size)
        self.num_sample = max(1, int(sample_rate * self.num_local))
        self.scale_grad_for_ddp, self.group = scale_grad_for_ddp, group
        self.head = HEADS.build(head) if isinstance(head, str) else head
        self.weight = nn.Parameter(torch.normal(0.0, 0.01, (self.num_local, embedding_size)))
        self.last_sampled_index: Tensor | None = None  # local class indices used by the last sampled step

    def forward(self, local_embeddings: Tensor, local_labels: Tensor) -> Tensor:
        """Margin cross-entropy of this rank's ``[B, D]`` embeddings and ``[B]`` labels against every shard's
        class centres: a scalar, the mean over the global batch."""
        labels = local_labels.reshape(-1).long()
        if local_embeddings.dim() != 2 or local_embeddings.shape != (labels.numel(), self.embedding_size):
            raise ValueError(f"expected embeddings [B, {self.embedding_size}] and labels [B], got "
                             f"{tuple(local_embeddings.shape)} and {tuple(local_labels.shape)}")
        embeddings, labels = self._gather_batch(local_embeddings, labels)
        self._check_labels(labels)
        local = labels - self.class_start
        local = torch.where((local >= 0) & (local < self.num_local), local, -1)  # -1: another shard's class
        weight = self.weight
        if self.sample_rate < 1.0 and self.training:
            index, local = self._sample(local)
            weight = self.weight[index]  # only the sampled centres receive gradient
        # the matmul may run in fp16 under autocast; the margin and softmax need float32 (float64 kept)
        cosine = _at_least_float32(F.linear(F.normalize(embeddings), F.normalize(weight))).clamp(-1.0, 1.0)
        logits = _at_least_float32(self.head(cosine, local))
        return _DistCrossEntropy.apply(logits, local, self.group, self.world_size > 1)

    def cosine_logits(self, local_embeddings: Tensor) -> Tensor:
        """Unscaled cosines ``[B, num_classes]`` of this rank's embeddings against *every* class centre,
        with gradient (for distillation terms that compare the student's class scores with the teacher's).

        Under model parallelism the shards are all-gathered, so each rank holds the whole ``[C, D]`` table
        for this product; each shard's gradient is the mean over ranks (DDP averages the backbone's the same
        way). No margin, no class sampling: these are the classifier's scores, not its training logits.
        """
        weight = F.normalize(self.weight)
        if self.world_size > 1:
            self._require_dist()
            sizes = [shard_range(self.num_classes, r, self.world_size)[1] for r in range(self.world_size)]
            weight = _AllGatherRows.apply(weight, sizes, self.rank, self.group, 1.0 / self.world_size)
        cosine = F.linear(F.normalize(local_embeddings), weight.to(local_embeddings.dtype))
        return _at_least_float32(cosine).clamp(-1.0, 1.0)

    @torch.no_grad()
    def centres(self) -> Tensor:
        """All normalised class centres ``[num_classes, D]`` (gathered from every rank), e.g. for caching."""
        mine = F.normalize(self.weight.detach())
        if self.world_size == 1:
            return mine
        self._require_dist()
        sizes = [shard_range(self.num_classes, r, self.world_size)[1] for r in range(self.world_size)]
        return gather_rows(mine, sizes, self.group)

    def _gather_batch(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The global batch ``[N, D]``, ``[N]`` in rank order (ranks may hold different batch sizes)."""
        if self.world_size == 1:
            return embeddings, labels
        self._require_dist()
        size = torch.tensor([labels.numel()], device=labels.device)
        size_list = [torch.zeros_like(size) for _ in range(self.world_size)]
        dist.all_gather(size_list, size, group=self.group)
        sizes = [int(t.item()) for t in size_list]
        scale = float(self.world_size) if self.scale_grad_for_ddp else 1.0
        gathered = _AllGatherRows.apply(embeddings, sizes, self.rank, self.group, scale)
        return gathered, gather_rows(labels.unsqueeze(1), sizes, self.group).squeeze(1)

    def _require_dist(self) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            raise ConfigError(f"ShardedMarginClassifier with world_size={self.world_size} needs "
                              f"torch.distributed initialised (run under torchrun)")

    def _check_labels(self, labels: Tensor) -> None:
        if labels.numel() == 0:
            raise ValueError("ShardedMarginClassifier got an empty global batch")
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= self.num_classes:
            raise ConfigError(f"labels must lie in [0, num_classes={self.num_classes}) (config field "
                              f"`num_classes`), got labels in [{low}, {high}]")

    @torch.no_grad()
    def _sample(self, local: Tensor) -> tuple[Tensor, Tensor]:
        """Sorted local class indices to keep (all positives + random negatives) and relabelled targets."""
        owned = local >= 0
        positive = torch.unique(local[owned], sorted=True)
        if positive.numel() >= self.num_sample:
            index = positive
        else:
            score = torch.rand(self.num_local, device=local.device)
            score[positive] = 2.0  # above any rand value: positives always win the top-k
            index = score.topk(self.num_sample).indices.sort().values
        self.last_sampled_index = index
        relabelled = torch.searchsorted(index, local.clamp(min=0))
        return index, torch.where(owned, relabelled, -1)

    def extra_repr(self) -> str:
        return (f"embedding_size={self.embedding_size}, num_classes={self.num_classes}, rank={self.rank}, "
                f"world_size={self.world_size}, class_start={self.class_start}, num_local={self.num_local}, "
                f"sample_rate={self.sample_rate}")


def _resolve_rank(rank: int | None, world_size: int | None, group: Any) -> tuple[int, int]:
    running = dist.is_available() and dist.is_initialized()
    actual = (dist.get_rank(group), dist.get_world_size(group)) if running else (0, 1)
    resolved = (actual[0] if rank is None else rank, actual[1] if world_size is None else world_size)
    if running and resolved != actual:
        raise ConfigError(f"ShardedMarginClassifier rank/world_size {resolved} disagree with the "
                          f"initialised process group {actual}")
    if not 0 <= resolved[0] < resolved[1]:
        raise ConfigError(f"ShardedMarginClassifier needs 0 <= rank < world_size, got {resolved}")
    return resolved


def _validate(embedding_size: int, num_classes: int, world_size: int, sample_rate: float) -> None:
    if embedding_size < 1:
        raise ConfigError(f"config field `embedding_size` must be >= 1, got {embedding_size}")
    if num_classes < world_size:
        raise ConfigError(f"config field `num_classes` ({num_classes}) must be >= world_size ({world_size})")
    if not 0.0 < sample_rate <= 1.0:
        raise ConfigError(f"config field `sample_rate` must be in (0, 1], got {sample_rate}")


def _at_least_float32(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def gather_rows(x: Tensor, sizes: list[int], group: Any = None) -> Tensor:
    """Concatenate every rank's ``x`` ``[sizes[r], ...]`` in rank order (padded to one size on the wire); no
    gradient (``_AllGatherRows`` is the differentiable form). ``group`` None: the default process group."""
    pad = max(sizes) - x.shape[0]
    padded = torch.cat([x, x.new_zeros((pad, *x.shape[1:]))]) if pad else x.contiguous()
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded, group=group)
    return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)])


class _AllGatherRows(torch.autograd.Function):
    """Differentiable all-gather: backward sums every rank's partial gradient and keeps this rank's rows."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, sizes: list[int], rank: int, group: Any, scale: float) -> Tensor:
        ctx.sizes, ctx.rank, ctx.group, ctx.scale = sizes, rank, group, scale
        return gather_rows(x, sizes, group)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]] * ctx.scale, None, None, None, None


class _DistCrossEntropy(torch.autograd.Function):
    """Softmax cross-entropy over classes split across ranks; mean over the ``N`` rows of the global batch.

    ``logits [N, C_local]`` float32, ``labels [N]`` local indices with -1 where another rank owns the class.
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, labels: Tensor, group: Any, distributed: bool) -> Tensor:
        row_max = logits.detach().max(dim=1, keepdim=True).values  # [N, 1]; shift for stable exp
        if distributed:
            dist.all_reduce(row_max, op=dist.ReduceOp.MAX, group=group)
        shifted = logits - row_max
        exp = shifted.exp()
        sum_exp = exp.sum(dim=1, keepdim=True)  # [N, 1]
        owned = labels >= 0
        target = torch.where(owned, shifted.gather(1, labels.clamp(min=0).unsqueeze(1)).squeeze(1), 0.0)
        if distributed:
            dist.all_reduce(sum_exp, op=dist.ReduceOp.SUM, group=group)
            dist.all_reduce(target, op=dist.ReduceOp.SUM, group=group)  # exactly one rank owns each row
        ctx.save_for_backward(exp.div_(sum_exp), labels)
        # log-domain (not log of a probability), so a tiny target probability cannot underflow to -inf
        return (sum_exp.squeeze(1).log() - target).mean()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        probs, labels = ctx.saved_tensors
        owned = labels >= 0
        hits = owned.unsqueeze(1).to(probs.dtype)  # rows whose class another rank owns get no -1
        one_hot = torch.zeros_like(probs).scatter_(1, labels.clamp(min=0).unsqueeze(1), hits)
        return (probs - one_hot) * (grad / probs.shape[0]), None, None, None
