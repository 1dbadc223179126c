"""Sharded (PartialFC-style) margin classifier: shard split, loss/gradients vs plain cross-entropy, 2-rank gloo."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from insightface_lr.errors import ConfigError
from insightface_lr.losses.margin import ArcFaceHead, CombinedMarginHead, CosFaceHead
from insightface_lr.losses.partial_fc import ShardedMarginClassifier, shard_range

D, C, N = 6, 7, 8  # embedding size, classes (odd: shards of 4 and 3), global batch
MARGINS = (1.0, 0.3, 0.1)


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(N, D, generator=gen, dtype=torch.float64)
    weight = torch.randn(C, D, generator=gen, dtype=torch.float64)
    labels = torch.tensor([0, 6, 3, 3, 4, 1, 6, 2])  # classes on both shards, repeats
    return emb, weight, labels


def _reference(emb: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, head) -> tuple:
    """Unsharded loss and gradients with plain autograd and F.cross_entropy."""
    e, w = emb.clone().requires_grad_(), weight.clone().requires_grad_()
    loss = F.cross_entropy(head(F.normalize(e) @ F.normalize(w).T, labels), labels)
    loss.backward()
    return loss.detach(), e.grad, w.grad


def _classifier(weight: torch.Tensor, head, **kwargs) -> ShardedMarginClassifier:
    clf = ShardedMarginClassifier(weight.shape[1], weight.shape[0], head, **kwargs).double()
    with torch.no_grad():
        clf.weight.copy_(weight[clf.class_start : clf.class_start + clf.num_local])
    return clf


def test_shard_range_hand_values_and_cover() -> None:
    assert [shard_range(10, r, 4) for r in range(4)] == [(0, 3), (3, 3), (6, 2), (8, 2)]
    for classes, world in [(7, 2), (5, 5), (100, 7), (3, 1)]:
        ranges = [shard_range(classes, r, world) for r in range(world)]
        starts = [s for s, _ in ranges]
        assert starts == [sum(n for _, n in ranges[:r]) for r in range(world)]  # contiguous, rank order
        assert sum(n for _, n in ranges) == classes and max(n for _, n in ranges) - min(n for _, n in ranges) <= 1


def test_single_process_matches_plain_cross_entropy() -> None:
    emb, weight, labels = _data()
    head = CombinedMarginHead(MARGINS, s=30.0)
    clf = _classifier(weight, head)
    assert (clf.rank, clf.world_size, clf.class_start, clf.num_local) == (0, 1, 0, C)
    e = emb.clone().requires_grad_()
    loss = clf(e, labels.view(-1, 1))  # [B, 1] labels as arcface_torch's loader gives them
    loss.backward()
    ref_loss, ref_e, ref_w = _reference(emb, weight, labels, head)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(e.grad, ref_e, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(clf.weight.grad, ref_w, rtol=1e-10, atol=1e-12)


def test_hand_computed_loss_two_classes() -> None:
    emb = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    weight = torch.tensor([[1.0, 1.0], [0.0, -3.0]], dtype=torch.float64)  # cosines [[.707, 0], [.707, -1]]
    clf = _classifier(weight, CosFaceHead(s=10.0, m=0.4))
    loss = clf(emb, torch.tensor([0, 1]))
    r = math.sqrt(0.5)
    rows = [([10 * (r - 0.4), 0.0], 0), ([10 * r, 10 * (-1 - 0.4)], 1)]
    want = np.mean([math.log(sum(math.exp(z) for z in row)) - row[y] for row, y in rows])
    assert loss.item() == pytest.approx(want, rel=1e-12)


def test_large_logits_are_stable_and_head_name_works() -> None:
    emb, weight, labels = _data()
    loss = _classifier(weight, CosFaceHead(s=5000.0))(emb, labels)  # exp(5000) overflows float64
    ref_loss, _, _ = _reference(emb, weight, labels, CosFaceHead(s=5000.0))
    assert torch.isfinite(loss) and loss.item() == pytest.approx(ref_loss.item(), rel=1e-10)
    by_name = _classifier(weight, "arcface")(emb, labels)
    torch.testing.assert_close(by_name, _reference(emb, weight, labels, ArcFaceHead())[0])


def test_centres_are_normalised_weights() -> None:
    _, weight, _ = _data()
    centres = _classifier(weight, "cosface").centres()
    torch.testing.assert_close(centres, weight / weight.norm(dim=1, keepdim=True))


def test_autocast_gives_float32_loss_close_to_full_precision() -> None:
    emb, weight, labels = _data()
    clf = _classifier(weight.float(), ArcFaceHead(s=16.0)).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = clf(emb.float(), labels)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert loss.item() == pytest.approx(_reference(emb, weight, labels, ArcFaceHead(s=16.0))[0].item(), rel=0.05)


def test_sample_rate_keeps_positives_and_restricts_softmax() -> None:
    gen = torch.Generator().manual_seed(3)
    classes = 20
    weight = torch.randn(classes, D, generator=gen, dtype=torch.float64)
    emb = torch.randn(4, D, generator=gen, dtype=torch.float64)
    labels = torch.tensor([5, 17, 5, 2])
    head = CombinedMarginHead(MARGINS, s=30.0)
    clf = _classifier(weight, head, sample_rate=0.5)
    torch.manual_seed(0)
    loss = clf(emb, labels)
    loss.backward()
    index = clf.last_sampled_index
    assert index.numel() == 10 and index.tolist() == sorted(set(index.tolist()))
    assert {2, 5, 17} <= set(index.tolist())
    sub_labels = torch.tensor([index.tolist().index(y) for y in labels.tolist()])
    ref_loss, _, ref_w = _reference(emb, weight[index], sub_labels, head)
    torch.testing.assert_close(loss, ref_loss)
    dropped = torch.ones(classes, dtype=torch.bool)
    dropped[index] = False
    assert (clf.weight.grad[dropped] == 0).all()
    torch.testing.assert_close(clf.weight.grad[index], ref_w)
    # more positives than num_sample: exactly the positives; eval mode: every class
    few = _classifier(weight, head, sample_rate=0.1)
    few(emb, labels)
    assert few.last_sampled_index.tolist() == [2, 5, 17]
    torch.testing.assert_close(clf.eval()(emb, labels), _reference(emb, weight, labels, head)[0])


def test_config_and_input_errors() -> None:
    _, weight, _ = _data()
    with pytest.raises(ConfigError, match="sample_rate"):
        ShardedMarginClassifier(D, C, "arcface", sample_rate=0.0)
    with pytest.raises(ConfigError, match="num_classes"):
        ShardedMarginClassifier(D, 1, "arcface", rank=0, world_size=2)
    with pytest.raises(ConfigError, match="rank"):
        ShardedMarginClassifier(D, C, "arcface", rank=2, world_size=2)
    clf = _classifier(weight, "arcface")
    with pytest.raises(ConfigError, match="num_classes"):
        clf(torch.randn(2, D, dtype=torch.float64), torch.tensor([0, C]))
    with pytest.raises(ValueError, match="embeddings"):
        clf(torch.randn(2, D + 1, dtype=torch.float64), torch.tensor([0, 1]))
    offline = ShardedMarginClassifier(D, C, "arcface", rank=1, world_size=2)  # e.g. to load a shard file
    assert (offline.class_start, offline.num_local, tuple(offline.weight.shape)) == (4, 3, (3, D))
    with pytest.raises(ConfigError, match="torch.distributed"):
        offline(torch.randn(2, D), torch.tensor([0, 1]))
    with pytest.raises(ConfigError, match="torch.distributed"):
        offline.centres()


# (batch split between the two ranks, scale_grad_for_ddp)
CASES = [((4, 4), False), ((4, 4), True), ((3, 5), False)]


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        emb, weight, labels = _data()
        results = []
        for sizes, scale in CASES:
            clf = _classifier(weight, CombinedMarginHead(MARGINS, s=30.0), scale_grad_for_ddp=scale)
            lo = sum(sizes[:rank])
            e = emb[lo : lo + sizes[rank]].clone().requires_grad_()
            loss = clf(e, labels[lo : lo + sizes[rank]])
            loss.backward()
            results.append({"loss": loss.detach(), "grad_e": e.grad, "grad_w": clf.weight.grad,
                            "centres": clf.centres(), "start": clf.class_start})
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_match_unsharded(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    emb, weight, labels = _data()
    ref_loss, ref_e, ref_w = _reference(emb, weight, labels, CombinedMarginHead(MARGINS, s=30.0))
    for i, (_, scale) in enumerate(CASES):
        r0, r1 = ranks[0][i], ranks[1][i]
        assert (r0["start"], r1["start"]) == (0, 4)
        for r in (r0, r1):
            torch.testing.assert_close(r["loss"], ref_loss, rtol=0, atol=1e-5)
            torch.testing.assert_close(r["centres"], F.normalize(weight), rtol=0, atol=1e-12)
        torch.testing.assert_close(torch.cat([r0["grad_w"], r1["grad_w"]]), ref_w, rtol=0, atol=1e-5)
        grad_e = torch.cat([r0["grad_e"], r1["grad_e"]]) / (2.0 if scale else 1.0)
        torch.testing.assert_close(grad_e, ref_e, rtol=0, atol=1e-5)


def _cosine_worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        emb, weight, _ = _data()
        clf = _classifier(weight, CombinedMarginHead(MARGINS, s=30.0))
        e = emb[4 * rank : 4 * rank + 4].clone().requires_grad_()
        logits = clf.cosine_logits(e)
        (logits * torch.arange(1.0, C + 1, dtype=logits.dtype)).pow(2).mean().backward()
        torch.save({"logits": logits.detach(), "grad_e": e.grad, "grad_w": clf.weight.grad},
                   Path(out_dir) / f"cos{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_cosine_logits_cover_every_shard_with_rank_mean_gradients(tmp_path: Path) -> None:
    """Each rank's logits span all C classes; a shard's gradient is the mean over ranks of the per-rank
    losses' gradients (as DDP averages the backbone's), checked against plain autograd on the full table."""
    mp.spawn(_cosine_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"cos{r}.pt", weights_only=True) for r in range(2)]
    emb, weight, _ = _data()
    e, w = emb.clone().requires_grad_(), weight.clone().requires_grad_()
    full = F.normalize(e) @ F.normalize(w).T
    scale = torch.arange(1.0, C + 1, dtype=full.dtype)
    per_rank = [(full[4 * r : 4 * r + 4] * scale).pow(2).mean() for r in range(2)]
    (sum(per_rank) / 2).backward()
    torch.testing.assert_close(torch.cat([r["logits"] for r in ranks]), full.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.cat([r["grad_w"] for r in ranks]), w.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.cat([r["grad_e"] for r in ranks]), e.grad * 2, rtol=0, atol=1e-12)


def test_cosine_logits_single_process() -> None:
    emb, weight, _ = _data()
    clf = _classifier(weight, CombinedMarginHead(MARGINS, s=30.0), sample_rate=0.5)  # sampling ignored
    logits = clf.cosine_logits(emb)
    torch.testing.assert_close(logits, F.normalize(emb) @ F.normalize(weight).T, rtol=0, atol=1e-12)
    assert logits.requires_grad and logits.dtype == torch.float64
