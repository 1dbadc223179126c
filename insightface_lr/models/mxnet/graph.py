"""An MXNet symbol (``model-symbol.json``) as a torch module: :class:`MxnetGraphNet`, backbone ``mxnet_graph``.

The JSON's ``nodes`` are in topological order; each op node becomes torch modules (:mod:`.ops`), ``null``
nodes are the image input or parameters. Nodes that form a straight line (one data input, produced by the
node before, used nowhere else) share one ``nn.Sequential`` "chain", so :func:`~.fuse.fold_batchnorm` folds a
Convolution/FullyConnected with the BatchNorm after it exactly as in our own networks. Shapes (and thus conv
input channels, and whether a BatchNorm sees ``[N,C]`` -> ``BatchNorm1d`` or ``[N,C,H,W]`` -> ``BatchNorm2d``)
come from one dummy forward at build time, on torch's ``meta`` device: shapes without memory, so a hostile symbol
(a convolution of 10**9 filters, concats that double a tensor 40 times) is refused by :data:`MAX_PARAMETERS` /
:data:`MAX_ACTIVATION` before anything is allocated; the modules are materialised afterwards.

Input convention: our model input is RGB in ``[-1, 1]`` (:mod:`insightface_lr.data.pixels`); InsightFace's
MXNet models take raw RGB ``0..255`` values and normalise inside the graph (a ``_minus_scalar`` of half the
range, then ``_mul_scalar`` by its inverse), so ``forward`` maps ``x`` back to pixel values first
(:func:`~insightface_lr.data.pixels.model_input_to_pixel_values`). Output: the symbol's head;
when the head is a loss/classifier op (a training symbol) the embedding node ``fc1`` instead.
"""

from __future__ import annotations

import json
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...data.pixels import model_input_to_pixel_values
from ...errors import ModelLoadError
from ...registry import register_backbone
from ..iresnet import check_input
from . import ops as mxnet_ops  # the op table

LOSS_OPS = {"SoftmaxOutput", "softmax", "SoftmaxActivation", "log_softmax", "MakeLoss", "make_loss",
            "LinearRegressionOutput", "LogisticRegressionOutput", "MAERegressionOutput", "SVMOutput"}
EMBEDDING_NODE = "fc1"  # InsightFace's embedding layer (``fc1_output``)
# bounds on what a symbol may make this process allocate (the largest model-zoo network, glintr100, has 65M
# parameters and ~1M values per face in its largest activation); beyond them the symbol is refused
MAX_NODES = 100_000
MAX_PARAMETERS = 2**28
MAX_ACTIVATION = 2**25  # values of one node's output for one face
# what a builder or the dummy forward raises on attributes or shapes that do not fit (named with the node)
_BUILD_ERRORS = (mxnet_ops.OpError, ValueError, TypeError, RuntimeError, ArithmeticError, IndexError)


