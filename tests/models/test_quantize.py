"""``export --int8 --calibrate FACES``: a QDQ graph with per-channel int8 weights, calibrated on faces, that
insightface loads (file and model package) and that embeds faces as the float export does, within int8 error."""

from __future__ import annotations

import re

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import numpy_helper
from test_inference import mild_bn

from insightface_lr import cli
from insightface_lr.commands.export import read_faces
from insightface_lr.data.image_codec import encode_png
from insightface_lr.data.synthetic import SyntheticFaceConfig, generate_faces, write_synthetic_dataset
from insightface_lr.errors import ModelLoadError
from insightface_lr.eval.int8_check import calibration_inputs
from insightface_lr.models import get_backbone
from insightface_lr.models import quantize as quantize_module
from insightface_lr.models.export import export_onnx
from insightface_lr.models.quantize import compact_names, heldout_pairs, quantize_int8
from insightface_lr.models.teacher import save_student

model_zoo = pytest.importorskip("insightface.model_zoo")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A 16-px student exported by the command line both ways: float32 and int8 (file + package)."""
    root = tmp_path_factory.mktemp("int8")
    torch.manual_seed(0)
    model = mild_bn(get_backbone("bridge_student", input_size=16, embedding_size=32)).eval()
    student = save_student(root / "student.pt", model, network="bridge_student",
                           kwargs={"input_size": 16, "embedding_size": 32})
    faces, _ = generate_faces(SyntheticFaceConfig(num_identities=8, images_per_identity=6, seed=3))
    folder = root / "faces"
    for i, face in enumerate(faces):
        (folder / f"id{i % 8}").mkdir(parents=True, exist_ok=True)
        (folder / f"id{i % 8}" / f"{i}.png").write_bytes(encode_png(face))
    args = ["export", "--model", str(student), "--out", str(root / "float.onnx")]
    assert cli.main(args) == 0
    assert cli.main([*args[:-1], str(root / "int8.onnx"), "--package", str(root / "pkg"), "--model-id", "s8",
                     "--int8", "--calibrate", str(folder)]) == 0
    return {"root": root, "faces": faces, "float": root / "float.onnx", "int8": root / "int8.onnx",
            "package": root / "pkg"}


def _embed(path, x: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": x})[0]
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_int8_graph_has_per_channel_int8_weights_and_is_smaller(exported) -> None:
    proto = onnx.load(str(exported["int8"]))
    ops = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    arrays = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    weights = [node for node in proto.graph.node if node.op_type == "DequantizeLinear"
               and arrays.get(node.input[0]) is not None and arrays[node.input[0]].dtype == np.int8]
    per_channel = [node for node in weights if arrays[node.input[1]].size > 1]
    assert len(per_channel) == len(weights) >= 15  # every int8 conv (and the head) has one scale per output channel
    # the first FLOAT_CONVS convs keep float weights (read straight from an initializer), every later one is int8
    convs = [node for node in proto.graph.node if node.op_type == "Conv"]
    float_weight = [node.input[1] in arrays and arrays[node.input[1]].dtype == np.float32 for node in convs]
    assert float_weight == [True] * quantize_module.FLOAT_CONVS + [False] * (len(convs) - quantize_module.FLOAT_CONVS)
    size_float, size_int8 = (exported[k].stat().st_size for k in ("float", "int8"))
    assert size_int8 * 2.5 < size_float
    assert [v.name for v in proto.graph.input] == ["input"] and [v.name for v in proto.graph.output] == ["embedding"]


def test_int8_embeds_faces_like_the_float_export(exported) -> None:
    x = calibration_inputs(exported["faces"], 112)
    cosine = np.sum(_embed(exported["float"], x) * _embed(exported["int8"], x), axis=1)
    assert np.median(cosine) > 0.97 and cosine.min() > 0.8, (np.median(cosine), cosine.min())
    # quantisation did change the numbers (the graph really runs in int8)
    assert np.median(cosine) < 1 - 1e-6


def test_insightface_loads_the_int8_file_and_package(exported) -> None:
    by_file = model_zoo.get_model(str(exported["int8"]))
    by_package = model_zoo.get_model(str(exported["package"]), model_task="recognition")
    assert type(by_file).__name__ == type(by_package).__name__ == "ArcFaceONNX"
    assert by_file.input_mean == 127.5 and by_file.input_std == 127.5  # no Sub/Mul names fooled it
    bgr = np.ascontiguousarray(exported["faces"][0][:, :, ::-1])
    feat_file, feat_package = by_file.get_feat(bgr), by_package.get_feat(bgr)
    assert feat_file.shape == (1, 32) and np.allclose(feat_file, feat_package)
    ours = _embed(exported["int8"], calibration_inputs(exported["faces"][:1], 112))
    assert float(np.sum(ours * feat_file / np.linalg.norm(feat_file))) > 0.999  # same preprocessing as ours


@pytest.mark.parametrize(("extra", "message"), [(["--int8"], "--int8 and --calibrate"),
                                                 (["--calibrate", "faces"], "--int8 and --calibrate"),
                                                 (["--int8", "--calibrate", "missing.bin"], "missing.bin")])
def test_int8_flags_fail_with_one_line(exported, capsys, extra, message) -> None:
    code = cli.main(["export", "--model", str(exported["root"] / "student.pt"), "--out",
                     str(exported["root"] / "x.onnx"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (exported["root"] / "x.onnx").exists()


def test_calibration_faces_from_a_rec_are_spread_over_the_file(tmp_path) -> None:
    paths = write_synthetic_dataset(tmp_path, train_ids=6, test_ids=2, images_per_identity=5, pairs=4, seed=0)
    faces = read_faces(tmp_path / "train.rec", 6)
    assert faces.shape == (6, 112, 112, 3) and faces.dtype == np.uint8
    everything = read_faces(tmp_path, 1000)  # the folder holding train.rec
    assert len(everything) == 30 and paths is not None
    picks = [int(np.flatnonzero((everything == f).all(axis=(1, 2, 3)))[0]) for f in faces]
    assert picks == [0, 6, 12, 17, 23, 29]  # evenly spaced: first and last identity both seen


def test_compact_names_keeps_the_function(exported, tmp_path) -> None:
    copy = tmp_path / "c.onnx"
    copy.write_bytes(exported["float"].read_bytes())
    compact_names(copy)
    x = calibration_inputs(exported["faces"][:4], 112)
    np.testing.assert_allclose(_embed(copy, x), _embed(exported["float"], x), atol=1e-6)
    names = [n.name for n in onnx.load(str(copy)).graph.node]
    assert names[0] == "n0" and not any(n.startswith(("Sub", "Mul")) for n in names)
    assert copy.stat().st_size < exported["float"].stat().st_size


def test_a_broken_quantisation_is_refused(exported, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(quantize_module, "MAX_COSINE_DISTANCE", -1.0)  # no graph can pass: the check must fire
    with pytest.raises(ModelLoadError, match="int8 graph disagrees"):
        quantize_int8(exported["float"], tmp_path / "q.onnx", calibration_inputs(exported["faces"][:8], 112))


def test_export_onnx_int8_is_atomic_on_failure(exported, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(quantize_module, "MAX_COSINE_DISTANCE", -1.0)
    model = get_backbone("bridge_student", input_size=16).eval()
    with pytest.raises(ModelLoadError):
        export_onnx(model, tmp_path / "m.onnx", int8_calibration=calibration_inputs(exported["faces"][:8], 112))
    assert list(tmp_path.iterdir()) == []


def test_calibration_inputs_of_a_small_student_are_its_probes_as_the_evaluation_feeds_them(exported) -> None:
    """probe_size: the faces reach the graph as the sweep hands it a 16-px probe: 8-bit 16-px faces enlarged."""
    from insightface_lr.data.pixels import normalize_uint8
    from insightface_lr.eval.probes import lr_probes, to_input_size

    faces = exported["faces"][:5]
    low = torch.from_numpy(lr_probes(faces, 16)).permute(0, 3, 1, 2).contiguous()
    expected = to_input_size(normalize_uint8(low), 112).numpy()
    got = calibration_inputs(faces, 112, probe_size=16)
    assert got.shape == (5, 3, 112, 112) and got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    assert np.abs(got - calibration_inputs(faces, 112)).max() > 0.05  # not the HR faces
    np.testing.assert_array_equal(calibration_inputs(faces, 112, probe_size=112), calibration_inputs(faces, 112))


def test_calibration_batches_are_all_one_size() -> None:
    """ORT's histogram calibrators stack the batches: a shorter last batch is left out, never fed."""
    batches = quantize_module._Batches("input", np.zeros((10, 3, 4, 4), np.float32), 4)
    shapes = [b["input"].shape[0] for b in iter(batches.get_next, None)]
    assert shapes == [4, 4]
    batches.rewind()
    assert batches.get_next()["input"].shape[0] == 4
    small = quantize_module._Batches("input", np.zeros((3, 3, 4, 4), np.float32), 64)
    assert [b["input"].shape[0] for b in iter(small.get_next, None)] == [3]


