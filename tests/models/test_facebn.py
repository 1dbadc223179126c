"""FaceBN: batch / online / calibrate statistics against hand computations, banks, reset, edge cases."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from insightface_lr.errors import ConfigError, DataFormatError
from insightface_lr.models import FaceBN, get_backbone

EPS = 1e-5


def tiny_model(seed: int = 0) -> nn.Sequential:
    """conv -> BN2d -> ReLU -> conv -> BN2d -> pool -> Linear -> BN1d -> Dropout, with non-trivial stats."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 5, 1), nn.BatchNorm2d(5),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 6), nn.BatchNorm1d(6), nn.Dropout(0.5),
    )
    with torch.no_grad():
        for bn in (model[1], model[4], model[8]):
            n = bn.num_features
            bn.running_mean.copy_(torch.linspace(-0.5, 0.5, n))
            bn.running_var.copy_(torch.linspace(0.5, 2.0, n))
            bn.weight.copy_(torch.linspace(0.8, 1.3, n))
            bn.bias.copy_(torch.linspace(-0.2, 0.3, n))
    return model


def affine(bn: nn.Module, z: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """gamma * (z - mu) / sqrt(var + eps) + beta, channels on dim 1."""
    shape = (1, -1) + (1,) * (z.dim() - 2)
    norm = (z - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + EPS)
    return bn.weight.reshape(shape) * norm + bn.bias.reshape(shape)


def batch_moments(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and biased variance (what BN normalises with), as plain sums."""
    dims = [d for d in range(z.dim()) if d != 1]
    n = z.numel() // z.shape[1]
    mean = z.sum(dim=dims) / n
    shape = (1, -1) + (1,) * (z.dim() - 2)
    return mean, ((z - mean.reshape(shape)) ** 2).sum(dim=dims) / n


def hand_forward(model: nn.Sequential, x: torch.Tensor, stats: dict[int, tuple | None]) -> torch.Tensor:
    """Forward layer by layer; ``stats[i]`` = (mean, var) for BN i, or None for the batch's own moments."""
    h = x
    for i, layer in enumerate(model):
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            mean, var = stats.get(i) or batch_moments(h)
            h = affine(layer, h, mean, var)
        elif not isinstance(layer, nn.Dropout):  # dropout must be off
            h = layer(h)
    return h


def source(model: nn.Sequential, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    return model[i].running_mean.clone(), model[i].running_var.clone()


def test_batch_mode_equals_hand_computation() -> None:
    model = tiny_model()
    x = torch.randn(4, 3, 6, 6) * 2 + 1
    with torch.no_grad():
        out = FaceBN(model, mode="batch")(x)
        expected = hand_forward(model, x, {1: None, 4: None, 8: source(model, 8)})  # BN1d keeps source
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        out_1d = FaceBN(model, mode="batch", include_bn1d=True)(x)
        torch.testing.assert_close(out_1d, hand_forward(model, x, {}), rtol=1e-5, atol=1e-5)


def test_batch_mode_equals_train_mode_forward_of_a_real_backbone() -> None:
    """An independent reference: a dropout-free backbone in train mode normalises with batch statistics."""
    torch.manual_seed(0)
    model = get_backbone("bridge_student", input_size=16).eval()
    x = torch.randn(3, 3, 16, 16)
    reference = copy.deepcopy(model).train()
    with torch.no_grad():
        expected = reference(x)
        out = FaceBN(model, mode="batch", include_bn1d=True)(x)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def test_batch_size_one_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"mode='batch'.*batch size 1"):
        FaceBN(tiny_model(), mode="batch")(torch.randn(1, 3, 6, 6))
    with pytest.raises(ValueError):  # ConfigError is also a ValueError for callers that catch those
        FaceBN(tiny_model(), mode="batch")(torch.randn(1, 3, 6, 6))


def test_online_first_step_and_convergence() -> None:
    model = nn.Sequential(nn.BatchNorm2d(3))  # the BN input is the data itself: target stats are known
    facebn = FaceBN(model, mode="online", momentum=0.1)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 4, 4, generator=generator)
    with torch.inference_mode():
        facebn(x)
    mean, var = facebn.statistics()["0"]
    flat = x.transpose(0, 1).reshape(3, -1)
    torch.testing.assert_close(mean, 0.9 * torch.zeros(3) + 0.1 * flat.mean(1))
    torch.testing.assert_close(var, 0.9 * torch.ones(3) + 0.1 * flat.var(1, unbiased=True))
    target_mean, target_std = torch.tensor([3.0, -1.0, 0.5]), torch.tensor([2.0, 0.5, 1.0])
    with torch.no_grad():
        for _ in range(150):  # (0.9)^150 ~ 1e-7 of the source remains
            batch = torch.randn(16, 3, 4, 4, generator=generator)
            facebn(batch * target_std.reshape(1, 3, 1, 1) + target_mean.reshape(1, 3, 1, 1))
    mean, var = facebn.statistics()["0"]
    torch.testing.assert_close(mean, target_mean, atol=0.15, rtol=0)
    torch.testing.assert_close(var, target_std**2, atol=0.0, rtol=0.15)


def test_online_mode_accepts_single_faces_and_keeps_bn1d_variance() -> None:
    model = tiny_model()
    facebn = FaceBN(model, mode="online", include_bn1d=True)
    with torch.no_grad():
        out = facebn(torch.randn(1, 3, 6, 6))
    assert out.shape == (1, 6) and torch.isfinite(out).all()
    # one value per channel in BN1d: the variance is kept, the mean moves
    mean, var = facebn.statistics()["8"]
    assert torch.equal(var, model[8].running_var) and not torch.equal(mean, model[8].running_mean)


def test_calibrate_equals_exact_dataset_statistics() -> None:
    model = tiny_model()
    generator = torch.Generator().manual_seed(1)
    batches = [torch.randn(n, 3, 6, 6, generator=generator) * 1.5 + 0.3 for n in (3, 5, 2)]
    facebn = FaceBN(model, mode="calibrate", include_bn1d=True)
    facebn.calibrate(batches)
    with torch.no_grad():
        z = model[0](torch.cat(batches))  # the first BN's input does not depend on any normalisation
    mean, var = batch_moments(z.double())
    stats = facebn.statistics()
    torch.testing.assert_close(stats["1"][0], mean.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stats["1"][1], var.float(), rtol=1e-5, atol=1e-6)

    # one batch: every layer's stats are exactly those of its input after adapted normalisation upstream
    single = FaceBN(model, mode="calibrate", include_bn1d=True).calibrate([(torch.cat(batches), "labels")])
    with torch.no_grad():
        h = model[2](affine(model[1], z, *batch_moments(z)))
        z4 = model[3](h)
        stats = single.statistics()
        torch.testing.assert_close(stats["4"][0], batch_moments(z4)[0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(stats["4"][1], batch_moments(z4)[1], rtol=1e-4, atol=1e-5)
        # frozen afterwards: forwards use the calibrated stats and do not move them
        x = torch.randn(2, 3, 6, 6)
        expected = hand_forward(model, x, {i: stats[str(i)] for i in (1, 4, 8)})
        torch.testing.assert_close(single(x), expected, rtol=1e-5, atol=1e-5)
        single(x * 5)
        assert all(torch.equal(single.statistics()[k][0], stats[k][0]) for k in stats)


def test_per_resolution_banks_are_separate() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1))
    facebn = FaceBN(model, mode="calibrate", per_resolution=True)
    hr, lr = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 8, 8) * 3 + 2
    facebn.calibrate({"image": b} for b in (hr, lr))
    with torch.no_grad():
        z_hr, z_lr = model[0](hr), model[0](lr)
    torch.testing.assert_close(facebn.statistics(16)["1"][0], batch_moments(z_hr)[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(facebn.statistics(8)["1"][0], batch_moments(z_lr)[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match=r"\[8, 16\].*12"):
        facebn(torch.randn(2, 3, 12, 12))
    online = FaceBN(model, mode="online", per_resolution=True)
    with torch.no_grad():
        online(lr)
    assert torch.equal(online.statistics(16)["1"][0], model[1].running_mean)  # HR bank untouched
    assert not torch.equal(online.statistics(8)["1"][0], model[1].running_mean)


def test_reset_restores_source_and_model_is_never_modified() -> None:
    model = tiny_model()
    model.train()
    model[9].eval()  # a mixed train/eval state must come back as it was
    params = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(3, 3, 6, 6)
    facebn = FaceBN(model, mode="online", include_bn1d=True)
    with torch.no_grad():
        first = facebn(x)
        for _ in range(3):
            facebn(torch.randn(3, 3, 6, 6) * 4)
        moved = facebn(x)
        assert not torch.allclose(first, moved)
        facebn.reset()
        for name, (mean, var) in facebn.statistics().items():
            assert torch.equal(mean, params[f"{name}.running_mean"])
            assert torch.equal(var, params[f"{name}.running_var"])
        assert torch.equal(facebn(x), first)
    state = model.state_dict()
    assert all(torch.equal(params[k], state[k]) for k in params)  # gamma/beta and buffers untouched
    assert model.training and model[1].training and not model[9].training
    assert "forward" not in vars(model[1])  # the swap is undone


def test_gamma_beta_are_frozen_and_dropout_is_off() -> None:
    model = tiny_model().train()
    facebn = FaceBN(model, mode="batch", include_bn1d=True)
    x = torch.randn(4, 3, 6, 6, requires_grad=True)
    out = facebn(x)
    assert torch.equal(out, facebn(x))  # dropout(0.5) would differ between calls
    out.sum().backward()
    assert x.grad is not None and model[1].weight.grad is None and model[8].bias.grad is None


def test_constant_batch_gives_no_nan() -> None:
    model = tiny_model()
    x = torch.full((3, 3, 6, 6), 0.7)
    with torch.inference_mode():
        for facebn in (FaceBN(model, "batch", include_bn1d=True), FaceBN(model, "online", include_bn1d=True)):
            assert torch.isfinite(facebn(x)).all()
        calibrated = FaceBN(model, "calibrate", include_bn1d=True).calibrate([x])
        assert torch.isfinite(calibrated(x)).all()
        # a BN fed the constant directly: variance exactly 0, output beta (x - mu = 0 up to rounding)
        bn_first = nn.Sequential(nn.BatchNorm2d(3))
        nn.init.constant_(bn_first[0].bias, 0.25)
        for facebn in (FaceBN(bn_first, "batch"), FaceBN(bn_first, "calibrate").calibrate([x, x[:1]])):
            torch.testing.assert_close(facebn(x), torch.full_like(x, 0.25), rtol=0, atol=1e-4)
        assert torch.equal(facebn.statistics()["0"][1], torch.zeros(3))
    # stats made under inference_mode are usable by autograd afterwards
    calibrated(torch.randn(2, 3, 6, 6, requires_grad=True)).sum().backward()


def test_usage_errors() -> None:
    model = tiny_model()
    with pytest.raises(ConfigError, match="mode"):
        FaceBN(model, mode="adaptive")
    with pytest.raises(ConfigError, match="no BatchNorm"):
        FaceBN(nn.Sequential(nn.Conv2d(3, 3, 1)))
    with pytest.raises(ConfigError, match=r"calibrate\("):
        FaceBN(model, mode="calibrate")(torch.randn(2, 3, 6, 6))
    with pytest.raises(ConfigError, match="batch"):
        FaceBN(model, mode="batch").calibrate([torch.randn(2, 3, 6, 6)])
    with pytest.raises(DataFormatError, match="no batch"):
        FaceBN(model, mode="calibrate").calibrate([])
    with pytest.raises(DataFormatError, match="iterable of batches"):
        FaceBN(model, mode="calibrate").calibrate(torch.randn(2, 3, 6, 6))
    with pytest.raises(DataFormatError, match="batch 0"):
        FaceBN(model, mode="calibrate").calibrate([torch.randn(3, 6, 6)])


# --- prior-mixed statistics (Schneider et al. 2020) ----------------------------------------------------
def hand_prior_forward(model: nn.Sequential, x: torch.Tensor, strength: float) -> torch.Tensor:
    """Layer by layer: each BN2d normalises with ``(N * source + B * batch) / (N + B)`` (means and biased
    variances mixed separately), BN1d with its source statistics (not adapted by default)."""
    h, b = x, x.shape[0]
    for i, layer in enumerate(model):
        if isinstance(layer, nn.BatchNorm2d):
            (mean_s, var_s), (mean_b, var_b) = source(model, i), batch_moments(h)
            mean = (strength * mean_s + b * mean_b) / (strength + b)
            var = (strength * var_s + b * var_b) / (strength + b)
            h = affine(layer, h, mean, var)
        elif isinstance(layer, nn.BatchNorm1d):
            h = affine(layer, h, *source(model, i))
        elif not isinstance(layer, nn.Dropout):
            h = layer(h)
    return h


@pytest.mark.parametrize("strength", [1.0, 6.0, 100.0])
def test_prior_mode_equals_hand_mix_per_layer(strength: float) -> None:
    model = tiny_model()
    x = torch.randn(6, 3, 5, 5) * 1.5 - 0.3
    with torch.no_grad():
        out = FaceBN(model, mode="prior", prior_strength=strength)(x)
        expected = hand_prior_forward(model, x, strength)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_prior_mix_hand_numbers_and_limits() -> None:
    from insightface_lr.models.facebn import prior_mix

    s_mean, s_var = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 4.0])
    t_mean, t_var = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.0])
    mean, var = prior_mix(s_mean, s_var, t_mean, t_var, prior_strength=3.0, n=1)  # weights 3/4 source, 1/4 target
    torch.testing.assert_close(mean, torch.tensor([0.25, 1.0]))
    torch.testing.assert_close(var, torch.tensor([1.5, 3.0]))
    at_n0 = prior_mix(s_mean, s_var, t_mean, t_var, 5.0, 0)  # no target face: the source, exactly
    at_big0 = prior_mix(s_mean, s_var, t_mean, t_var, 0.0, 7)  # no prior: the target, exactly
    assert torch.equal(at_n0[0], s_mean) and torch.equal(at_n0[1], s_var)
    assert torch.equal(at_big0[0], t_mean) and torch.equal(at_big0[1], t_var)