class _Chain(nn.Sequential):
    """Modules run in sequence; the first may take several inputs (an add, a concat)."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        modules = iter(self._modules.values())
        x = next(modules)(*xs)
        for module in modules:
            x = module(x)
        return x


class MxnetGraphNet(nn.Module):
    """``forward(x [B,3,S,S] RGB in [-1,1]) -> [B, D]``: the symbol's graph, weights as in the ``.params`` file.

    Built uninitialised from the JSON text (``load_mxnet_weights`` fills it). ``embedding_size`` (optional) is
    checked against the graph's output; ``dropout`` is accepted for the factory contract and ignored (the graph's
    own Dropout nodes keep their ``p``); ``fp16`` runs the graph under CUDA autocast.
    """

    network = "mxnet_graph"

    def __init__(self, symbol: str, embedding_size: int | None = None, input_size: int = 112,
                 dropout: float = 0.0, fp16: bool = False, source: str | Path = "MXNet symbol",
                 weights: dict[str, dict[str, torch.Tensor]] | None = None,
                 weights_source: str | Path = "MXNet params") -> None:
        """``weights`` (:func:`.params.load_mxnet_params`) are checked against the graph before its
        modules are allocated, then copied in; without them the modules keep torch's default initialisation."""
        super().__init__()
        self.symbol, self.source = symbol, str(source)
        self.input_size, self.fp16 = int(input_size), bool(fp16)
        nodes, heads = _parse(symbol, self.source)
        self.output_id, self.output_note = _output_node(nodes, heads, self.source)
        self.output_name = nodes[self.output_id]["name"]
        self.chains = nn.ModuleDict()
        self.param_map: list[tuple[str, str, str]] = []  # (state-dict key, mxnet name, "arg"/"aux")
        self.fixed_params: list[str] = []  # parameters held at 1 (a fix_gamma BatchNorm's weight, Param.fixed)
        with warnings.catch_warnings():  # a zero-size layer warns at each init (it is refused or harmless)
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
            with torch.device("meta"):
                self._build(nodes)
            self._check_size()
            matched = self._match_weights(weights, weights_source) if weights is not None else []
            self.to_empty(device="cpu")
            for module in self.modules():  # to_empty leaves memory as found: torch's own initialisation
                if module is not self and hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        self._copy_weights(matched)
        if embedding_size is not None and int(embedding_size) != self.embedding_size:
            raise ModelLoadError(f"{self.source}: the graph's output {self.output_name!r} has {self.embedding_size} "
                                 f"features, not embedding_size={embedding_size}")

    def build_options(self) -> dict[str, Any]:
        """The factory kwargs that rebuild this network (for ``save_student(..., kwargs=...)``)."""
        return {"symbol": self.symbol, "embedding_size": self.embedding_size, "input_size": self.input_size}

    def fixed_parameters(self) -> list[str]:
        """Parameters training must leave alone: mxnet holds a ``fix_gamma`` BatchNorm's gamma at 1 (a student
        started from this network keeps them frozen, :mod:`insightface_lr.train.student_init`)."""
        return list(self.fixed_params)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_size, type(self).__name__)
        values = {self.data_id: model_input_to_pixel_values(x)}
        with torch.autocast(device_type="cuda", enabled=self.fp16 and x.is_cuda):
            for (inputs, output, release), chain in zip(self.steps, self.chains.values(), strict=True):
                values[output] = chain(*[values[i] for i in inputs])
                for i in release:
                    del values[i]
        return values[self.output_id].float()

    def load_mxnet_weights(self, params: dict[str, dict[str, torch.Tensor]], source: str | Path) -> None:
        """Copy ``{"arg": ..., "aux": ...}`` (:func:`.params.load_mxnet_params`) in; strict on the names
        and shapes the graph uses (extra entries, e.g. a classifier ``fc7_weight``, are ignored)."""
        self._copy_weights(self._match_weights(params, source))

    def _match_weights(self, params: dict[str, dict[str, torch.Tensor]],
                       source: str | Path) -> list[tuple[str, torch.Tensor]]:
        """``(state-dict key, value)`` of every parameter the graph uses, or ModelLoadError naming the first one
        missing or misshaped (shapes only: it runs before the modules are allocated)."""
        own, matched = self.state_dict(), []
        for key, name, kind in self.param_map:
            other = "aux" if kind == "arg" else "arg"
            value = params[kind].get(name, params[other].get(name))
            if value is None:
                raise ModelLoadError(f"{source}: parameter {kind}:{name} missing (the graph's {key})")
            if tuple(value.shape) != tuple(own[key].shape):
                raise ModelLoadError(f"{source}: parameter {kind}:{name} has shape {list(value.shape)}, the graph "
                                     f"needs {list(own[key].shape)} ({key})")
            matched.append((key, value))
        return matched

    @torch.no_grad()
    def _copy_weights(self, matched: list[tuple[str, torch.Tensor]]) -> None:
        own = self.state_dict()
        for key, value in matched:
            own[key].copy_(value.to(own[key].dtype))
        if matched:
            for key in self.fixed_params:  # mxnet ignores a fix_gamma BatchNorm's stored gamma
                own[key].fill_(1.0)

    def _check_size(self) -> None:
        count = sum(p.numel() for p in self.parameters()) + sum(b.numel() for b in self.buffers())
        if count > MAX_PARAMETERS:
            raise ModelLoadError(f"{self.source}: the graph holds {count} parameters, more than the {MAX_PARAMETERS} "
                                 "accepted (a corrupt or hostile symbol: check num_filter/num_hidden)")

    # --- building -----------------------------------------------------------------------------------
    @torch.no_grad()
    def _build(self, nodes: list[dict[str, Any]]) -> None:
        needed = _ancestors(nodes, self.output_id)
        data_refs = {i: _data_inputs(nodes[i], self.source) for i in needed if nodes[i]["op"] != "null"}
        images = sorted({r for refs in data_refs.values() for r in refs if nodes[r]["op"] == "null"})
        if len(images) != 1:
            names = [nodes[i]["name"] for i in images]
            raise ModelLoadError(f"{self.source}: the graph must have one image input, found {names or 'none'}")
        self.data_id = images[0]
        consumers = Counter(r for refs in data_refs.values() for r in refs)
        values = {self.data_id: torch.zeros(1, 3, self.input_size, self.input_size)}
        steps: list[tuple[tuple[int, ...], int]] = []
        tails: list[int] = []
        chain_key = ""
        for index in sorted(data_refs):
            refs = data_refs[index]
            extend = len(refs) == 1 and tails and tails[-1] == refs[0] and consumers[refs[0]] == 1
            if not extend:
                chain_key = _unique(_safe(nodes[index]["name"]), self.chains)
                self.chains[chain_key] = _Chain()
                steps.append((tuple(refs), index))
                tails.append(index)
            values[index] = self._add_node(nodes, index, chain_key, [values[r] for r in refs])
            steps[-1], tails[-1] = (steps[-1][0], index), index
        self.steps = _with_releases(steps, self.output_id)
        out = values[self.output_id]
        if out.dim() != 2:
            raise ModelLoadError(f"{self.source}: the graph's output {self.output_name!r} has shape "
                                 f"{list(out.shape)}, not [N, D] embeddings")
        self.embedding_size = int(out.shape[1])

    def _add_node(self, nodes: list[dict[str, Any]], index: int, chain_key: str, inputs: list[torch.Tensor]):
        node = nodes[index]
        op, name, attrs = node["op"], node["name"], _attrs(node)
        spec = mxnet_ops.OPS.get(op)
        if spec is None:
            raise ModelLoadError(f"{self.source}: unsupported MXNet op {op!r} (node {name!r})")
        try:
            modules, params = spec.build(attrs, inputs[0].shape), spec.params(attrs)
        except _BUILD_ERRORS as exc:
            raise ModelLoadError(f"{self.source}: node {name!r} ({op}): unsupported {_one_line(exc)}") from exc
        takes = max((p.position for p in params), default=0) + 1
        if takes > len(node["inputs"]):
            raise ModelLoadError(f"{self.source}: node {name!r} ({op}) has {len(node['inputs'])} inputs, the op takes "
                                 f"{takes} (data and its parameters)")
        chain, keys = self.chains[chain_key], []
        for i, module in enumerate(modules):
            keys.append(_unique(_safe(name) + ("" if i == len(modules) - 1 else f"_{i}"), chain._modules))
            chain.add_module(keys[-1], module.eval())
        for param in params:  # the table's parameter inputs: all on the op's last module
            variable = nodes[node["inputs"][param.position][0]]["name"]
            key = f"chains.{chain_key}.{keys[-1]}.{param.attribute}"
            self.param_map.append((key, variable, "aux" if param.aux else "arg"))
            if param.fixed:
                self.fixed_params.append(key)
        return self._run_node(modules, inputs, name, op)

    def _run_node(self, modules: list[nn.Module], inputs: list[torch.Tensor], name: str, op: str) -> torch.Tensor:
        """The node's output on the dummy (meta) input: inputs it cannot take are refused naming the node."""
        try:
            out = modules[0](*inputs)
            for module in modules[1:]:
                out = module(out)
        except _BUILD_ERRORS as exc:
            shapes = [list(x.shape) for x in inputs]
            raise ModelLoadError(f"{self.source}: node {name!r} ({op}) cannot take inputs of shape {shapes} "
                                 f"({_one_line(exc)})") from exc
        if not isinstance(out, torch.Tensor) or out.numel() > MAX_ACTIVATION:
            raise ModelLoadError(f"{self.source}: node {name!r} ({op}) makes an output of shape "
                                 f"{list(getattr(out, 'shape', []))}, more than the {MAX_ACTIVATION} values per face "
                                 "accepted")
        return out