def test_heldout_pairs_by_identity_and_by_bin_pairs() -> None:
    faces = np.arange(12, dtype=np.uint8).reshape(12, 1, 1, 1) * np.ones((1, 2, 2, 3), np.uint8)
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 3, 4, 5, 5, 5])  # identities 0 and 5 held out (every 5th of 0..5)
    calibrate, held, issame = heldout_pairs(faces, labels, every=5, max_pairs=100, seed=0)
    assert sorted(calibrate[:, 0, 0, 0]) == [2, 3, 4, 5, 6, 7, 8]
    pairs = held[:, 0, 0, 0].reshape(-1, 2)
    same = {tuple(sorted(p)) for p in pairs[issame]}
    assert same == {(0, 1), (9, 10), (9, 11), (10, 11)} and len(pairs) == 8  # every genuine pair, as many impostors
    assert list(issame) == [True, False] * 4  # alternating: every fold of the accuracy holds both kinds
    assert all(labels[a] != labels[b] and {labels[a], labels[b]} <= {0, 5} for a, b in pairs[~issame])
    # a .bin's pairs (rows 2i, 2i+1): the last fifth of the pairs is held out
    cal, held, flags = heldout_pairs(faces[:10], issame=np.array([1, 0, 1, 0, 1], bool))
    assert len(cal) == 8 and list(held[:, 0, 0, 0]) == [8, 9] and list(flags) == [True]
    assert heldout_pairs(faces)[1:] == (None, None)  # unlabelled faces: nothing to check against


def test_export_reports_the_heldout_accuracy_change_and_refuses_beyond_the_bound(exported, capsys) -> None:
    root, student = exported["root"], exported["root"] / "student.pt"
    args = ["export", "--model", str(student), "--out", str(root / "checked.onnx"), "--int8", "--calibrate",
            str(root / "faces")]
    assert cli.main(args) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("int8: accuracy on ") and "held-out pairs of the calibration faces: float32 " in line
    se = re.search(r"standard error (\d+\.\d\d) \(refused below -0\.5 - (\d+\.\d\d): --int8-max-drop plus", line)
    assert se and se.group(1) == se.group(2), line
    # a bound no graph can meet (it would have to gain 1000 points): refused in one line, nothing written
    code = cli.main([*args[:4], str(root / "refused.onnx"), *args[5:], "--int8-max-drop", "-1000"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "more than --int8-max-drop -1000 plus the check's standard error" in err[0], err
    assert not (root / "refused.onnx").exists() and not list(root.glob(".refused*"))


def test_the_export_flag_default_is_the_quantiser_default() -> None:
    from insightface_lr.commands import export
    from insightface_lr.models import quantize

    assert export.MAX_ACCURACY_DROP == quantize.MAX_ACCURACY_DROP
