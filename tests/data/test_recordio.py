"""RecordIO: real-mxnet fixtures read exactly and re-written byte for byte; escapes; corrupt input."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from insightface_lr.data.image_codec import decode_image
from insightface_lr.data.recordio import (
    IRHeader,
    RecordReader,
    RecordWriter,
    frame,
    pack,
    unpack,
    write_rec_dataset,
)
from insightface_lr.errors import DataFormatError

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "mxnet"
EXPECTED = json.loads((FIX / "expected.json").read_text())
M = bytes.fromhex("0a23d7ce")  # 0xced7230a little-endian


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def word(cflag: int, length: int) -> bytes:
    return struct.pack("<I", cflag << 29 | length)


@pytest.mark.parametrize("stem", ["train", "misc"])
def test_mxnet_fixture_read_exactly(stem: str) -> None:
    reader = RecordReader(FIX / f"{stem}.rec")
    assert reader.keys == [e["key"] for e in EXPECTED[stem]]
    for e in EXPECTED[stem]:
        assert reader.offset_of(e["key"]) == e["offset"]
        record = reader.read_idx(e["key"])
        assert (len(record), sha(record)) == (e["record_len"], e["record_sha256"])
        header, payload = unpack(record)
        want = e["header"]
        label = list(header.label) if header.flag else header.label
        assert (header.flag, label, header.id, header.id2) == (want["flag"], want["label"], want["id"], want["id2"])
        assert sha(payload) == e["payload_sha256"]
        if "pixels" in e:  # Pillow decodes to the same RGB pixels as mx.image.imdecode
            rgb = decode_image(payload)
            assert list(rgb.shape) == e["pixels"]["shape"] and sha(rgb.tobytes()) == e["pixels"]["sha256"]


def test_writer_reproduces_mxnet_bytes(tmp_path: Path) -> None:
    records = [(k, RecordReader(FIX / "misc.rec").read_idx(k)) for k in (10, 11, 12, 3)]
    with RecordWriter(tmp_path / "misc.rec", tmp_path / "misc.idx") as writer:
        for key, record in records:
            header, payload = unpack(record)
            assert pack(header, payload) == record  # pack/unpack round trip on mxnet's own records
            writer.write_idx(key, record)
    assert (tmp_path / "misc.rec").read_bytes() == (FIX / "misc.rec").read_bytes()
    assert (tmp_path / "misc.idx").read_bytes() == (FIX / "misc.idx").read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["misc.idx", "misc.rec"]  # no temporary files left


def test_write_rec_dataset_reproduces_insightface_layout(tmp_path: Path) -> None:
    reader = RecordReader(FIX / "train.rec")
    payloads = [unpack(reader.read_idx(k))[1] for k in range(1, 7)]
    rec = write_rec_dataset(tmp_path, payloads, EXPECTED["train_labels"], image_size=(16, 16))
    assert rec == tmp_path / "train.rec"
    for name in ("train.rec", "train.idx", "property"):
        assert (tmp_path / name).read_bytes() == (FIX / name).read_bytes(), name


def test_write_rec_dataset_sorts_labels_stably_and_validates(tmp_path: Path) -> None:
    write_rec_dataset(tmp_path, [b"a", b"b", b"c", b"d"], [2, 0, 2, 0])
    reader = RecordReader(tmp_path / "train.rec")
    got = [unpack(reader.read_idx(k)) for k in range(1, 5)]
    assert [(h.label, p) for h, p in got] == [(0.0, b"b"), (0.0, b"d"), (2.0, b"a"), (2.0, b"c")]
    assert unpack(reader.read_idx(0))[0] == IRHeader(2, (5.0, 7.0), 0, 1)  # two identity records, 5 and 6
    assert [unpack(reader.read_idx(k))[0].label for k in (5, 6)] == [(1.0, 3.0), (3.0, 5.0)]
    assert (tmp_path / "property").read_text() == "3,112,112\n"
    with pytest.raises(DataFormatError, match="labels"):
        write_rec_dataset(tmp_path / "x", [b"a"], [0, 1])
    with pytest.raises(DataFormatError, match="labels"):
        write_rec_dataset(tmp_path / "y", [b"a"], [-1])
    assert not (tmp_path / "x" / "train.rec").exists()


def test_pack_unpack_by_hand() -> None:
    assert pack(IRHeader(5, 3, 7, 1), b"xy") == struct.pack("<IfQQ", 0, 3.0, 7, 1) + b"xy"  # numeric: flag 0
    multi = pack(IRHeader(0, [1, 2.5], 9, 0), b"z")
    assert multi == struct.pack("<IfQQ", 2, 0.0, 9, 0) + struct.pack("<2f", 1.0, 2.5) + b"z"
    assert unpack(multi) == (IRHeader(2, (1.0, 2.5), 9, 0), b"z")
    with pytest.raises(DataFormatError, match="shorter than the 24-byte"):
        unpack(b"\0" * 23)
    with pytest.raises(DataFormatError, match="flag 3"):
        unpack(struct.pack("<IfQQ", 3, 0.0, 0, 0) + b"\0" * 8)
    with pytest.raises(DataFormatError):
        pack(IRHeader(0, 1, -1, 0), b"")


def test_frame_layout_by_hand() -> None:
    assert frame(b"") == M + word(0, 0)
    assert frame(b"abc") == M + word(0, 3) + b"abc\0"
    assert frame(M) == M + word(1, 0) + M + word(3, 0)  # an escaped magic word leaves two empty parts
    assert frame(b"a" + M + b"bcd") == M + word(0, 8) + b"a" + M + b"bcd"  # unaligned: kept as data
    assert frame(b"abcd" + M + M + b"ef") == M + word(1, 4) + b"abcd" + M + word(2, 0) + M + word(3, 2) + b"ef\0\0"

    class Huge(bytes):
        def __len__(self) -> int:  # the guard must fire before any 512 MiB buffer exists
            return 1 << 29

    with pytest.raises(DataFormatError, match="2\\*\\*29"):
        frame(Huge())


def test_hand_made_continuation_records_are_joined(tmp_path: Path) -> None:
    rec = tmp_path / "c.rec"
    first = M + word(1, 4) + b"abcd" + M + word(2, 4) + b"efgh" + M + word(3, 2) + b"ij\0\0"
    rec.write_bytes(first + M + word(0, 1) + b"k\0\0\0")
    (tmp_path / "c.idx").write_text(f"0\t0\n1\t{len(first)}\n")
    reader = RecordReader(rec)
    joined = b"abcd" + M + b"efgh" + M + b"ij"
    assert reader.read_idx(0) == joined and reader.read_idx(1) == b"k"
    assert frame(joined) == first  # and our writer produces that very layout
    assert [r for _, r in reader.scan()] == [joined, b"k"]


def test_large_record_round_trip(tmp_path: Path) -> None:
    big = bytearray(os.urandom(3_000_001))
    for pos in (0, 1024, 1028, 77777, 2_999_996):  # aligned and unaligned magic words inside
        big[pos:pos + 4] = M
    with RecordWriter(tmp_path / "b.rec", tmp_path / "b.idx") as writer:
        writer.write_idx(4, b"small")
        writer.write_idx(5, bytes(big))
        writer.write_idx(6, b"after")
    reader = RecordReader(tmp_path / "b.rec")
    assert reader.read_idx(5) == bytes(big) and reader.read_idx(6) == b"after"


@pytest.mark.parametrize("stem", ["train", "misc"])
def test_missing_idx_is_rebuilt_by_scan(tmp_path: Path, stem: str) -> None:
    shutil.copy(FIX / f"{stem}.rec", tmp_path)
    reader = RecordReader(tmp_path / f"{stem}.rec", write_index=True)  # keys from IRHeader ids
    assert reader.keys == [e["key"] for e in EXPECTED[stem]]
    assert (tmp_path / f"{stem}.idx").read_bytes() == (FIX / f"{stem}.idx").read_bytes()


def test_rebuilt_index_falls_back_to_ordinals(tmp_path: Path) -> None:
    with RecordWriter(tmp_path / "o.rec") as writer:  # records too short for an IRHeader
        for record in (b"x", b"yy", b""):
            writer.write(record)
    reader = RecordReader(tmp_path / "o.rec")
    assert reader.keys == [0, 1, 2] and reader.read_idx(1) == b"yy"
    assert not (tmp_path / "o.idx").exists()  # written only on request


def test_writer_is_atomic(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), RecordWriter(tmp_path / "a.rec", tmp_path / "a.idx") as writer:
        writer.write_idx(0, b"partial")
        raise RuntimeError("crash mid-write")
    assert os.listdir(tmp_path) == []
    with pytest.raises(DataFormatError, match="key 1 written twice"), RecordWriter(
            tmp_path / "a.rec", tmp_path / "a.idx") as writer:
        writer.write_idx(1, b"x")
        writer.write_idx(1, b"y")
    assert os.listdir(tmp_path) == []


def _corrupt(tmp_path: Path, data: bytes, idx: str | None = None) -> Path:
    rec = tmp_path / "bad.rec"
    rec.write_bytes(data)
    if idx is not None:
        (tmp_path / "bad.idx").write_text(idx)
    return rec


@pytest.mark.parametrize(
    ("data", "idx", "message"),
    [
        (b"\0" * 16, "0\t0\n", "no RecordIO magic at byte offset 0"),
        (M + word(0, 5) + b"abcdef\0\0" + M + word(2, 0), "0\t0\n1\t16\n", "continuation flag 2 at byte offset 16"),
        (M + struct.pack("<I", 0xFFFFFFFF) + b"\0" * 8, "0\t0\n", "continuation flag 7 at byte offset 0"),
        (M + word(0, (1 << 29) - 1) + b"\0" * 8, "0\t0\n", "claims 536870911 bytes but the file ends at byte 16"),
        (M + word(0, 8) + b"abcd", "0\t0\n", "claims 8 bytes"),
        (M + word(0, 4) + b"abcd" + M, None, "truncated record header at byte offset 12"),  # found by scan
        (M + word(0, 4) + b"abcd" * 2, "0\t4\n", "no RecordIO magic at byte offset 4"),
        (M + word(1, 4) + b"abcd", "0\t0\n", "truncated record header at byte offset 12"),
    ],
)
def test_corrupt_records_name_file_and_offset(tmp_path: Path, data: bytes, idx: str | None, message: str) -> None:
    rec = _corrupt(tmp_path, data, idx)
    with pytest.raises(DataFormatError, match=message) as info:
        reader = RecordReader(rec)
        for key in reader.keys:
            reader.read_idx(key)
    assert str(rec) in str(info.value)


@pytest.mark.parametrize(
    ("idx", "message"),
    [
        ("0\t0\n1\t999\n", "line 2: byte offset 999 is outside"),
        ("0\tzero\n", "line 1: expected 'integer key<TAB>byte offset'"),
        ("0\t0\t0\n", "line 1"),
        ("0\t0\n0\t0\n", "key 0 appears twice"),
    ],
)
def test_corrupt_index_files(tmp_path: Path, idx: str, message: str) -> None:
    rec = _corrupt(tmp_path, M + word(0, 0) + M + word(0, 0), idx)
    with pytest.raises(DataFormatError, match=message):
        RecordReader(rec)


def test_truncated_fixture_and_unknown_key(tmp_path: Path) -> None:
    data = (FIX / "train.rec").read_bytes()
    cut = EXPECTED["train"][2]["offset"] + 100  # inside record 3
    rec = _corrupt(tmp_path, data[:cut])
    shutil.copy(FIX / "train.idx", tmp_path / "bad.idx")
    with pytest.raises(DataFormatError, match="outside"):  # later offsets lie beyond the truncated file
        RecordReader(rec)
    with pytest.raises(DataFormatError, match=f"record part at byte offset {cut - 100} claims"):
        list(RecordReader(rec, tmp_path / "none.idx").scan())
    with pytest.raises(DataFormatError, match="key 42 is not in the index"):
        RecordReader(FIX / "train.rec").read_idx(42)
    with pytest.raises(DataFormatError, match="not found"):
        RecordReader(tmp_path / "missing.rec")


def test_reader_pickles_without_handle_and_reopens_after_fork() -> None:
    reader = RecordReader(FIX / "train.rec")
    first = reader.read_idx(1)
    clone = pickle.loads(pickle.dumps(reader))
    assert clone._fd is None and clone.read_idx(1) == first
    clone._pid = -1  # as if inherited by a forked worker: must reopen, not reuse
    old_fd = clone._fd
    assert clone.read_idx(2) == reader.read_idx(2) and clone._pid == os.getpid() and clone._fd != old_fd
    os.close(old_fd)


_VALID = (FIX / "misc.rec").read_bytes()


def _fuzz_reader(data: bytes, idx: bytes | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rec = Path(tmp) / "f.rec"
        rec.write_bytes(data)
        if idx is not None:
            (Path(tmp) / "f.idx").write_bytes(idx)
        try:
            reader = RecordReader(rec)
            for key in reader.keys:
                unpack(reader.read_idx(key))
            list(reader.scan())
        except DataFormatError:
            pass


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300), idx=st.none() | st.binary(max_size=40))
def test_fuzz_random_bytes_only_raise_data_format_error(data: bytes, idx: bytes | None) -> None:
    _fuzz_reader(data, idx)


@settings(max_examples=200, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), min_size=1, max_size=4),
       cut=st.integers(0, len(_VALID)), keep_idx=st.booleans())
def test_fuzz_mutated_fixture_only_raises_data_format_error(edits, cut: int, keep_idx: bool) -> None:
    data = bytearray(_VALID)
    for pos, value in edits:
        data[pos] = value
    _fuzz_reader(bytes(data[:cut]), (FIX / "misc.idx").read_bytes() if keep_idx else None)


def test_zero_byte_index_beside_records_is_blamed_on_the_index(tmp_path) -> None:
    """An empty .idx would read as a set of 0 records (later blamed on batch_size): name the .idx instead."""
    from insightface_lr.data.recordio import RecordReader, RecordWriter

    with RecordWriter(tmp_path / "a.rec", tmp_path / "a.idx") as writer:
        writer.write_idx(0, b"record")
    (tmp_path / "a.idx").write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"a\.idx: index file lists no record but a\.rec holds \d+ bytes"):
        RecordReader(tmp_path / "a.rec")
    (tmp_path / "a.idx").unlink()  # what the message advises: the records are found by a scan
    reader = RecordReader(tmp_path / "a.rec")
    assert reader.index_rebuilt and reader.read_idx(0) == b"record"
    (tmp_path / "b.rec").write_bytes(b"")  # an empty set with an empty index is consistent, not an error
    (tmp_path / "b.idx").write_bytes(b"")
    assert len(RecordReader(tmp_path / "b.rec")) == 0