def _parse(symbol: str, source: str) -> tuple[list[dict[str, Any]], list]:
    try:
        doc = json.loads(symbol)
        nodes, heads = doc["nodes"], doc["heads"]
        ok = isinstance(nodes, list) and all(isinstance(n, dict) and isinstance(n.get("op"), str)
                                             and isinstance(n.get("name"), str) for n in nodes)
        ok = ok and isinstance(heads, list) and bool(heads) and all(_is_ref(h, len(nodes)) for h in heads)
    except (ValueError, KeyError, TypeError, IndexError, RecursionError) as exc:  # RecursionError: deep nesting
        raise ModelLoadError(f"{source}: not an MXNet symbol JSON ({type(exc).__name__}: {_one_line(exc)})") from exc
    if not ok:
        raise ModelLoadError(f"{source}: not an MXNet symbol JSON (needs 'nodes' with op/name and 'heads' "
                             "[node, output, version] of existing nodes)")
    if len(nodes) > MAX_NODES:
        raise ModelLoadError(f"{source}: {len(nodes)} nodes, more than the {MAX_NODES} accepted")
    for index, node in enumerate(nodes):
        _check_node(node, index, len(nodes), source)
    return nodes, heads


def _is_ref(ref: Any, count: int) -> bool:
    """``[node, output(, version)]`` with integer entries and a node id in range."""
    return (isinstance(ref, list) and 2 <= len(ref) <= 3 and all(type(v) is int for v in ref)
            and 0 <= ref[0] < count)


