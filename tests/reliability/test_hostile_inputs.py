"""Hostile files: image bytes, .rec/.idx datasets, pickled checkpoints/teachers and ONNX graphs.

Each reader must fail with one of our documented exceptions (DataFormatError / ModelLoadError), refuse a
size field before allocating what it claims, and never run code from a file. The byte-level fuzzing of the
bare .rec and .bin readers lives in tests/data/; here the layers on top are fuzzed (image decoding, the
dataset that combines index, header and decoder) and the model-loading paths are attacked.
"""

from __future__ import annotations

import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from insightface_lr.data.datasets import RecordDataset
from insightface_lr.data.image_codec import MAX_PIXELS, decode_image, encode_jpeg, encode_png
from insightface_lr.data.recordio import IRHeader, RecordWriter, pack
from insightface_lr.errors import DataFormatError, ModelLoadError

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "mxnet"
_RNG = np.random.default_rng(0)
_FACE = _RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)
_VALID_IMAGES = {"jpeg": encode_jpeg(_FACE), "png": encode_png(_FACE)}


# ----- image decoding ---------------------------------------------------------------------------------
def _decode_or_refuse(data: bytes) -> None:
    """Either an H x W x 3 uint8 array within the pixel cap, or DataFormatError; anything else fails."""
    try:
        out = decode_image(data, source="fuzz.jpg")
    except DataFormatError as exc:
        assert "fuzz.jpg" in str(exc)
        return
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert out.shape[0] * out.shape[1] <= MAX_PIXELS


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_decode_or_raise_data_format_error(data: bytes) -> None:
    _decode_or_refuse(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(_VALID_IMAGES)), data=st.data())
def test_mutated_images_decode_or_raise_data_format_error(kind: str, data) -> None:
    blob = bytearray(_VALID_IMAGES[kind])
    edits = data.draw(st.lists(st.tuples(st.integers(0, len(blob) - 1), st.integers(0, 255)), max_size=6))
    for pos, value in edits:
        blob[pos] = value
    cut = data.draw(st.integers(0, len(blob)))
    _decode_or_refuse(bytes(blob[:cut]))


def _png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG header announcing ``width x height`` RGB, followed by a few bytes of pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A real 8x8 JPEG whose SOF0 frame header is patched to announce ``width x height``."""
    blob = bytearray(encode_jpeg(np.zeros((8, 8, 3), np.uint8)))
    sof = blob.find(b"\xff\xc0")
    blob[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(blob)


@pytest.mark.parametrize("make", [_png_claiming, _jpeg_claiming], ids=["png", "jpeg"])
@pytest.mark.parametrize("side", [4097 + 1000, 60000])  # above our cap; far above Pillow's bomb limit
def test_image_claiming_huge_dimensions_is_refused(make, side: int) -> None:
    with pytest.raises(DataFormatError, match="hostile.png"):
        decode_image(make(side, side), source="hostile.png")


def test_pixel_cap_is_checked_from_the_header_alone() -> None:
    data = _png_claiming(40, 40)  # would decode (truncated pixel data) but is over a 1000-pixel cap
    with pytest.raises(DataFormatError, match=r"40 x 40 pixels is outside 1 \.\. 1000"):
        decode_image(data, max_pixels=1000)


_BOUNDED_MEMORY_SCRIPT = r"""
import resource, sys, numpy as np
sys.path.insert(0, sys.argv[1])
import test_hostile_inputs as t
from insightface_lr.errors import DataFormatError
vm = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
limit = vm + (1 << 30)  # 1 GiB more than the interpreter already maps: each claim below needs far more
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
refused = 0
for blob in (t._png_claiming(60000, 60000), t._jpeg_claiming(65000, 65000), t._png_claiming(5100, 5100)):
    try:
        t.decode_image(blob)
    except DataFormatError:
        refused += 1
for label in (1e12, 2.0 ** 40):
    try:
        t._dataset_with_header(sys.argv[2], label)
    except DataFormatError:
        refused += 1