def test_prior_mode_limits_are_batch_and_source() -> None:
    model = tiny_model()
    x = torch.randn(5, 3, 6, 6) * 2 + 1
    with torch.no_grad():
        as_batch = FaceBN(model, mode="prior", prior_strength=0.0)(x)
        batch = FaceBN(model, mode="batch")(x)
        near_source = FaceBN(model, mode="prior", prior_strength=1e12)(x)
        plain = copy.deepcopy(model).eval()(x)
    torch.testing.assert_close(as_batch, batch, rtol=1e-5, atol=1e-5)  # N = 0: the batch's own statistics
    torch.testing.assert_close(near_source, plain, rtol=1e-5, atol=1e-5)  # n << N: the source statistics


def test_calibrate_with_prior_mixes_the_pass_with_the_source() -> None:
    model = tiny_model()
    faces = [torch.randn(4, 3, 6, 6) + 0.5, torch.randn(3, 3, 6, 6) - 0.2]
    with torch.no_grad():
        pure = FaceBN(model, mode="calibrate").calibrate(faces).statistics()
        mixed = FaceBN(model, mode="calibrate", prior_strength=21.0).calibrate(faces).statistics()
    w = 21.0 / (21.0 + 7)  # 7 calibration faces
    for name, (mean, var) in mixed.items():
        s_mean, s_var = source(model, int(name))
        torch.testing.assert_close(mean, w * s_mean + (1 - w) * pure[name][0])
        torch.testing.assert_close(var, w * s_var + (1 - w) * pure[name][1])