def _check_node(node: dict[str, Any], index: int, count: int, source: str) -> None:
    """mxnet writes nodes in topological order: every input is an earlier node (so no cycle, nothing dangling)."""
    where = f"{source}: node {index} {node['name']!r} ({node['op']})"
    inputs = node.get("inputs") or []
    if not isinstance(inputs, list):
        raise ModelLoadError(f"{where}: 'inputs' is not a list of [node, output, version]")
    for ref in inputs:
        if not _is_ref(ref, count):
            raise ModelLoadError(f"{where}: input {str(ref)[:60]} is not [node, output, version] of an existing "
                                 f"node (the symbol has nodes 0..{count - 1})")
        if ref[0] >= index:
            raise ModelLoadError(f"{where}: input {ref[0]} is {'itself' if ref[0] == index else 'a later node'} "
                                 "(a cycle, or nodes out of mxnet's topological order)")
    for key in ("param", "attr", "attrs"):
        if not isinstance(node.get(key) or {}, dict):
            raise ModelLoadError(f"{where}: {key!r} is not an object of attributes")


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line, cut to a readable length (torch's can span many lines)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def _attrs(node: dict[str, Any]) -> dict[str, str]:
    """Op attributes: ``attrs`` (mxnet >= 1.0), ``attr`` or ``param`` (older files)."""
    merged: dict[str, str] = {}
    for key in ("param", "attr", "attrs"):
        merged.update({k: str(v) for k, v in (node.get(key) or {}).items() if not k.startswith("__")})
    return merged


def _data_inputs(node: dict[str, Any], source: str) -> list[int]:
    inputs = node.get("inputs") or []
    spec = mxnet_ops.OPS.get(node["op"])  # an op not in the table: every input is data (refused when built)
    try:
        skip = {p.position for p in spec.params(_attrs(node))} if spec is not None else set()
    except mxnet_ops.OpError as exc:
        raise ModelLoadError(f"{source}: node {node['name']!r} ({node['op']}): unsupported {exc}") from exc
    refs = [ref for i, ref in enumerate(inputs) if i not in skip]
    if not refs:
        raise ModelLoadError(f"{source}: node {node['name']!r} ({node['op']}) has no data input")
    if any(len(ref) < 2 or int(ref[1]) != 0 for ref in refs):
        raise ModelLoadError(f"{source}: node {node['name']!r} ({node['op']}) reads a secondary output of "
                             "another node, which is not supported")
    return [int(ref[0]) for ref in refs]


def _output_node(nodes: list[dict[str, Any]], heads: list, source: str) -> tuple[int, str]:
    """(node id, note): the first head that is not a loss op, else InsightFace's embedding node ``fc1``."""
    for head in heads:
        if nodes[int(head[0])]["op"] not in LOSS_OPS and int(head[1]) == 0:
            return int(head[0]), "the symbol's head"
    named = [i for i, n in enumerate(nodes) if n["name"] == EMBEDDING_NODE and n["op"] != "null"]
    if not named:
        raise ModelLoadError(f"{source}: the symbol's heads are loss/classifier ops and it has no "
                             f"{EMBEDDING_NODE!r} embedding node to use instead")
    return named[0], f"{EMBEDDING_NODE} (the head is a classifier/loss op)"


def _ancestors(nodes: list[dict[str, Any]], output: int) -> set[int]:
    seen, todo = set(), [output]
    while todo:
        index = todo.pop()
        if index not in seen:
            seen.add(index)
            todo.extend(int(ref[0]) for ref in nodes[index].get("inputs") or [])
    return seen


def _with_releases(steps: list[tuple[tuple[int, ...], int]], output: int) -> list[tuple[tuple[int, ...], int, tuple]]:
    """Each step with the values no later step reads (freed as soon as possible: activation memory)."""
    last_use = {}
    for n, (inputs, _out) in enumerate(steps):
        for i in inputs:
            last_use[i] = n
    return [(inputs, out, tuple(i for i in dict.fromkeys(inputs) if last_use[i] == n and i != output))
            for n, (inputs, out) in enumerate(steps)]


def _safe(name: str) -> str:
    return re.sub(r"\W", "_", name) or "node"


def _unique(key: str, taken: Any) -> str:
    out, n = key, 1
    while out in taken:
        out, n = f"{key}_{n}", n + 1
    return out


@register_backbone("mxnet_graph")
def mxnet_graph(symbol: str, embedding_size: int | None = None, input_size: int = 112, dropout: float = 0.0,
                fp16: bool = False) -> MxnetGraphNet:
    """Backbone ``mxnet_graph``: the network of an MXNet symbol JSON (``symbol`` = its text), uninitialised."""
    return MxnetGraphNet(symbol, embedding_size, input_size, dropout, fp16)
