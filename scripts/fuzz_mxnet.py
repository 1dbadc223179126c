"""Mutation fuzzing of the MXNet import: thousands of broken ``model-symbol.json`` / ``model-0000.params`` pairs.

    python scripts/fuzz_mxnet.py [--cases 5000] [--seed 0] [--max-seconds 2] [--max-rss-mb 400]

Each case starts from a tiny valid checkpoint (conv, BatchNorm, PReLU, a residual add, pooling, reshape,
concat, fully connected; written here, so the script needs nothing but the package) and applies one to three
mutations: inputs pointing at nodes that do not exist, at the node itself or a later one (a cycle), dropped
or extra inputs, another op, hostile attribute values (``num_filter=10**9``, bad kernels and Reshape shapes),
deleted nodes, broken heads, edited or cut JSON text, and truncated, byte-flipped or re-dimensioned ``.params``.

A case passes when :func:`~insightface_lr.models.teacher.load_teacher` either loads the checkpoint and the
model embeds a batch, or refuses it with one line (an ``InsightFaceLRError``, what the CLI prints with exit
code 2) naming one of the two files; and either way within ``--max-seconds`` and without the process's peak
memory growing by more than ``--max-rss-mb``. Anything else is listed with its case number (re-run one case
with ``--first N --cases 1``) and the script exits 1. ``tests/models/mxnet/test_hostile.py`` runs a sample.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import resource
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OPS = ["Convolution", "BatchNorm", "LeakyReLU", "Activation", "FullyConnected", "Pooling", "Reshape", "Flatten",
       "Concat", "elemwise_add", "broadcast_mul", "ElementWiseSum", "_mul_scalar", "_rdiv_scalar", "clip", "Cast",
       "Dropout", "SoftmaxOutput", "NoSuchOp", "null"]
ATTRIBUTES = ["kernel", "stride", "pad", "dilate", "num_filter", "num_group", "num_hidden", "no_bias", "shape",
              "act_type", "pool_type", "global_pool", "pooling_convention", "dim", "scalar", "eps", "fix_gamma",
              "use_global_stats", "axis", "flatten", "p", "mode", "layout", "a_min", "a_max", "reverse"]
VALUES = ["0", "-1", "1", "7", "(0, 0)", "(1,)", "(3, 3, 3)", "1000000000", "(100000, 100000)", "(2, -5)",
          "(0, -1)", "(1, 2, 3, 4)", "(-1,)", "(4, 0)", "(1, 999999)", "((1, 2),)", "True", "False", "None", "nan",
          "inf", "1e400", "-1e400", "[[[[", "'x'", "{1: 2}", "relu", "prelu", "rrelu", "max", "avg", "sum", "full",
          "NHWC", "always", "()", "[" * 900 + "]" * 900, "9" * 5000, ""]


@dataclass
class Case:
    symbol: dict | str  # the JSON document, or text once a text mutation applied
    params: bytes
    notes: list[str]


def tiny_checkpoint(seed: int = 0) -> tuple[dict, bytes]:
    """A valid symbol (as a dict) and its ``.params`` bytes, written from mxnet's documented layouts."""
    rng = np.random.default_rng(seed)
    nodes: list[dict] = [{"op": "null", "name": "data", "inputs": []}]
    arrays: dict[str, np.ndarray] = {}

    def var(name: str, shape: tuple[int, ...], aux: bool = False) -> int:
        nodes.append({"op": "null", "name": name, "inputs": []})
        value = rng.standard_normal(shape).astype(np.float32) * 0.2
        arrays[f"{'aux' if aux else 'arg'}:{name}"] = np.abs(value) + 0.5 if name.endswith("var") else value
        return len(nodes) - 1

    def op(kind: str, name: str, inputs: list[int], **attrs: object) -> int:
        nodes.append({"op": kind, "name": name, "inputs": [[i, 0, 0] for i in inputs],
                      "attrs": {k: str(v) for k, v in attrs.items()}})
        return len(nodes) - 1

    x = op("_minus_scalar", "minus", [0], scalar=127.5)
    x = op("_mul_scalar", "mul", [x], scalar=0.0078125)
    x = op("Convolution", "conv0", [x, var("conv0_weight", (4, 3, 3, 3))], kernel=(3, 3), stride=(4, 4),
           pad=(1, 1), num_filter=4, no_bias=True)
    bn = op("BatchNorm", "bn0", [x, var("bn0_gamma", (4,)), var("bn0_beta", (4,)),
                                  var("bn0_moving_mean", (4,), True), var("bn0_moving_var", (4,), True)],
            fix_gamma=False, eps=2e-5)
    act = op("LeakyReLU", "relu0", [bn, var("relu0_gamma", (4,))], act_type="prelu")
    x = op("elemwise_add", "plus0", [act, bn])
    x = op("Pooling", "pool0", [x], kernel=(4, 4), stride=(4, 4), pool_type="avg")
    x = op("Concat", "cat0", [x, x], dim=1)
    x = op("Reshape", "flat0", [x], shape=(0, -1))
    x = op("FullyConnected", "fc1", [x, var("fc1_weight", (8, 8 * 7 * 7)), var("fc1_bias", (8,))], num_hidden=8)
    doc = {"nodes": nodes, "arg_nodes": [i for i, n in enumerate(nodes) if n["op"] == "null"],
           "heads": [[x, 0, 0]], "attrs": {"mxnet_version": ["int", 10901]}}
    return doc, params_bytes(arrays)


