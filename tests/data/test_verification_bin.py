"""Verification .bin: real InsightFace-style files read exactly; hostile pickles refused, never run."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from insightface_lr.data.image_codec import encode_jpeg, encode_png
from insightface_lr.data.verification_bin import load_bin_images, read_bin, write_bin
from insightface_lr.errors import DataFormatError

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "mxnet"
EXPECTED = json.loads((FIX / "expected.json").read_text())["bin"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _images(n: int = 4) -> list[bytes]:
    rng = np.random.default_rng(0)
    return [encode_jpeg(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in range(n)]


def py2_pickle(bins: list[bytes], issame: list[bool]) -> bytes:
    """What Python 2's cPickle (protocol 2) writes for (list of str, list of bool), opcode by opcode."""
    out = [b"\x80\x02", b"]", b"("]  # PROTO 2, EMPTY_LIST, MARK
    for b in bins:  # a Python 2 str: SHORT_BINSTRING or BINSTRING
        out.append(b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b)
    out += [b"e", b"]", b"("] + [b"\x88" if x else b"\x89" for x in issame]  # APPENDS; NEWTRUE/NEWFALSE
    return b"".join(out + [b"e", b"\x86", b"."])  # APPENDS, TUPLE2, STOP


@pytest.mark.parametrize("name", ["pairs.bin", "pairs_proto2.bin"])
def test_mxnet_era_fixtures_read_exactly(name: str) -> None:
    bins, issame = read_bin(FIX / name)
    assert issame == EXPECTED["issame"]
    assert [sha(b) for b in bins] == [e["bytes_sha256"] for e in EXPECTED["images"]]
    images, flags = load_bin_images(FIX / name, image_size=16)
    assert images.dtype == np.uint8 and images.shape == (4, 16, 16, 3) and flags.tolist() == EXPECTED["issame"]
    assert [sha(img.tobytes()) for img in images] == [e["sha256"] for e in EXPECTED["images"]]  # mx RGB


def test_python2_pickle_with_byte_strings(tmp_path: Path) -> None:
    bins = _images(4) + [b"\xff" * 300, b"\xd8" * 10]  # both BINSTRING and SHORT_BINSTRING
    (tmp_path / "py2.bin").write_bytes(py2_pickle(bins, [True, False, True]))
    assert read_bin(tmp_path / "py2.bin") == (bins, [True, False, True])


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_arrays_and_numpy_bools(tmp_path: Path, protocol: int) -> None:
    bins = _images(4)
    arrays = [np.frombuffer(b, np.uint8).reshape(-1, 1) for b in bins]  # like cv2.imencode's output
    for issame in ([np.bool_(True), np.bool_(False)], np.array([True, False])):
        (tmp_path / "np.bin").write_bytes(pickle.dumps((arrays, issame), protocol=protocol))
        assert read_bin(tmp_path / "np.bin") == (bins, [True, False])


def test_write_bin_round_trip_and_atomic(tmp_path: Path) -> None:
    bins = _images(2)
    out = write_bin(tmp_path / "w.bin", bins, [np.bool_(True)])
    data = out.read_bytes()
    assert data[:2] == b"\x80\x04" and pickle.loads(data) == (bins, [True])  # our own file: trusted here
    assert read_bin(out) == (bins, [True]) and os.listdir(tmp_path) == ["w.bin"]
    with pytest.raises(DataFormatError, match="3 images for 1 pairs"):
        write_bin(tmp_path / "bad.bin", bins + bins[:1], [True])
    assert os.listdir(tmp_path) == ["w.bin"]


class _SystemCall:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Exec:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("payload", [_SystemCall, _Exec])
def test_reduce_payload_is_refused_and_not_run(tmp_path: Path, payload) -> None:
    marker = tmp_path / "pwned"
    evil = payload(f"touch {marker}") if payload is _SystemCall else payload(marker)
    for obj in ((_images(2), [evil]), evil):
        (tmp_path / "evil.bin").write_bytes(pickle.dumps(obj, protocol=2))
        # protocol 2 names Python 3's builtins module '__builtin__'; os.system lives in posix (nt on Windows)
        with pytest.raises(DataFormatError, match=r"refusing to load global '(posix\.system|nt\.system|"
                                                  r"__builtin__\.exec)'"):
            read_bin(tmp_path / "evil.bin")
        assert not marker.exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\x02cnumpy\ndtype\nX\x01\x00\x00\x00O\x85R.", "numpy dtype 'O'"),  # object arrays
        (b"\x80\x02cnumpy\nndarray\nK\x05\x85R.", "cannot unpickle"),  # ndarray is not callable
        (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00utf-8\x86R.", "encoding 'utf-8'"),
        (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncbuiltins\nlist\n)K\x00\x87R.", "builtins.list"),
        (b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"abc.", "not a valid pickle near byte offset"),
        (pickle.dumps(([b"a", b"b"], [True], "extra")), "2-tuple"),
        (pickle.dumps(([b"a", b"b", b"c"], [True])), "3 images for 1 pairs"),
        (pickle.dumps(([b"a", 7], [True])), "image 1 is int"),
        (pickle.dumps(([b"a", b"b"], ["yes"])), "only booleans"),
        (pickle.dumps((b"ab", [True])), "bins is bytes"),
        (pickle.dumps(([b"a", b"b"], [True]))[:-5], "not a valid pickle"),
        (b"", "not a valid pickle"),
    ],
)
def test_malformed_and_hostile_files(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(data)
    with pytest.raises(DataFormatError, match=message) as info:
        read_bin(path)
    assert str(path) in str(info.value)


def test_load_bin_images_resizes_like_insightface(tmp_path: Path) -> None:
    flat = np.full((16, 16, 3), (10, 200, 90), np.uint8)  # constant colour survives any resampling
    ramp = np.tile(np.arange(16, dtype=np.uint8)[None, :, None] * 16, (16, 1, 3))
    write_bin(tmp_path / "p.bin", [encode_png(flat), encode_png(ramp)], [False])
    images, issame = load_bin_images(tmp_path / "p.bin", image_size=(8, 12))
    assert images.shape == (2, 8, 12, 3) and issame.dtype == bool and issame.tolist() == [False]
    assert (images[0] == np.array([10, 200, 90], np.uint8)).all()
    assert (np.diff(images[1].astype(int), axis=1) >= 0).all()  # a left-to-right ramp stays a ramp
    exact, _ = load_bin_images(tmp_path / "p.bin", image_size=16)
    assert (exact[1] == ramp).all()  # PNG at the right size: lossless, no resampling


def test_missing_file() -> None:
    with pytest.raises(DataFormatError, match="cannot read verification set"):
        read_bin("/nonexistent/lfw.bin")


_VALID = (FIX / "pairs.bin").read_bytes()


def _fuzz(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.bin"
        path.write_bytes(data)
        try:
            read_bin(path)
        except DataFormatError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes_only_raise_data_format_error(data: bytes) -> None:
    _fuzz(b"\x80\x02" + data if data[:1] == b"!" else data)


@settings(max_examples=200, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), min_size=1, max_size=4),
       cut=st.integers(0, len(_VALID)))
def test_fuzz_mutated_pickle_only_raises_data_format_error(edits, cut: int) -> None:
    data = bytearray(_VALID)
    for pos, value in edits:
        data[pos] = value
    _fuzz(bytes(data[:cut]))