def test_prior_mode_refuses_bad_strength_and_single_face_without_prior() -> None:
    model = tiny_model()
    for bad in (-1.0, float("nan"), True):
        with pytest.raises(ConfigError, match="prior_strength"):
            FaceBN(model, mode="prior", prior_strength=bad)
    with pytest.raises(ConfigError, match="batch size >= 2"):
        FaceBN(model, mode="prior", prior_strength=0.0)(torch.randn(1, 3, 6, 6))
    with torch.no_grad():
        FaceBN(model, mode="prior", prior_strength=8.0)(torch.randn(1, 3, 6, 6))  # a prior makes one face fine
    with pytest.raises(ConfigError, match="calibrate"):
        FaceBN(model, mode="prior", prior_strength=8.0).calibrate([torch.randn(2, 3, 6, 6)])


def test_calibrate_passes_converge_and_stop_depending_on_the_batch_size() -> None:
    """A second pass normalises with the first pass's statistics, fixed: layer 1 is exact in every pass, and
    from pass 2 on the statistics of the set batched by 2 and by 12 agree far better than after one pass."""
    model = tiny_model()
    torch.manual_seed(5)
    faces = torch.randn(12, 3, 6, 6) * 1.3 + 0.4
    by = lambda size: [faces[i:i + size] for i in range(0, 12, size)]  # noqa: E731
    with torch.no_grad():
        one = [FaceBN(model, mode="calibrate").calibrate(by(b)).statistics() for b in (2, 12)]
        three = [FaceBN(model, mode="calibrate").calibrate(by(b), passes=3).statistics() for b in (2, 12)]
        # layer 1 (index "1") sees the raw faces: exact moments whatever the batching or passes
        exact = batch_moments(model[0](faces))
    for stats in one + three:
        torch.testing.assert_close(stats["1"][0], exact[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(stats["1"][1], exact[1], rtol=1e-5, atol=1e-6)
    gap = lambda pair: (pair[0]["4"][1] - pair[1]["4"][1]).abs().max().item()  # noqa: E731
    assert gap(three) < 0.2 * gap(one)
    # pass 2's second layer by hand: the first layer normalised with pass 1's (exact) statistics
    with torch.no_grad():
        two = FaceBN(model, mode="calibrate").calibrate(by(4), passes=2).statistics()
        h = torch.relu(affine(model[1], model[0](faces), *exact))
        expected = batch_moments(model[3](h))
    torch.testing.assert_close(two["4"][0], expected[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(two["4"][1], expected[1], rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="re-iterable"):
        FaceBN(model, mode="calibrate").calibrate(iter(by(4)), passes=2)


@pytest.mark.parametrize("mode", ["batch", "calibrate"])
def test_depth_adapts_the_first_layers_only_and_keeps_source_stats_below(mode: str) -> None:
    """tiny_model has two BN2d layers: depth 0.5 adapts the first; the second keeps its running stats."""
    model = tiny_model()
    x = torch.randn(6, 3, 5, 5) * 1.5 - 0.3
    with torch.no_grad():
        facebn = FaceBN(model, mode=mode, depth=0.5)
        if mode == "calibrate":
            facebn.calibrate([x])  # one batch: the pass's exact statistics are the batch's own
        out = facebn(x)
        expected = hand_forward(model, x, {4: source(model, 4), 8: source(model, 8)})
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert set(facebn.statistics()) == {"1"}  # only the adapted layer has a bank


def test_depth_one_is_every_layer_and_the_count_rounds_up() -> None:
    from insightface_lr.models.facebn import adapted_count

    model = tiny_model()
    x = torch.randn(5, 3, 6, 6) * 2 + 1
    with torch.no_grad():
        torch.testing.assert_close(FaceBN(model, depth=1.0)(x), FaceBN(model)(x), rtol=0, atol=0)
    assert [adapted_count(18, d) for d in (0.01, 1 / 18, 3 / 18, 0.25, 0.5, 1.0)] == [1, 1, 3, 5, 9, 18]
    assert len(FaceBN(model, depth=0.01, include_bn1d=True).statistics()) == 1  # at least one layer adapts


def test_depth_outside_zero_one_is_refused() -> None:
    for bad in (0.0, -0.5, 1.5, float("nan"), True):
        with pytest.raises(ConfigError, match="depth"):
            FaceBN(tiny_model(), depth=bad)


def test_exact_calibration_is_the_whole_set_statistics_however_batched() -> None:
    """passes='exact' (one pass per adapted layer): every layer equals the hand forward with the whole set's
    moments, layer by layer, for batches of 2 and of 12 alike."""
    model = tiny_model()
    torch.manual_seed(6)
    faces = torch.randn(12, 3, 6, 6) * 1.1 - 0.2
    by = lambda size: [faces[i:i + size] for i in range(0, 12, size)]  # noqa: E731
    with torch.no_grad():
        stats = [FaceBN(model, mode="calibrate", include_bn1d=True).calibrate(by(b), passes="exact").statistics()
                 for b in (2, 12)]
        first = batch_moments(model[0](faces))
        h = model[3](torch.relu(affine(model[1], model[0](faces), *first)))
        second = batch_moments(h)
        third = batch_moments(model[7](model[6](model[5](affine(model[4], h, *second)))))
    for got in stats:
        for name, want in (("1", first), ("4", second), ("8", third)):
            torch.testing.assert_close(got[name][0], want[0], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(got[name][1], want[1], rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="'exact'"):
        FaceBN(model, mode="calibrate").calibrate(by(4), passes="all")