print("refused", refused)
"""


def test_size_claims_are_refused_before_allocation(tmp_path: Path) -> None:
    """Under a 1 GiB address-space limit, files claiming tens of GB fail with DataFormatError, not
    MemoryError: the claim is checked before anything of that size is allocated."""
    result = subprocess.run([sys.executable, "-c", _BOUNDED_MEMORY_SCRIPT, str(Path(__file__).parent),
                             str(tmp_path)], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "refused 5"


# ----- .rec/.idx datasets ------------------------------------------------------------------------------
def _dataset_with_header(folder: str | Path, label: float) -> RecordDataset:
    """A train.rec whose InsightFace header (record 0) announces image keys up to ``label - 1``."""
    folder = Path(folder)
    with RecordWriter(folder / "train.rec", folder / "train.idx") as writer:
        writer.write_idx(0, pack(IRHeader(2, (label, 3.0), 0, 0), b""))
        writer.write_idx(1, pack(IRHeader(0, 0.0, 1, 0), _VALID_IMAGES["jpeg"]))
    return RecordDataset(folder)


@pytest.mark.parametrize(("label", "message"), [
    (float("inf"), "header label inf is not a record key"),
    (float("nan"), "header label nan is not a record key"),
    (-5.0, "header label -5.0 is not a record key"),
    (2.5, "header label 2.5 is not a record key"),
    (1e12, "announces image key 999999995903"),  # float32 rounding of 1e12, minus one
])
def test_hostile_header_record_is_a_data_format_error(tmp_path: Path, label: float, message: str) -> None:
    with pytest.raises(DataFormatError, match=message):
        _dataset_with_header(tmp_path, label)


@pytest.mark.parametrize("label", [float("nan"), float("inf"), -1.0])
def test_hostile_image_label_is_a_data_format_error(tmp_path: Path, label: float) -> None:
    with RecordWriter(tmp_path / "train.rec", tmp_path / "train.idx") as writer:
        writer.write_idx(0, pack(IRHeader(0, label, 0, 0), _VALID_IMAGES["jpeg"]))
    with pytest.raises(DataFormatError, match=r"train.rec\[key 0\]: header label"):
        RecordDataset(tmp_path).labels  # noqa: B018 - the property reads every header


_IDX_LINES = (FIX / "train.idx").read_text().splitlines()
_REC_SIZE = (FIX / "train.rec").stat().st_size


@settings(max_examples=80, deadline=None)
@given(offsets=st.lists(st.one_of(st.integers(0, _REC_SIZE + 64), st.integers(-(2**70), 2**70)),
                        min_size=len(_IDX_LINES), max_size=len(_IDX_LINES)))
def test_idx_with_absurd_offsets_reads_right_records_or_refuses(offsets: list[int]) -> None:
    """Any offsets (negative, huge, mid-record): DataFormatError, or every record that is read is a real one."""
    truth = RecordDataset(FIX / "train.rec")
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(FIX / "train.rec", Path(tmp) / "train.rec")
        keys = [line.split("\t")[0] for line in _IDX_LINES]
        (Path(tmp) / "train.idx").write_text("".join(f"{k}\t{o}\n" for k, o in zip(keys, offsets, strict=True)))
        real_records = [truth.reader.read_idx(int(k)) for k in keys]
        try:
            dataset = RecordDataset(Path(tmp) / "train.rec")
            for i in range(len(dataset)):
                image, label = dataset[i]
                assert dataset.reader.read_idx(dataset.keys[i]) in real_records  # a boundary, never torn
                assert image.dtype == torch.uint8 and isinstance(label, int)
        except DataFormatError:
            pass


_TRAIN_REC = (FIX / "train.rec").read_bytes()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.integers(0, len(_TRAIN_REC) - 1), st.integers(0, 255)), min_size=1, max_size=6),
       cut=st.integers(0, len(_TRAIN_REC)), keep_idx=st.booleans())
def test_mutated_training_set_only_raises_data_format_error(edits, cut: int, keep_idx: bool) -> None:
    """Header, labels, index and JPEG payloads mutated together, read as the trainer reads them."""
    data = bytearray(_TRAIN_REC)
    for pos, value in edits:
        data[pos] = value
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "train.rec").write_bytes(bytes(data[:cut]))
        if keep_idx:
            shutil.copy(FIX / "train.idx", Path(tmp) / "train.idx")
        try:
            dataset = RecordDataset(Path(tmp) / "train.rec")
            assert dataset.num_classes >= 0 and len(dataset.labels) == len(dataset)
            for i in range(len(dataset)):
                image, _label = dataset[i]
                assert image.dtype == torch.uint8 and image.shape[0] == 3
        except DataFormatError:
            pass


# ----- pickled payloads in .pt files -------------------------------------------------------------------
class _Payload:
    """Unpickling this runs ``os.mkdir(marker)``: the marker's existence proves code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _poisoned_files(folder: Path) -> dict[str, Path]:
    """.pt files whose pickle carries a ``__reduce__`` payload, in the shapes people ship weights in."""
    marker = folder / "PWNED"
    weights = {"conv.weight": torch.zeros(2, 2)}
    files = {
        "top_level.pt": _Payload(marker),
        "inside_state_dict.pth": {**weights, "evil": _Payload(marker)},
        "inside_checkpoint.pt": {"state_dict_backbone": weights, "step": 3, "extra": [_Payload(marker)]},
        "student_format.pt": {"format": "insightface-lr-student", "network": "r18", "kwargs": {},
                              "state_dict": weights, "meta": {"x": _Payload(marker)}},
    }
    out = {}
    for name, obj in files.items():
        torch.save(obj, folder / name)
        out[name] = folder / name
    torch.save({"evil": _Payload(marker)}, folder / "legacy_format.pt", _use_new_zipfile_serialization=False)
    (folder / "plain_pickle.pt").write_bytes(pickle.dumps({"evil": _Payload(marker)}))
    out["legacy_format.pt"], out["plain_pickle.pt"] = folder / "legacy_format.pt", folder / "plain_pickle.pt"
    return out


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory) -> dict[str, Path]:
    return _poisoned_files(tmp_path_factory.mktemp("poisoned"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("name", ["top_level.pt", "inside_state_dict.pth", "inside_checkpoint.pt",
                                  "student_format.pt", "legacy_format.pt", "plain_pickle.pt"])
def test_reduce_payload_is_refused_by_every_loader(poisoned: dict[str, Path], name: str) -> None:
    from insightface_lr.models.teacher import load_student, load_teacher
    from insightface_lr.train.checkpoint import load_checkpoint

    path = poisoned[name]
    for load in (load_teacher, load_checkpoint, load_student):
        with pytest.raises(ModelLoadError, match=name.replace(".", r"\.")):
            load(path)
    assert not (path.parent / "PWNED").exists(), "the pickle payload ran"


def test_payload_would_run_under_plain_pickle(poisoned: dict[str, Path], tmp_path: Path) -> None:
    """Guard against a vacuous suite: the same bytes DO execute when loaded unsafely."""
    marker = poisoned["plain_pickle.pt"].parent / "PWNED"
    pickle.loads(poisoned["plain_pickle.pt"].read_bytes())  # the unsafe path the loaders must not take
    assert marker.is_dir()
    marker.rmdir()


# ----- ONNX graphs that are not recognition models -------------------------------------------------------
def _onnx_graph(path: Path, in_shape: list, out_shape: list, op: str = "Identity", n_inputs: int = 1) -> Path:
    import onnx
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, in_shape) for i in range(n_inputs)]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)
    node = helper.make_node(op, [i.name for i in inputs][:1 if op == "Identity" else 2], ["y"])
    model = helper.make_model(helper.make_graph([node], "not_a_face_model", inputs, [output]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


NOT_RECOGNITION = {
    "vector_input.onnx": (["N"], ["N"], "Identity", 1),
    "image_to_image.onnx": (["N", 3, 112, 112], ["N", 3, 112, 112], "Identity", 1),
    "two_inputs.onnx": (["N", 3, 112, 112], ["N", 3, 112, 112], "Add", 2),
}


@pytest.fixture(scope="module")
def bad_onnx(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("onnx")
    graphs = {name: _onnx_graph(folder / name, *spec) for name, spec in NOT_RECOGNITION.items()}
    (folder / "garbage.onnx").write_bytes(b"\x08\x07garbage" * 10)
    graphs["garbage.onnx"] = folder / "garbage.onnx"
    return graphs


@pytest.mark.parametrize("name", [*NOT_RECOGNITION, "garbage.onnx"])
def test_load_teacher_refuses_non_recognition_onnx(bad_onnx: dict[str, Path], name: str) -> None:
    from insightface_lr.models.teacher import load_teacher

    expected = "onnxruntime cannot load" if name == "garbage.onnx" else "not a face recognition model"
    with pytest.raises(ModelLoadError, match=expected) as info:
        load_teacher(bad_onnx[name])
    assert name in str(info.value)


def _cli(args: list[str], capsys) -> tuple[int, str]:
    from insightface_lr.cli import main

    code = main(args)
    return code, capsys.readouterr().err


def test_eval_and_export_refuse_non_recognition_onnx(bad_onnx, tiny_data, tmp_path, capsys) -> None:
    from insightface_lr.cli import COMMANDS

    path = str(bad_onnx["vector_input.onnx"])
    if "eval" in COMMANDS:
        code, err = _cli(["eval", "--model", path, "--bins", str(tiny_data / "test.bin"), "--sizes", "16",
                          "--out", str(tmp_path / "report"), "--quiet", "--no-plots"], capsys)
        assert code == 2 and "vector_input.onnx" in err and "not a face recognition model" in err
        assert len(err.strip().splitlines()) == 1
    # export takes a torch model: an .onnx given as --model is refused as a non-PyTorch file, by name
    code, err = _cli(["export", "--model", path, "--out", str(tmp_path / "x.onnx")], capsys)
    assert code == 2 and "vector_input.onnx" in err and "not a readable PyTorch weights file" in err
    assert not (tmp_path / "x.onnx").exists()


def test_train_refuses_non_recognition_onnx_teacher(bad_onnx, tiny_data, plugin_dir, train_args, tmp_path,
                                                    capsys, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(plugin_dir))
    path = bad_onnx["image_to_image.onnx"]
    code, err = _cli(train_args(tiny_data, tmp_path / "out", "--distill", "aird", "--teacher", str(path),
                                "--max-steps", "1"), capsys)
    assert code == 2 and "image_to_image.onnx" in err and "expected one [N,D] embedding" in err


def _face_like_onnx(path: Path) -> bytes:
    """A graph shaped like a recognition model: [N,3,112,112] -> global pool -> [N,3] 'embedding'."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("inputAAAA", TensorProto.FLOAT, ["N", 3, 112, 112])
    y = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 3])
    nodes = [helper.make_node("GlobalAveragePool", ["inputAAAA"], ["pooled"], name="nodeBBBB"),
             helper.make_node("Flatten", ["pooled"], ["embedding"], name="flatten")]
    model = helper.make_model(helper.make_graph(nodes, "face", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path.read_bytes()


@pytest.mark.parametrize("field", [b"inputAAAA", b"nodeBBBB"])
def test_onnx_with_non_utf8_names_is_a_model_load_error(tmp_path: Path, field: bytes) -> None:
    """Found by scripts/soak.py: onnxruntime accepts a graph whose names are not UTF-8, then reading them
    raised UnicodeDecodeError / TypeError out of load_teacher."""
    from insightface_lr.models.teacher import load_teacher

    good = _face_like_onnx(tmp_path / "good.onnx")
    assert load_teacher(tmp_path / "good.onnx").embedding_size == 3  # the unmutated graph is accepted
    (tmp_path / "bad.onnx").write_bytes(good.replace(field, b"\x96" * len(field)))
    with pytest.raises(ModelLoadError, match="bad.onnx"):
        load_teacher(tmp_path / "bad.onnx")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_onnx_teacher_only_raises_model_load_error(tmp_path: Path, data) -> None:
    from insightface_lr.models.teacher import load_teacher

    blob = bytearray(_face_like_onnx(tmp_path / "seed.onnx"))
    for pos, value in data.draw(st.lists(st.tuples(st.integers(0, len(blob) - 1), st.integers(0, 255)),
                                         min_size=1, max_size=4)):
        blob[pos] = value
    (tmp_path / "m.onnx").write_bytes(bytes(blob[:data.draw(st.integers(0, len(blob)))]))
    try:
        teacher = load_teacher(tmp_path / "m.onnx")
    except ModelLoadError:
        return
    assert teacher.input_size > 0 and teacher.embedding_size > 0  # a mutation that kept the graph valid
