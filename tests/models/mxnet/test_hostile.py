"""Broken or hostile MXNet checkpoints are refused in one line naming the file and the node, by every command
that reads one (``load_teacher``, ``eval``, ``export``), in bounded time and memory; ``scripts/fuzz_mxnet.py``
mutates a tiny valid checkpoint thousands of ways and a sample of it runs here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from insightface_lr import cli
from insightface_lr.errors import ModelLoadError
from insightface_lr.models.teacher import load_teacher

PAIRS = Path(__file__).resolve().parents[2] / "fixtures" / "mxnet" / "pairs.bin"


@pytest.fixture
def fuzz(load_script):
    return load_script("fuzz_mxnet")


def _named(doc: dict) -> dict[str, dict]:
    return {node["name"]: node for node in doc["nodes"]}


def _index(doc: dict, name: str) -> int:
    return next(i for i, node in enumerate(doc["nodes"]) if node["name"] == name)


def _dangling(doc):
    _named(doc)["pool0"]["inputs"][0] = [len(doc["nodes"]) + 3, 0, 0]


def _self(doc):
    _named(doc)["pool0"]["inputs"][0] = [_index(doc, "pool0"), 0, 0]


def _later(doc):
    _named(doc)["pool0"]["inputs"][0] = [_index(doc, "cat0"), 0, 0]


def _conv_without_weight(doc):
    del _named(doc)["conv0"]["inputs"][1]


def _add_with_one_input(doc):
    del _named(doc)["plus0"]["inputs"][1]


def _bad_reshape(doc):
    _named(doc)["flat0"]["attrs"]["shape"] = "(3, -1)"


def _add_mismatched(doc):
    _named(doc)["plus0"]["inputs"][1] = [_index(doc, "minus"), 0, 0]


SYMBOL_CASES = {  # fault -> (mutation, what the one line says)
    "input_of_a_missing_node": (_dangling, r"node \d+ 'pool0' \(Pooling\): input \[\d+, 0, 0\] is not .* existing"),
    "node_feeds_itself": (_self, r"'pool0' \(Pooling\): input \d+ is itself \(a cycle"),
    "node_reads_a_later_node": (_later, r"'pool0' \(Pooling\): input \d+ is a later node \(a cycle"),
    "fewer_inputs_than_parameters": (_conv_without_weight, r"'conv0' \(Convolution\) has 1 inputs, the op takes 2"),
    "add_with_one_input": (_add_with_one_input, r"'plus0' \(elemwise_add\) cannot take inputs of shape \[\[1, 4"),
    "reshape_that_does_not_fit": (_bad_reshape, r"'flat0' \(Reshape\) cannot take inputs of shape \[\[1, 8, 7, 7\]\]"),
    "add_of_mismatched_shapes": (_add_mismatched, r"'plus0' \(elemwise_add\) cannot take inputs of shape "
                                                  r"\[\[1, 4, 28, 28\], \[1, 3, 112, 112\]\]"),
}


def _write(folder: Path, doc: dict, params: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model-symbol.json").write_text(json.dumps(doc), encoding="utf-8")
    (folder / "model-0000.params").write_bytes(params)
    return folder / "model"


def _one_line_exit_2(argv: list[str], capsys, needle: str) -> None:
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and needle in err, err


def test_the_fuzz_base_model_loads(fuzz, tmp_path) -> None:
    model = load_teacher(_write(tmp_path, *fuzz.tiny_checkpoint()))
    assert model.embedding_size == 8


@pytest.mark.parametrize("fault", sorted(SYMBOL_CASES))
def test_broken_symbols_are_one_line_naming_file_and_node(fuzz, tmp_path, capsys, fault) -> None:
    doc, params = fuzz.tiny_checkpoint()
    mutate, pattern = SYMBOL_CASES[fault]
    mutate(doc)
    prefix = _write(tmp_path / "mx", doc, params)
    with pytest.raises(ModelLoadError, match=r"model-symbol\.json: .*" + pattern) as caught:
        load_teacher(prefix)
    assert "\n" not in str(caught.value)
    _one_line_exit_2(["eval", "--model", str(prefix), "--bins", str(PAIRS), "--sizes", "112"], capsys,
                     "model-symbol.json: ")
    _one_line_exit_2(["export", "--model", str(prefix), "--out", str(tmp_path / "m.onnx")], capsys,
                     "model-symbol.json: ")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize(("cut", "pattern"), [
    (lambda data: data[: len(data) // 2], r"truncated MXNet \.params file \(ends inside array \d+'s data"),
    (lambda data: data[:36] + (2**62).to_bytes(8, "little") + data[44:], r"array 0's data"),
    (lambda data: data[:36] + (2**40).to_bytes(8, "little") + (2**40).to_bytes(8, "little") + data[52:],
     r"array 0's data"),
])
def test_truncated_or_mutated_params_are_one_line(fuzz, tmp_path, capsys, cut, pattern) -> None:
    doc, params = fuzz.tiny_checkpoint()
    prefix = _write(tmp_path / "mx", doc, cut(params))
    with pytest.raises(ModelLoadError, match=r"model-0000\.params: .*" + pattern):
        load_teacher(prefix)
    _one_line_exit_2(["export", "--model", str(prefix), "--out", str(tmp_path / "m.onnx")], capsys,
                     "model-0000.params: ")


def test_a_huge_layer_is_refused_before_it_is_allocated(fuzz, tmp_path) -> None:
    doc, params = fuzz.tiny_checkpoint()
    _named(doc)["conv0"]["attrs"]["num_filter"] = str(10**9)  # 27e9 weights: 108 GB if allocated
    with pytest.raises(ModelLoadError, match=r"'conv0' \(Convolution\) makes an output of shape \[1, 1000000000"):
        load_teacher(_write(tmp_path, doc, params))


def test_fuzz_sample(fuzz) -> None:
    """300 mutated checkpoints (a few seconds): each loads and embeds, or is refused in one line naming a file;
    none takes more than 2 s or grows the peak memory by more than 400 MB. The full run: scripts/fuzz_mxnet.py."""
    counts, failures = fuzz.run(300, seed=0)
    assert not failures, "\n".join(failures[:10])
    assert counts["ok"] > 0 and counts["refused"] > counts["ok"]