def params_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """mxnet's NDArray-list V2 layout (see :mod:`insightface_lr.models.mxnet.params`), float32 arrays."""
    parts = [struct.pack("<QQQ", 0x112, 0, len(arrays))]
    for value in arrays.values():
        parts.append(struct.pack("<IiI", 0xF993FAC9, 0, value.ndim) + struct.pack(f"<{value.ndim}q", *value.shape))
        parts.append(struct.pack("<iii", 1, 0, 0) + value.astype("<f4").tobytes())
    parts.append(struct.pack("<Q", len(arrays)))
    for name in arrays:
        parts.append(struct.pack("<Q", len(name.encode())) + name.encode())
    return b"".join(parts)


# --- mutations: each changes the case in place and says what it did ------------------------------------
def _op_nodes(doc: dict) -> list[int]:
    return [i for i, n in enumerate(doc["nodes"]) if isinstance(n, dict) and n.get("op") != "null"]


def bad_input(doc: dict, rng: random.Random) -> str:
    i = rng.choice(_op_nodes(doc))
    inputs = doc["nodes"][i].setdefault("inputs", [])
    target = rng.choice([-1, -7, len(doc["nodes"]), len(doc["nodes"]) + 50, i, i + 1, 2**70, "3", None])
    ref = rng.choice([[target, 0, 0], [target], target, [0, 1, 0], [0, 0, 0, 0]])
    if inputs:
        inputs[rng.randrange(len(inputs))] = ref
    else:
        inputs.append(ref)
    return f"node {i} input -> {ref}"


def drop_or_add_input(doc: dict, rng: random.Random) -> str:
    i = rng.choice(_op_nodes(doc))
    inputs = doc["nodes"][i]["inputs"]
    if inputs and rng.random() < 0.6:
        del inputs[rng.randrange(len(inputs))]
        return f"node {i} lost an input"
    inputs.insert(rng.randrange(len(inputs) + 1), [rng.randrange(i), 0, 0])
    return f"node {i} got an extra input"


def other_op(doc: dict, rng: random.Random) -> str:
    i = rng.choice(_op_nodes(doc))
    doc["nodes"][i]["op"] = rng.choice(OPS)
    return f"node {i} op -> {doc['nodes'][i]['op']}"


def attribute(doc: dict, rng: random.Random) -> str:
    i = rng.choice(_op_nodes(doc))
    key, value = rng.choice(ATTRIBUTES), rng.choice(VALUES)
    doc["nodes"][i].setdefault("attrs", {})[key] = value
    return f"node {i} {key}={value[:20]}"


def delete_node(doc: dict, rng: random.Random) -> str:
    i = rng.randrange(1, len(doc["nodes"]))
    del doc["nodes"][i]
    return f"node {i} deleted"


def heads(doc: dict, rng: random.Random) -> str:
    doc["heads"] = rng.choice([[], [[0, 0, 0]], [[len(doc["nodes"]), 0, 0]], [[5, 1, 0]], [["x"]], [[2]], {}, 3])
    return f"heads -> {doc['heads']}"


def shape_mismatch(doc: dict, rng: random.Random) -> str:
    """Shapes that do not fit: an add of differently shaped tensors, a Reshape to a size the input lacks."""
    named = {n.get("name"): i for i, n in enumerate(doc["nodes"]) if isinstance(n, dict)}
    if rng.random() < 0.5 and "plus0" in named:
        doc["nodes"][named["plus0"]]["inputs"][1] = [named.get("minus", 1), 0, 0]
        return "plus0 adds the input image"
    if "flat0" in named:
        doc["nodes"][named["flat0"]].setdefault("attrs", {})["shape"] = rng.choice(["(0, 7, 7)", "(3, -1)", "(-1, 5)"])
    return "flat0 reshape to a size that does not fit"


SYMBOL_MUTATIONS = [bad_input, drop_or_add_input, other_op, attribute, delete_node, heads, shape_mismatch]


