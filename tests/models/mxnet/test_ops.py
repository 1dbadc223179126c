"""Each supported MXNet op, imported from a tiny symbol, against a torch or hand reference.

Every case maps the image input (our ``[-1, 1]`` convention, turned into mxnet's raw ``0..255`` values ``p``
by the module) through one op; the reference computes the same from ``p`` with ``torch.nn.functional`` or by
hand, with mxnet's documented defaults written out (BatchNorm eps 1e-3 and fixed gamma, prelu, pooling
conventions...).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mxnet_symbols import SymbolBuilder

from insightface_lr.models.mxnet.graph import MxnetGraphNet

SIZE = 8


def _flat(sb: SymbolBuilder, x: int) -> int:
    return sb.op("Flatten", "flat", [x])


def _centred(sb: SymbolBuilder) -> int:
    """``p / 127.5 - 1``: values of both signs for the activations."""
    return sb.op("_minus_scalar", "m1", [sb.op("_div_scalar", "d", [0], scalar=127.5)], scalar=1.0)


def _conv(sb, x):
    return _flat(sb, sb.conv("c", x, 3, 6, 3, groups=3, bias=True, stride=(2, 2), pad=(1, 1), dilate=(2, 2)))


def _conv_ref(sb, p):
    return F.conv2d(p, sb.weight("c_weight"), sb.weight("c_bias"), 2, 1, 2, 3).flatten(1)


def _bn_ref(sb, p, eps, gamma):
    w = sb.weight("b_gamma") if gamma else torch.ones(3)
    mean, var, beta = sb.weight("b_moving_mean"), sb.weight("b_moving_var"), sb.weight("b_beta")
    shape = (1, 3, 1, 1)
    return ((p - mean.view(shape)) / torch.sqrt(var.view(shape) + eps) * w.view(shape) + beta.view(shape)).flatten(1)


def _pool_by_hand(p, kernel, stride, pad, size_out, avg, include_pad):
    """Window ``[i*s - pad, i*s - pad + k)`` clipped to the image; avg divides by k*k or the clipped count."""
    out = torch.empty(p.shape[0], p.shape[1], size_out, size_out)
    for i in range(size_out):
        for j in range(size_out):
            r0, c0 = i * stride - pad, j * stride - pad
            window = p[:, :, max(r0, 0):min(r0 + kernel, SIZE), max(c0, 0):min(c0 + kernel, SIZE)]
            if not avg:
                out[:, :, i, j] = window.amax((2, 3))
            else:
                count = kernel * kernel if include_pad else window.shape[2] * window.shape[3]
                out[:, :, i, j] = window.sum((2, 3)) / count
    return out.flatten(1)


def _two(sb):
    return sb.op("_mul_scalar", "a", [0], scalar=2.0), sb.op("_plus_scalar", "b", [0], scalar=1.0)


def _binary(op):
    return lambda sb, x: _flat(sb, sb.op(op, "op", list(_two(sb))))


def _broadcast(op):
    def build(sb, x):
        pooled = sb.op("Pooling", "g", [0], global_pool=True, pool_type="avg", kernel=(1, 1))
        return _flat(sb, sb.op(op, "op", [0, sb.op("_plus_scalar", "g1", [pooled], scalar=1.0)]))
    return build


def _activation(act):
    return lambda sb, x: _flat(sb, sb.op("Activation", "a", [_centred(sb)], act_type=act))


def _broadcast_ref(fn):
    return lambda sb, p: fn(p, p.mean((2, 3), keepdim=True) + 1).flatten(1)


CASES = {
    "conv_grouped_strided_dilated_bias": (_conv, _conv_ref),
    "conv_defaults_no_bias": (lambda sb, x: _flat(sb, sb.conv("c", x, 3, 4, 3)),
                              lambda sb, p: F.conv2d(p, sb.weight("c_weight")).flatten(1)),
    "bn_defaults_eps1e-3_fixed_gamma": (lambda sb, x: _flat(sb, sb.bn("b", x, 3)),
                                        lambda sb, p: _bn_ref(sb, p, 1e-3, gamma=False)),
    "bn_eps_and_gamma": (lambda sb, x: _flat(sb, sb.bn("b", x, 3, eps=2e-5, fix_gamma=False)),
                         lambda sb, p: _bn_ref(sb, p, 2e-5, gamma=True)),
    "bn_global_stats": (lambda sb, x: _flat(sb, sb.bn("b", x, 3, use_global_stats=True, fix_gamma=False)),
                        lambda sb, p: _bn_ref(sb, p, 1e-3, gamma=True)),
    "prelu": (lambda sb, x: _flat(sb, sb.prelu("r", _centred(sb), 3)),
              lambda sb, p: F.prelu(p / 127.5 - 1, sb.weight("r_gamma")).flatten(1)),
    "leaky_default_slope": (lambda sb, x: _flat(sb, sb.op("LeakyReLU", "r", [_centred(sb)])),
                            lambda sb, p: F.leaky_relu(p / 127.5 - 1, 0.25).flatten(1)),
    "leaky_slope": (lambda sb, x: _flat(sb, sb.op("LeakyReLU", "r", [_centred(sb)], act_type="leaky", slope=0.1)),
                    lambda sb, p: F.leaky_relu(p / 127.5 - 1, 0.1).flatten(1)),
    "elu": (lambda sb, x: _flat(sb, sb.op("LeakyReLU", "r", [_centred(sb)], act_type="elu", slope=0.5)),
            lambda sb, p: F.elu(p / 127.5 - 1, 0.5).flatten(1)),
    **{f"activation_{act}": (_activation(act), (lambda f: lambda sb, p: f(p / 127.5 - 1).flatten(1))(fn))
       for act, fn in {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
                       "softrelu": lambda t: torch.log1p(torch.exp(t))}.items()},
    "clip": (lambda sb, x: _flat(sb, sb.op("clip", "c", [_centred(sb)], a_min=-0.5, a_max=0.25)),
             lambda sb, p: (p / 127.5 - 1).clamp(-0.5, 0.25).flatten(1)),
    **{op: ((lambda o: lambda sb, x: _flat(sb, sb.op(o, "s", [x], scalar=3.0)))(op),
            (lambda f: lambda sb, p: f(p).flatten(1))(fn))
       for op, fn in {"_plus_scalar": lambda t: t + 3, "_minus_scalar": lambda t: t - 3,
                      "_rminus_scalar": lambda t: 3 - t, "_mul_scalar": lambda t: t * 3,
                      "_div_scalar": lambda t: t / 3, "_rdiv_scalar": lambda t: 3 / (t + 1)}.items()},
    **{op: (_binary(op), (lambda f: lambda sb, p: f(2 * p, p + 1).flatten(1))(fn))
       for op, fn in {"elemwise_add": torch.add, "_Plus": torch.add, "elemwise_sub": torch.sub,
                      "elemwise_mul": torch.mul, "ElementWiseSum": torch.add}.items()},
    **{op: (_broadcast(op), _broadcast_ref(fn))
       for op, fn in {"broadcast_add": torch.add, "broadcast_sub": torch.sub, "broadcast_mul": torch.mul,
                      "broadcast_div": torch.div}.items()},
    "fc_flatten_bias": (lambda sb, x: sb.fc("f", x, 3 * SIZE * SIZE, 5),
                        lambda sb, p: F.linear(p.flatten(1), sb.weight("f_weight"), sb.weight("f_bias"))),
    "fc_no_flatten_no_bias": (lambda sb, x: sb.fc("f", _flat(sb, x), 3 * SIZE * SIZE, 5, bias=False, flatten=False),
                              lambda sb, p: p.flatten(1) @ sb.weight("f_weight").T),
    "bn_on_fc_output": (lambda sb, x: sb.bn("b", sb.fc("f", x, 3 * SIZE * SIZE, 3), 3, eps=2e-5),
                        lambda sb, p: _bn_ref(sb, F.linear(p.flatten(1), sb.weight("f_weight"), sb.weight("f_bias"))
                                              .view(-1, 3, 1, 1), 2e-5, gamma=False)),
    "dropout_is_identity_in_eval": (lambda sb, x: _flat(sb, sb.op("Dropout", "d", [x], p=0.4)),
                                    lambda sb, p: p.flatten(1)),
    "max_pool_k3_s2_p1": (lambda sb, x: _flat(sb, sb.op("Pooling", "p", [x], kernel=(3, 3), stride=(2, 2),
                                                         pad=(1, 1), pool_type="max")),
                          lambda sb, p: _pool_by_hand(p, 3, 2, 1, 4, avg=False, include_pad=True)),
    "avg_pool_valid_default_stride": (lambda sb, x: _flat(sb, sb.op("Pooling", "p", [x], kernel=(2, 2),
                                                                     pool_type="avg")),
                                      lambda sb, p: _pool_by_hand(p, 2, 1, 0, 7, avg=True, include_pad=True)),
    "avg_pool_full_exclude_pad": (lambda sb, x: _flat(sb, sb.op("Pooling", "p", [x], kernel=(3, 3), stride=(2, 2),
                                                                 pad=(1, 1), pool_type="avg",
                                                                 pooling_convention="full",
                                                                 count_include_pad=False)),
                                  lambda sb, p: _pool_by_hand(p, 3, 2, 1, math.ceil((SIZE + 2 - 3) / 2) + 1,
                                                              avg=True, include_pad=False)),
    "global_max_pool": (lambda sb, x: _flat(sb, sb.op("Pooling", "p", [x], kernel=(7, 7), global_pool=True)),
                        lambda sb, p: p.amax((2, 3))),
    "reshape": (lambda sb, x: sb.op("Reshape", "r", [x], shape=(0, -1)), lambda sb, p: p.reshape(p.shape[0], -1)),
    "concat": (lambda sb, x: _flat(sb, sb.op("Concat", "c", list(_two(sb)), dim=1, num_args=2)),
               lambda sb, p: torch.cat([2 * p, p + 1], 1).flatten(1)),
    "copy_identity_blockgrad": (lambda sb, x: _flat(sb, sb.op("BlockGrad", "g", [sb.op("identity", "i", [
                                    sb.op("_copy", "c", [x])])])),
                                lambda sb, p: p.flatten(1)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_reference(case) -> None:
    build, reference = CASES[case]
    sb = SymbolBuilder(seed=len(case))
    if case == "_rdiv_scalar":  # keep away from 1/0: divide by p + 1
        head = sb.op("_rdiv_scalar", "s", [sb.op("_plus_scalar", "p1", [0], scalar=1.0)], scalar=3.0)
        head = _flat(sb, head)
    else:
        head = build(sb, 0)
    net = MxnetGraphNet(sb.text(head), input_size=SIZE, source="case.json")
    net.load_mxnet_weights(sb.params_by_kind(), "case.params")
    x = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        got = net.eval()(x)
        want = reference(sb, x * 127.5 + 127.5)
    torch.testing.assert_close(got, want.reshape(got.shape), rtol=1e-5, atol=1e-4)


# --- ops the docs list, against numpy formulas written out here (mxnet's definitions, not torch's functions) -----
def _np_centred(p: np.ndarray) -> np.ndarray:
    return p / 127.5 - 1


SELU_ALPHA, SELU_LAMBDA = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
_erf = np.vectorize(math.erf)


def _leaky(act: str, **attrs):
    return lambda sb: sb.op("LeakyReLU", "r", [_centred(sb)], act_type=act, **attrs)


def _scalar_op(op: str, scalar: float):
    return lambda sb: sb.op(op, "s", [_centred(sb)], scalar=scalar)


def _three(sb: SymbolBuilder) -> list[int]:
    """``2p``, ``p + 1`` and ``p / 127.5 - 1``: three inputs of the same shape."""
    return [*_two(sb), _centred(sb)]


NUMPY_CASES = {
    "selu": (_leaky("selu"), lambda p: SELU_LAMBDA * np.where(_np_centred(p) > 0, _np_centred(p),
                                                              SELU_ALPHA * np.expm1(_np_centred(p)))),
    "gelu": (_leaky("gelu"), lambda p: 0.5 * _np_centred(p) * (1 + _erf(_np_centred(p) / math.sqrt(2)))),
    # in inference mxnet's rrelu uses the mean of its slope range, (lower + upper) / 2: defaults 0.125, 0.334
    "rrelu_defaults": (_leaky("rrelu"), lambda p: np.where(_np_centred(p) >= 0, _np_centred(p),
                                                           _np_centred(p) * (0.125 + 0.334) / 2)),
    "rrelu_bounds": (_leaky("rrelu", lower_bound=0.2, upper_bound=0.6),
                     lambda p: np.where(_np_centred(p) >= 0, _np_centred(p), _np_centred(p) * 0.4)),
    "softsign": (lambda sb: sb.op("Activation", "a", [_centred(sb)], act_type="softsign"),
                 lambda p: _np_centred(p) / (1 + np.abs(_np_centred(p)))),
    "_maximum_scalar": (_scalar_op("_maximum_scalar", 0.3), lambda p: np.maximum(_np_centred(p), 0.3)),
    "_minimum_scalar": (_scalar_op("_minimum_scalar", -0.2), lambda p: np.minimum(_np_centred(p), -0.2)),
    "_power_scalar": (lambda sb: sb.op("_power_scalar", "s", [0], scalar=1.5), lambda p: p ** 1.5),
    "elemwise_div": (lambda sb: sb.op("elemwise_div", "d", list(_two(sb))), lambda p: (2 * p) / (p + 1)),
    "add_n_three_inputs": (lambda sb: sb.op("add_n", "n", _three(sb), num_args=3),
                           lambda p: 2 * p + (p + 1) + _np_centred(p)),
    "ElementWiseSum_three_inputs": (lambda sb: sb.op("ElementWiseSum", "n", _three(sb), num_args=3),
                                    lambda p: 2 * p + (p + 1) + _np_centred(p)),
    # Cast to float16 is computed in float32 (docs/mxnet_checkpoints.md): the values pass unrounded
    "Cast_float16_passes_float32": (lambda sb: sb.op("Cast", "c", [_centred(sb)], dtype="float16"),
                                    lambda p: _np_centred(p)),
}


@pytest.mark.parametrize("case", sorted(NUMPY_CASES))
def test_op_matches_numpy_formula(case) -> None:
    build, formula = NUMPY_CASES[case]
    sb = SymbolBuilder(seed=3)
    net = MxnetGraphNet(sb.text(_flat(sb, build(sb))), input_size=SIZE, source="case.json").eval()
    x = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        got = net(x).double().numpy()
    p = (x.double().numpy() * 127.5 + 127.5).reshape(3, -1)
    np.testing.assert_allclose(got, formula(p), rtol=1e-5, atol=1e-5)


def test_global_stats_batchnorm_uses_the_running_statistics_while_training() -> None:
    """``use_global_stats``: mxnet normalises with the stored mean/var in training too and leaves them unchanged;
    in eval mode plain BatchNorm does the same, so only training mode tells the two apart."""
    sb = SymbolBuilder(seed=4)
    head = _flat(sb, sb.bn("b", 0, 3, use_global_stats=True, fix_gamma=False, eps=1e-3))
    net = MxnetGraphNet(sb.text(head), input_size=SIZE, source="case.json")
    net.load_mxnet_weights(sb.params_by_kind(), "case.params")
    net.train()
    x = torch.rand(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5)) * 2 - 1
    got = net(x).detach().double().numpy()
    p = x.double().numpy() * 127.5 + 127.5
    mean, var, gamma, beta = (sb.weight(f"b_{n}").double().numpy().reshape(1, 3, 1, 1)
                              for n in ("moving_mean", "moving_var", "gamma", "beta"))
    want = (p - mean) / np.sqrt(var + 1e-3) * gamma + beta
    np.testing.assert_allclose(got, want.reshape(4, -1), rtol=1e-5, atol=1e-4)
    state = {k: v for k, v in net.state_dict().items() if "running" in k}
    assert np.allclose(state[next(k for k in state if k.endswith("running_mean"))].numpy(), mean.ravel())
    assert np.allclose(state[next(k for k in state if k.endswith("running_var"))].numpy(), var.ravel())


class _Scale(torch.nn.Module):
    """A per-channel scale with a parameter: what a new op with a weight looks like."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1)


def test_an_op_is_one_table_entry(monkeypatch) -> None:
    """A new op, with a parameter input, supported by adding its entry to OPS and nothing else."""
    from insightface_lr.models.mxnet import ops

    monkeypatch.setitem(ops.OPS, "ChannelScale", ops.Op(lambda attrs, shape: [_Scale(shape[1])],
                                                        lambda attrs: (ops.Param(1, "weight"),)))
    sb = SymbolBuilder(seed=6)
    scale = sb.var("s_weight", torch.tensor([0.5, -2.0, 3.0]))
    net = MxnetGraphNet(sb.text(_flat(sb, sb.op("ChannelScale", "s", [0, scale]))), input_size=SIZE)
    net.load_mxnet_weights(sb.params_by_kind(), "case.params")
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(7)) * 2 - 1
    want = (x.double().numpy() * 127.5 + 127.5) * np.array([0.5, -2.0, 3.0]).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(net.eval()(x).detach().double().numpy(), want.reshape(2, -1), rtol=1e-6)
