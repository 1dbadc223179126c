"""FaceBN: test-time BatchNorm statistics adaptation for faces at a new resolution.

A model trained on HR faces normalises LR activations with HR statistics; FaceBN keeps every BN layer's
affine ``gamma``/``beta`` and replaces ``(running_mean, running_var)`` with statistics of the test faces,
``y = gamma * (x - mu_test) / sqrt(var_test + eps) + beta`` (AdaBN, Li et al. 2016, applied per
resolution; see METHODS.md "FaceBN"). Modes:

* ``"batch"``: statistics of the current batch (biased variance, as BN normalises in training); B >= 2.
* ``"online"``: a running estimate from the source statistics, ``mu <- (1-m) mu + m mu_batch`` (and the
  same for the unbiased variance, as ``nn.BatchNorm`` keeps it), updated before normalising each batch.
* ``"calibrate"``: :meth:`FaceBN.calibrate` makes one pass over unlabeled target faces, normalising each
  batch with its own statistics, and stores the exact mean and (population) variance of every BN input
  over the whole pass; later forwards use them, frozen.
* ``"prior"``: each batch's statistics mixed with the source statistics as in Schneider et al. 2020
  ("Improving robustness against common corruptions by covariate shift adaptation", NeurIPS):
  ``mu = (N mu_source + n mu_batch) / (N + n)`` and the same for the variance, ``n`` the batch size and
  ``N = prior_strength`` a pseudo-count of source faces. ``N = 0`` is ``"batch"``; ``n = 0`` the source.

``prior_strength`` also applies to ``"calibrate"``, with ``n`` the number of calibration faces (default
``N = 0``: the pass's own statistics). Why a prior: the statistics of 64 faces are noisy, and on faces
that are not shifted at all that noise only costs accuracy; a prior keeps what is known and lets the test
faces move the estimate as far as their number justifies.

``depth`` (every mode) adapts only the first fraction of the BN layers, in the model's module order (the
order of the forward pass in the built-in networks); deeper layers keep the source statistics. Why: a
resolution, blur, noise or colour shift shows in the low-level statistics of the first layers, while the
statistics of the last layers, measured on the few identities of one test set, carry those identities
(subtracting their mean removes what that set's faces share). Measured in docs/real_faces.md: adapting
every layer cost about a point on a 27-identity validation split of real faces; the first layers alone did not.

The wrapped model is never changed: the stats live in FaceBN's banks (one per input height when
``per_resolution``), BN forwards are swapped for a functional ``batch_norm`` only while
:meth:`FaceBN.forward` runs, and the model runs in eval mode (dropout off) during that call.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, DataFormatError

MODES = ("batch", "online", "calibrate", "prior")
Stats = dict[str, tuple[torch.Tensor, torch.Tensor]]  # layer name -> (mean [C], var [C])


class FaceBN(nn.Module):
    """Wrap ``model``; ``FaceBN(model)(x)`` is ``model(x)`` with test statistics in its BN layers.

    Args:
        model: any module with ``BatchNorm2d`` layers (tracking running stats).
        mode: ``"batch"``, ``"online"`` or ``"calibrate"`` (see module docstring).
        momentum: ``m`` of the online update (METHODS.md default 0.1).
        include_bn1d: adapt ``BatchNorm1d`` layers too (e.g. IResNet's ``features`` on ``[B, 512]``).
        per_resolution: keep a separate statistics bank per input height ``x.shape[-2]``.
        prior_strength: ``N`` of the ``"prior"`` mix (and of ``"calibrate"``), in faces; >= 0.
        depth: fraction of the BN layers (first ones, in module order) that adapt, in (0, 1]; at least one.
    """

    def __init__(
        self,
        model: nn.Module,
        mode: str = "batch",
        momentum: float = 0.1,
        include_bn1d: bool = False,
        per_resolution: bool = False,
        prior_strength: float = 0.0,
        depth: float = 1.0,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"FaceBN mode must be one of {MODES}, got {mode!r}")
        if not 0.0 <= float(momentum) <= 1.0:
            raise ConfigError(f"FaceBN momentum must be in [0, 1], got {momentum!r}")
        if isinstance(prior_strength, bool) or not float(prior_strength) >= 0.0:
            raise ConfigError(f"FaceBN prior_strength must be a number >= 0, got {prior_strength!r}")
        if isinstance(depth, bool) or not 0.0 < float(depth) <= 1.0:
            raise ConfigError(f"FaceBN depth must be a fraction in (0, 1] of the BN layers, got {depth!r}")
        self.prior_strength, self.depth = float(prior_strength), float(depth)
        self.module = model
        self.mode, self.momentum = mode, float(momentum)
        self.include_bn1d, self.per_resolution = bool(include_bn1d), bool(per_resolution)
        layers = _adaptable_layers(model, include_bn1d)
        if not layers:
            raise ConfigError(f"FaceBN: {type(model).__name__} has no BatchNorm layer with running stats")
        self._layers = dict(list(layers.items())[:adapted_count(len(layers), self.depth)])
        # detached clones: the source statistics stay exactly recoverable whatever the model does later
        self._source: Stats = {
            name: (bn.running_mean.detach().clone(), bn.running_var.detach().clone())
            for name, bn in self._layers.items()
        }
        self._banks: dict[int | None, Stats] = {}
        self._calibrated = False

    def reset(self) -> None:
        """Forget adapted statistics: every bank restarts from the source (training) statistics."""
        self._banks.clear()
        self._calibrated = False

    def statistics(self, resolution: int | None = None) -> Stats:
        """Current ``{layer: (mean, var)}`` of the bank for ``resolution`` (source stats if untouched)."""
        key = resolution if self.per_resolution else None
        return {name: (m.clone(), v.clone()) for name, (m, v) in self._banks.get(key, self._source).items()}

    def train(self, mode: bool = True) -> FaceBN:
        # only the flag: the wrapped model always runs in eval during forward (dropout stays off)
        self.training = mode
        return self

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """``model(x, ...)`` with adapted BN statistics. ``x``: ``[B, C, H, W]`` faces."""
        if (self.mode == "batch" or (self.mode == "prior" and not self.prior_strength)) and x.shape[0] < 2:
            raise ConfigError(
                f"FaceBN mode={self.mode!r} needs batch size >= 2 to estimate statistics, got batch size "
                f"{x.shape[0]}; use mode='online' or mode='calibrate' for single faces"
            )
        if self.mode == "calibrate" and not self._calibrated:
            raise ConfigError("FaceBN mode='calibrate': call .calibrate(target_faces) first (again after reset())")
        key = self._key(x)
        if self.mode == "calibrate" and key not in self._banks:
            known = sorted(k for k in self._banks if k is not None)
            raise ConfigError(f"FaceBN was calibrated for input heights {known}, not {key}; calibrate it too")
        with self._swapped(lambda name, bn, h: self._normalise(name, bn, h, key)):
            return self.module(x, *args, **kwargs)

    @torch.no_grad()
    def calibrate(self, batches: Iterable[Any], image_key: str = "image", passes: int | str = 1) -> FaceBN:
        """Passes over unlabeled target faces, then frozen: exact per-layer mean/variance of the last pass.

        ``batches`` yields ``[B, C, H, W]`` tensors, sequences whose first item is one (``(x, y)``), or
        mappings with ``image_key``; with ``passes > 1`` it must be re-iterable (a list, a DataLoader).
        The first pass normalises each batch with its own statistics while it measures, so what a deep layer
        sees depends on the batch size; every later pass normalises with the previous pass's statistics,
        fixed, so the result converges to statistics that no longer depend on how the faces were batched.
        ``passes="exact"``: one pass per adapted layer. Layer 1 is exact in every pass and layer p from pass p on
        (its input then comes through layers whose statistics are already the whole set's), so the result is
        the whole set's statistics, however the faces were batched. Returns ``self``.
        """
        if self.mode in ("batch", "prior"):
            raise ConfigError(f"FaceBN mode={self.mode!r} uses each batch's own statistics; calibrate() needs "
                              "mode='calibrate' (or 'online' to start the running estimate from it)")
        exact = passes == "exact"
        if exact:  # after pass p the first p adapted layers hold the whole set's exact statistics
            passes = len(self._layers)
        if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
            raise ConfigError(f"FaceBN.calibrate: passes must be a positive integer or 'exact', got {passes!r}")
        if passes > 1 and isinstance(batches, Iterator):
            raise ConfigError("FaceBN.calibrate: passes > 1 needs a re-iterable set of batches (a list or a "
                              "DataLoader), not a one-shot iterator")
        names = list(self._layers)
        reference: dict[int | None, Stats] | None = None
        for index in range(passes):
            # nothing after the last layer still measured changes a result: pass p of an exact calibration stops
            # at adapted layer p (the later ones are measured again in later passes), every pass at the last one
            stop = names[index] if exact else names[-1]
            measured = self._calibration_pass(batches, image_key, reference, stop)
            reference = {key: {**(reference or {}).get(key, {}), **bank} for key, bank in measured.items()}
        self._banks = reference
        self._calibrated = True
        return self

    def _calibration_pass(self, batches: Iterable[Any], image_key: str, reference: dict[int | None, Stats] | None,
                          stop: str | None = None) -> dict[int | None, Stats]:
        """One pass: each bank's (prior-mixed) statistics, layers normalised meanwhile with ``reference``
        (``None``: each batch's own statistics). The forward ends once layer ``stop`` and every layer before it
        are measured (the rest of the network would change no statistic of this pass)."""
        moments: dict[int | None, dict[str, _Moments]] = {}
        needed = set(list(self._layers)[:list(self._layers).index(stop) + 1]) if stop is not None else set()
        for x in _images(batches, image_key):
            key = self._key(x)
            bank = moments.setdefault(key, {})
            fixed = None if reference is None else reference.get(key)
            measure = functools.partial(self._accumulate, bank=bank, fixed=fixed, stop=stop, needed=needed)
            with self._swapped(measure), contextlib.suppress(_Measured):
                self.module(x)
        if not moments:
            raise DataFormatError("FaceBN.calibrate: the iterable of target faces yielded no batch")
        return {key: {name: self._mixed(name, *m.result(), m.faces) for name, m in bank.items()}
                for key, bank in moments.items()}

    # --- internals -------------------------------------------------------------------------------
    def _key(self, x: torch.Tensor) -> int | None:
        return int(x.shape[-2]) if self.per_resolution else None

    def _normalise(self, name: str, bn: nn.Module, h: torch.Tensor, key: int | None) -> torch.Tensor:
        if self.mode == "batch":  # running stats None + training=True: F.batch_norm uses batch statistics
            return F.batch_norm(h, None, None, _frozen(bn.weight), _frozen(bn.bias), True, 0.0, bn.eps)
        if self.mode == "prior":
            mean, var = self._mixed(name, *_batch_moments(h), h.shape[0])
            return F.batch_norm(h, mean, var, _frozen(bn.weight), _frozen(bn.bias), False, 0.0, bn.eps)
        bank = self._banks.setdefault(key, dict(self._source))
        mean, var = bank[name]
        if self.mode == "online":
            mean, var = _online_update(h, mean, var, self.momentum)
            bank[name] = (_plain(mean), _plain(var))
        return F.batch_norm(
            h, mean.to(h.device), var.to(h.device), _frozen(bn.weight), _frozen(bn.bias), False, 0.0, bn.eps
        )

    def _mixed(self, name: str, mean: torch.Tensor, var: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Target moments of ``n`` faces mixed with the source's under the ``prior_strength`` pseudo-count."""
        source_mean, source_var = self._source[name]
        mixed = prior_mix(source_mean.to(mean.device), source_var.to(mean.device), mean, var,
                          self.prior_strength, n)
        return _plain(mixed[0]), _plain(mixed[1])

    def _accumulate(self, name: str, bn: nn.Module, h: torch.Tensor, bank: dict[str, _Moments],
                    fixed: Stats | None = None, stop: str | None = None,
                    needed: set[str] | frozenset[str] = frozenset()) -> torch.Tensor:
        moments = bank.setdefault(name, _Moments())
        moments.update(h)
        if name == stop and needed <= bank.keys():
            raise _Measured
        if fixed is not None or h.numel() // h.shape[1] < 2:  # a previous pass's, or the source statistics
            mean, var = (fixed if fixed is not None and name in fixed else self._source)[name]
            weight, bias = _frozen(bn.weight), _frozen(bn.bias)
            return F.batch_norm(h, mean.to(h.device), var.to(h.device), weight, bias, False, 0.0, bn.eps)
        # later layers must see inputs normalised as adapted: use the batch's own statistics meanwhile
        return F.batch_norm(h, None, None, _frozen(bn.weight), _frozen(bn.bias), True, 0.0, bn.eps)

    @contextmanager
    def _swapped(self, norm_fn) -> Iterator[None]:
        """Route every adaptable BN through ``norm_fn(name, bn, input)`` and the model through eval mode."""
        flags = [(m, m.training) for m in self.module.modules()]  # restored one by one: mixed modes stay
        self.module.eval()
        try:
            for name, bn in self._layers.items():
                # an instance attribute shadows the class's forward; deleted again below
                bn.forward = _bound(norm_fn, name, bn)
            yield
        finally:
            for bn in self._layers.values():
                bn.__dict__.pop("forward", None)
            for m, flag in flags:
                m.training = flag


class _Measured(Exception):
    """Ends a calibration forward once every layer it measures has been seen."""


def prior_mix(source_mean: torch.Tensor, source_var: torch.Tensor, target_mean: torch.Tensor,
              target_var: torch.Tensor, prior_strength: float, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Schneider et al. 2020: ``((N s + n t) / (N + n))`` for the means and the variances ([C] each).

    ``N = prior_strength`` source pseudo-faces, ``n`` target faces; ``n = 0`` gives the source statistics,
    ``N = 0`` the target's (both exactly, not by rounding).
    """
    if n == 0 or prior_strength == 0:
        return (source_mean, source_var) if n == 0 else (target_mean, target_var)
    w = prior_strength / (prior_strength + n)
    return w * source_mean + (1 - w) * target_mean, w * source_var + (1 - w) * target_var


def _batch_moments(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and biased variance of ``h`` [B, C, ...] (what BN normalises with in training)."""
    dims = [d for d in range(h.dim()) if d != 1]
    var, mean = torch.var_mean(h.detach().float(), dim=dims, correction=0)
    return mean, var


class _Moments:
    """Exact per-channel count, mean and sum of squared deviations, merged batch by batch (Chan et al.)."""

    def __init__(self) -> None:
        self.count = 0
        self.faces = 0  # the n of a prior mix: faces seen, not values (B*H*W per batch)
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def update(self, h: torch.Tensor) -> None:
        flat = h.detach().transpose(0, 1).reshape(h.shape[1], -1).double()  # [C, N*H*W]
        n = flat.shape[1]
        self.faces += h.shape[0]
        mean = flat.mean(dim=1)
        m2 = ((flat - mean[:, None]) ** 2).sum(dim=1)
        if self.mean is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.mean is not None and self.m2 is not None
        return self.mean.float(), (self.m2 / self.count).float()


def _online_update(
    h: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, m: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``mu <- (1-m) mu + m mu_batch``, same for the unbiased variance (kept if one value per channel)."""
    dims = [d for d in range(h.dim()) if d != 1]
    values = h.detach().float()
    mean = mean.to(h.device)
    var = var.to(h.device)
    # out-of-place on purpose: banks filled under inference_mode must not be updated in place later
    new_mean = (1 - m) * mean + m * values.mean(dim=dims)
    if h.numel() // h.shape[1] > 1:
        var = (1 - m) * var + m * values.var(dim=dims, unbiased=True)
    return new_mean, var


def adapted_count(layers: int, depth: float) -> int:
    """How many of ``layers`` BN layers a FaceBN of ``depth`` adapts: ``ceil(depth * layers)``, at least 1
    (a small tolerance keeps ``depth = k / layers`` at exactly ``k``)."""
    return max(1, math.ceil(depth * layers - 1e-9))


def _adaptable_layers(model: nn.Module, include_bn1d: bool) -> dict[str, nn.Module]:
    kinds: tuple[type, ...] = (nn.BatchNorm2d, nn.BatchNorm1d) if include_bn1d else (nn.BatchNorm2d,)
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, kinds) and m.running_mean is not None and m.running_var is not None
    }


def _plain(t: torch.Tensor) -> torch.Tensor:
    """A normal tensor: stats made under ``inference_mode`` could not be used by autograd afterwards."""
    if not t.is_inference():
        return t
    with torch.inference_mode(False):
        return t.clone()


def _frozen(param: torch.Tensor | None) -> torch.Tensor | None:
    return None if param is None else param.detach()  # gamma/beta are used, never trained, by FaceBN


def _bound(norm_fn, name: str, bn: nn.Module):
    return lambda h: norm_fn(name, bn, h)


def _images(batches: Iterable[Any], image_key: str) -> Iterator[torch.Tensor]:
    if isinstance(batches, torch.Tensor):
        raise DataFormatError("FaceBN.calibrate expects an iterable of batches, e.g. [x] or a DataLoader, "
                              f"not a single tensor of shape {list(batches.shape)}")
    for index, item in enumerate(batches):
        if isinstance(item, Mapping):
            item = item.get(image_key)
        elif isinstance(item, (tuple, list)) and item:
            item = item[0]
        if not isinstance(item, torch.Tensor) or item.dim() != 4:
            raise DataFormatError(
                f"FaceBN.calibrate: batch {index} is not a [B, C, H, W] tensor (nor (x, ...) or "
                f"{{{image_key!r}: x}}); got {type(item).__name__}"
            )
        yield item
