"""The MXNet ``.params`` reader on files written here in mxnet's NDArray-list layout."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from insightface_lr.errors import ModelLoadError
from insightface_lr.models.mxnet.params import load_mxnet_params, save_mxnet_params

DTYPES = [(np.float32, 0), (np.float64, 1), (np.float16, 2), (np.uint8, 3), (np.int32, 4), (np.int8, 5),
          (np.int64, 6)]


def _hand_v2_file(names: list[str], arrays: list[np.ndarray], codes: list[int]) -> bytes:
    """The layout written out field by field (independent of save_mxnet_params): list magic 0x112, reserved,
    count; per array V2 magic, storage type 0, uint32 ndim + int64 dims, context (cpu, 0), dtype code, data;
    then the names as uint64 length + bytes."""
    out = struct.pack("<QQQ", 0x112, 0, len(arrays))
    for array, code in zip(arrays, codes, strict=True):
        out += struct.pack("<Ii", 0xF993FAC9, 0) + struct.pack("<I", array.ndim)
        out += b"".join(struct.pack("<q", d) for d in array.shape)
        out += struct.pack("<iii", 1, 0, code) + array.astype(array.dtype.newbyteorder("<")).tobytes()
    out += struct.pack("<Q", len(names))
    for name in names:
        out += struct.pack("<Q", len(name)) + name.encode()
    return out


def test_hand_written_v2_file_is_read_and_save_writes_the_same_bytes(tmp_path) -> None:
    weight = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) / 7
    mean = np.array([0.5, -1.5], dtype=np.float32)
    data = _hand_v2_file(["arg:conv0_weight", "aux:bn0_moving_mean"], [weight, mean], [0, 0])
    path = tmp_path / "m-0000.params"
    path.write_bytes(data)
    got = load_mxnet_params(path)
    assert list(got["arg"]) == ["conv0_weight"] and list(got["aux"]) == ["bn0_moving_mean"]
    assert torch.equal(got["arg"]["conv0_weight"], torch.from_numpy(weight))
    assert torch.equal(got["aux"]["bn0_moving_mean"], torch.from_numpy(mean))
    save_mxnet_params(tmp_path / "again.params", {"arg:conv0_weight": weight, "aux:bn0_moving_mean": mean})
    assert (tmp_path / "again.params").read_bytes() == data


def _hand_older_file(layout: str, names: list[str], arrays: list[np.ndarray | None]) -> bytes:
    """mxnet's two older NDArray layouts, written out field by field from ``NDArray::LegacyLoad`` (independent of
    save_mxnet_params): ``"v1"`` is magic 0xF993FAC8, uint32 ndim, int64 dims (no storage type); ``"legacy"`` (no
    magic) starts with the uint32 ndim, then uint32 dims. Then context (int32 dev_type, int32 dev_id), int32 dtype
    code, data. None is an empty array: ndim 0 and nothing after it."""
    out = struct.pack("<QQQ", 0x112, 0, len(arrays))
    for array in arrays:
        shape = () if array is None else array.shape
        dims = b"".join(struct.pack("<q" if layout == "v1" else "<I", d) for d in shape)
        out += (struct.pack("<I", 0xF993FAC8) if layout == "v1" else b"") + struct.pack("<I", len(shape)) + dims
        if array is not None:
            code = {np.dtype("float32"): 0, np.dtype("float64"): 1, np.dtype("int32"): 4}[array.dtype]
            out += struct.pack("<iii", 1, 0, code) + array.astype(array.dtype.newbyteorder("<")).tobytes()
    out += struct.pack("<Q", len(names))
    for name in names:
        out += struct.pack("<Q", len(name)) + name.encode()
    return out


@pytest.mark.parametrize("layout", ["v1", "legacy"])
def test_hand_written_v1_and_legacy_files_are_read(tmp_path, layout) -> None:
    weight = (np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) - 5) / 3
    var = np.array([0.25, 4.0, 1.5], dtype=np.float64)
    count = np.array([7, -3], dtype=np.int32)
    names = ["arg:conv0_weight", "aux:bn0_moving_var", "arg:empty", "arg:count"]
    path = tmp_path / "m-0000.params"
    path.write_bytes(_hand_older_file(layout, names, [weight, var, None, count]))
    got = load_mxnet_params(path)
    assert list(got["arg"]) == ["conv0_weight", "count"] and list(got["aux"]) == ["bn0_moving_var"]
    assert got["arg"]["conv0_weight"].dtype == torch.float32 and got["aux"]["bn0_moving_var"].dtype == torch.float64
    assert np.array_equal(got["arg"]["conv0_weight"].numpy(), weight)
    assert np.array_equal(got["aux"]["bn0_moving_var"].numpy(), var)
    assert np.array_equal(got["arg"]["count"].numpy(), count)


@pytest.mark.parametrize("version", [0, 1, 2, 3])
@pytest.mark.parametrize(("dtype", "code"), DTYPES)
def test_every_array_layout_and_dtype_round_trips(tmp_path, version, dtype, code) -> None:
    values = (np.arange(12).reshape(3, 4) * 3 - 7).astype(dtype)
    path = save_mxnet_params(tmp_path / "x.params", {"arg:w": values, "aux:v": values[:1]}, version=version)
    raw = path.read_bytes()
    magic = struct.unpack_from("<I", raw, 24)[0]
    assert magic == {0: 2, 1: 0xF993FAC8, 2: 0xF993FAC9, 3: 0xF993FACA}[version]  # legacy: the word is ndim
    got = load_mxnet_params(path)
    assert got["arg"]["w"].dtype == torch.from_numpy(values).dtype
    assert np.array_equal(got["arg"]["w"].numpy(), values) and np.array_equal(got["aux"]["v"].numpy(), values[:1])


def test_none_arrays_are_skipped_and_v3_scalars_kept(tmp_path) -> None:
    head = struct.pack("<QQQ", 0x112, 0, 3)
    none_v2 = struct.pack("<IiI", 0xF993FAC9, 0, 0)  # ndim 0: an empty array, nothing follows
    none_v3 = struct.pack("<Iii", 0xF993FACA, 0, -1)  # numpy-shape mode: ndim -1 is "none"
    scalar_v3 = struct.pack("<Iii", 0xF993FACA, 0, 0) + struct.pack("<iii", 1, 0, 0) + struct.pack("<f", 2.5)
    names = b"".join(struct.pack("<Q", len(n)) + n for n in (b"arg:a", b"arg:b", b"arg:c"))
    path = tmp_path / "n.params"
    path.write_bytes(head + none_v2 + none_v3 + scalar_v3 + struct.pack("<Q", 3) + names)
    got = load_mxnet_params(path)
    assert list(got["arg"]) == ["c"] and got["arg"]["c"].shape == () and float(got["arg"]["c"]) == 2.5


def test_unnamed_arrays_and_plain_names_go_to_arg(tmp_path) -> None:
    path = save_mxnet_params(tmp_path / "p.params", {"weight": np.ones(2, np.float32)})
    assert list(load_mxnet_params(path)["arg"]) == ["weight"]


def _one_line_error(path, *needles: str) -> None:
    with pytest.raises(ModelLoadError) as info:
        load_mxnet_params(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for needle in needles:
        assert needle in message


def test_truncation_anywhere_is_refused_in_one_line(tmp_path) -> None:
    data = save_mxnet_params(tmp_path / "ok.params", {"arg:w": np.ones((2, 3), np.float32)}).read_bytes()
    for cut in (0, 8, 20, 30, 40, len(data) - 30, len(data) - 1):
        path = tmp_path / f"cut{cut}.params"
        path.write_bytes(data[:cut])
        _one_line_error(path, "truncated")


@pytest.mark.parametrize(("offset", "value", "needle"), [
    (0, struct.pack("<Q", 0x113), "list magic"),  # not an NDArray list
    (28, struct.pack("<i", 2), "sparse storage"),  # storage type csr
    (32, struct.pack("<I", 99), "dimensions"),  # absurd ndim
])
def test_corrupt_headers_are_refused(tmp_path, offset, value, needle) -> None:
    data = bytearray(save_mxnet_params(tmp_path / "ok.params", {"arg:w": np.ones(3, np.float32)}).read_bytes())
    data[offset:offset + len(value)] = value
    path = tmp_path / "bad.params"
    path.write_bytes(bytes(data))
    _one_line_error(path, needle)


def test_unknown_dtype_extra_bytes_and_name_count_are_refused(tmp_path) -> None:
    data = save_mxnet_params(tmp_path / "ok.params", {"arg:w": np.ones(3, np.float32)}).read_bytes()
    dtype_at = 24 + 4 + 4 + 4 + 8 + 8  # magic, stype, ndim, one dim, context
    cases = {
        "dtype code 12": data[:dtype_at] + struct.pack("<i", 12) + data[dtype_at + 4:],  # bfloat16
        "bytes after the names": data + b"\0",
        "names for 1 arrays": data[: -(8 + 5 + 8)] + struct.pack("<Q", 2) + data[-(8 + 5):] * 2,
    }
    for i, (needle, payload) in enumerate(cases.items()):
        path = tmp_path / f"bad{i}.params"
        path.write_bytes(payload)
        _one_line_error(path, needle)


def test_missing_file_is_a_model_load_error(tmp_path) -> None:
    _one_line_error(tmp_path / "absent.params", "cannot read")
