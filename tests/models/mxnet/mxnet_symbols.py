"""Tiny MXNet checkpoints written by the tests: a symbol JSON in mxnet's layout (nodes in topological order,
``null`` variables, ``[node, 0, 0]`` input references, string attributes) and its ``.params`` file."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from insightface_lr.models.mxnet.params import save_mxnet_params


class SymbolBuilder:
    """Add nodes, keep their weights; ``text(head)`` is the symbol JSON, ``params`` the ``arg:``/``aux:`` dict."""

    def __init__(self, seed: int = 0) -> None:
        self.nodes: list[dict] = [{"op": "null", "name": "data", "inputs": []}]
        self.params: dict[str, torch.Tensor] = {}
        self.gen = torch.Generator().manual_seed(seed)

    def var(self, name: str, value: torch.Tensor, aux: bool = False) -> int:
        self.nodes.append({"op": "null", "name": name, "inputs": []})
        self.params[f"{'aux' if aux else 'arg'}:{name}"] = value
        return len(self.nodes) - 1

    def op(self, op: str, name: str, inputs: list[int], **attrs: object) -> int:
        refs = [[i, 0, 1 if self.nodes[i]["name"].startswith("moving") or "_moving_" in self.nodes[i]["name"] else 0]
                for i in inputs]
        node = {"op": op, "name": name, "inputs": refs}
        if attrs:
            node["attrs"] = {k: str(v) for k, v in attrs.items()}
        self.nodes.append(node)
        return len(self.nodes) - 1

    def rand(self, *shape: int, scale: float = 0.3) -> torch.Tensor:
        return torch.randn(*shape, generator=self.gen) * scale

    # --- layers with weights -----------------------------------------------------------------------
    def conv(self, name: str, x: int, cin: int, cout: int, kernel: int = 3, groups: int = 1, bias: bool = False,
             **attrs: object) -> int:
        inputs = [x, self.var(f"{name}_weight", self.rand(cout, cin // groups, kernel, kernel))]
        if bias:
            inputs.append(self.var(f"{name}_bias", self.rand(cout)))
        return self.op("Convolution", name, inputs, kernel=(kernel, kernel), num_filter=cout, num_group=groups,
                       no_bias=not bias, **attrs)

    def bn(self, name: str, x: int, channels: int, **attrs: object) -> int:
        gamma = self.var(f"{name}_gamma", 1.0 + self.rand(channels))
        beta = self.var(f"{name}_beta", self.rand(channels))
        mean = self.var(f"{name}_moving_mean", self.rand(channels), aux=True)
        var = self.var(f"{name}_moving_var", 0.5 + torch.rand(channels, generator=self.gen), aux=True)
        return self.op("BatchNorm", name, [x, gamma, beta, mean, var], **attrs)

    def prelu(self, name: str, x: int, channels: int) -> int:
        gamma = self.var(f"{name}_gamma", 0.25 + self.rand(channels, scale=0.1))
        return self.op("LeakyReLU", name, [x, gamma], act_type="prelu")

    def fc(self, name: str, x: int, features: int, hidden: int, bias: bool = True, **attrs: object) -> int:
        inputs = [x, self.var(f"{name}_weight", self.rand(hidden, features, scale=0.1))]
        if bias:
            inputs.append(self.var(f"{name}_bias", self.rand(hidden)))
        return self.op("FullyConnected", name, inputs, num_hidden=hidden, no_bias=not bias, **attrs)

    def weight(self, name: str) -> torch.Tensor:
        return self.params.get(f"arg:{name}", self.params.get(f"aux:{name}"))

    # --- output ------------------------------------------------------------------------------------
    def text(self, head: int) -> str:
        arg_nodes = [i for i, n in enumerate(self.nodes) if n["op"] == "null"]
        doc = {"nodes": self.nodes, "arg_nodes": arg_nodes, "node_row_ptr": list(range(len(self.nodes) + 1)),
               "heads": [[head, 0, 0]], "attrs": {"mxnet_version": ["int", 10901]}}
        return json.dumps(doc, indent=2)

    def params_by_kind(self) -> dict[str, dict[str, torch.Tensor]]:
        out: dict[str, dict[str, torch.Tensor]] = {"arg": {}, "aux": {}}
        for key, value in self.params.items():
            kind, name = key.split(":", 1)
            out[kind][name] = value
        return out

    def save(self, folder: Path, head: int, prefix: str = "model", epoch: int = 0) -> Path:
        """Write ``folder/prefix-symbol.json`` and ``folder/prefix-EPOCH.params``; returns the prefix path."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{prefix}-symbol.json").write_text(self.text(head), encoding="utf-8")
        save_mxnet_params(folder / f"{prefix}-{epoch:04d}.params", self.params)
        return folder / prefix