def text_edit(text: str, rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.3:
        cut = rng.randrange(len(text))
        return text[:cut], f"symbol cut at {cut}"
    pos = rng.randrange(len(text))
    char = rng.choice('{}[]",:0123456789-ex \\')
    return text[:pos] + char + text[pos + rng.randint(0, 2):], f"symbol text edited at {pos}"


def params_edit(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    kind = rng.randrange(3)
    if kind == 0:
        cut = rng.randrange(len(data))
        return data[:cut], f"params cut at {cut}"
    edited = bytearray(data)
    if kind == 1:
        for _ in range(rng.randint(1, 4)):
            edited[rng.randrange(len(edited))] = rng.randrange(256)
        return bytes(edited), "params bytes flipped"
    at = 24 + 12  # the first array's first dimension (list header 24 bytes, magic, stype, ndim)
    edited[at:at + 8] = struct.pack("<q", rng.choice([2**40, 2**62, -1, 0, 10**9, 4 * 2**31]))
    return bytes(edited), "params first dim rewritten"


def make_case(number: int, seed: int) -> Case:
    rng = random.Random(seed * 1_000_003 + number)
    doc, params = tiny_checkpoint()
    case = Case(copy.deepcopy(doc), params, [])
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        if roll < 0.65 and isinstance(case.symbol, dict):
            try:
                case.notes.append(rng.choice(SYMBOL_MUTATIONS)(case.symbol, rng))
            except (IndexError, KeyError, TypeError, AttributeError, ValueError):
                case.notes.append("mutation did not apply")  # an earlier mutation removed what it edits
        elif roll < 0.8:
            text = case.symbol if isinstance(case.symbol, str) else json.dumps(case.symbol)
            case.symbol, note = text_edit(text, rng)
            case.notes.append(note)
        else:
            case.params, note = params_edit(case.params, rng)
            case.notes.append(note)
    return case


# --- running a case ----------------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_case(case: Case, folder: Path) -> str:
    """``"ok"``, ``"refused"``, or what went wrong (a string starting with ``"FAIL"``)."""
    import torch

    from insightface_lr.errors import InsightFaceLRError
    from insightface_lr.models.teacher import load_teacher

    text = case.symbol if isinstance(case.symbol, str) else json.dumps(case.symbol)
    (folder / "model-symbol.json").write_text(text, encoding="utf-8", errors="surrogatepass")
    (folder / "model-0000.params").write_bytes(case.params)
    try:
        model = load_teacher(folder / "model")
        out = model(torch.zeros(2, 3, model.input_size, model.input_size))
    except InsightFaceLRError as exc:
        message = str(exc)
        if "\n" in message or not message.strip():
            return f"FAIL: not one line: {message!r}"
        if "model-symbol.json" not in message and "model-0000.params" not in message and str(folder) not in message:
            return f"FAIL: names neither file: {message}"
        return "refused"
    except Exception as exc:  # anything else would be a traceback on the command line
        return f"FAIL: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    if out.dim() != 2 or out.shape[0] != 2:
        return f"FAIL: output of shape {list(out.shape)}"
    return "ok"


def run(cases: int, seed: int = 0, first: int = 0, max_seconds: float = 2.0,
        max_rss_mb: float = 400.0) -> tuple[dict[str, int], list[str]]:
    """``({"ok": n, "refused": n}, failures)`` over cases ``first .. first + cases - 1``."""
    import torch

    torch.set_num_threads(1)
    counts = {"ok": 0, "refused": 0}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="iflr_fuzz_mxnet_") as tmp:
        start_rss = peak_rss_mb()
        for number in range(first, first + cases):
            case = make_case(number, seed)
            began = time.perf_counter()
            outcome = run_case(case, Path(tmp))
            seconds, grown = time.perf_counter() - began, peak_rss_mb() - start_rss
            if seconds > max_seconds:
                outcome = f"FAIL: took {seconds:.1f} s (at most {max_seconds})"
            elif grown > max_rss_mb:
                outcome = f"FAIL: peak memory grew by {grown:.0f} MB (at most {max_rss_mb})"
            if outcome.startswith("FAIL"):
                failures.append(f"case {number} ({'; '.join(case.notes)}): {outcome}")
            else:
                counts[outcome] += 1
    return counts, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--first", type=int, default=0, help="number of the first case (to re-run one)")
    parser.add_argument("--max-seconds", type=float, default=2.0, help="time limit of one case")
    parser.add_argument("--max-rss-mb", type=float, default=400.0, help="peak memory growth limit of the run")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    counts, failures = run(args.cases, args.seed, args.first, args.max_seconds, args.max_rss_mb)
    for line in failures:
        print(line)
    print(f"{args.cases} cases in {time.perf_counter() - began:.0f} s: {counts['ok']} loaded, "
          f"{counts['refused']} refused in one line, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
