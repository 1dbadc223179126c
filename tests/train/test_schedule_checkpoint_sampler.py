"""LR schedule, atomic checkpoints and the resumable sampler."""

from __future__ import annotations

import os

import pytest
import torch

from insightface_lr.errors import ConfigError, ModelLoadError
from insightface_lr.train.checkpoint import load_checkpoint, save_checkpoint
from insightface_lr.train.sampler import ResumableDistributedSampler
from insightface_lr.train.schedule import build_optimizer, build_scheduler, poly_warmup_factor


def test_poly_warmup_matches_closed_form() -> None:
    # arcface_torch PolynomialLRWarmup closed form, power 2, warm-up 10 of 100 steps
    assert poly_warmup_factor(0, 10, 100) == 0.0
    assert poly_warmup_factor(5, 10, 100) == pytest.approx(0.5)
    assert poly_warmup_factor(10, 10, 100) == pytest.approx(1.0)
    assert poly_warmup_factor(55, 10, 100) == pytest.approx((1 - 45 / 90) ** 2)
    assert poly_warmup_factor(100, 10, 100) == 0.0
    assert poly_warmup_factor(150, 10, 100) == 0.0
    assert poly_warmup_factor(0, 0, 100) == pytest.approx(1.0)


def test_scheduler_resumes_exactly() -> None:
    def make():
        params = [torch.nn.Parameter(torch.zeros(2))]
        opt = build_optimizer("sgd", params, lr=0.1, momentum=0.9, weight_decay=5e-4)
        return opt, build_scheduler(opt, warmup_steps=3, total_steps=20)

    opt, sched = make()
    for _ in range(7):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2, sched2 = make()
    sched2.load_state_dict(state)
    for _ in range(5):
        opt.step(), sched.step(), opt2.step(), sched2.step()
        assert opt.param_groups[0]["lr"] == opt2.param_groups[0]["lr"]
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * (1 - (12 - 3) / 17) ** 2)


def test_checkpoint_roundtrip_and_no_temp_left(tmp_path) -> None:
    state = {"step": 3, "w": torch.arange(4.0), "rng": torch.get_rng_state()}
    path = tmp_path / "ckpt" / "last.pt"
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert loaded["step"] == 3 and torch.equal(loaded["w"], state["w"])
    assert os.listdir(path.parent) == ["last.pt"]


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch " + self.marker,))


def test_checkpoint_refuses_code_and_garbage(tmp_path) -> None:
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pt"
    torch.save({"x": _Evil(str(marker))}, bad)
    with pytest.raises(ModelLoadError, match="evil.pt"):
        load_checkpoint(bad)
    assert not marker.exists()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="junk.pt"):
        load_checkpoint(junk)
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_sampler_global_batches_do_not_depend_on_world_size() -> None:
    single = ResumableDistributedSampler(50, global_batch_size=8, seed=1)
    ranks = [ResumableDistributedSampler(50, 8, rank=r, world_size=2, seed=1) for r in range(2)]
    one = torch.tensor(list(single)).view(-1, 8)
    two = [torch.tensor(list(s)).view(-1, 4) for s in ranks]
    assert one.shape == (6, 8)
    for step in range(6):
        assert sorted(one[step].tolist()) == sorted(two[0][step].tolist() + two[1][step].tolist())
    assert len(set(one.reshape(-1).tolist())) == 48  # a permutation, drop_last


def test_sampler_resume_mid_epoch_and_new_epoch_differs() -> None:
    sampler = ResumableDistributedSampler(40, 4, seed=0)
    full = list(sampler)
    sampler.set_position(epoch=0, step_in_epoch=3)
    assert list(sampler) == full[12:] and len(sampler) == len(full) - 12
    sampler.set_position(epoch=1)
    assert list(sampler) != full


def test_sampler_bad_batch_sizes() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        ResumableDistributedSampler(40, 5, world_size=2)
    with pytest.raises(ConfigError, match="fewer than one batch"):
        ResumableDistributedSampler(3, 4)
