"""MXNet's NDArray-list file (``model-0000.params``) read and written without mxnet.

Layout (little-endian), as mxnet's ``NDArray::Save``/``Load`` define it:

* ``uint64`` list magic ``0x112``, ``uint64`` reserved, ``uint64`` count, then ``count`` arrays, then
  ``uint64`` name count (0 or ``count``) and each name as ``uint64`` length + bytes (``arg:NAME``/``aux:NAME``).
* one array: ``uint32`` magic, then
  - V2 ``0xF993FAC9`` (mxnet >= 1.0): ``int32`` storage type (0 dense; sparse is refused), shape
    (``uint32`` ndim + ``int64`` dims; ndim 0 = an empty "none" array), context, dtype, data;
  - V3 ``0xF993FACA`` (numpy-shape mode): as V2 but ndim is ``int32``, -1 = none and 0 = a scalar;
  - V1 ``0xF993FAC8``: no storage type; shape with ``int64`` dims;
  - legacy (no magic): the word read was the ndim, dims are ``uint32``.
  Context is ``int32`` device type + ``int32`` device id (ignored: everything loads on the CPU), dtype an
  ``int32`` mshadow type code, data the raw C-order values.

Plain ``struct``/numpy parsing: nothing in the file can run code. Bad files raise :class:`ModelLoadError`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from ...atomic import atomic_path
from ...errors import ModelLoadError

LIST_MAGIC = 0x112
V1_MAGIC, V2_MAGIC, V3_MAGIC = 0xF993FAC8, 0xF993FAC9, 0xF993FACA
# mshadow type codes -> numpy dtypes (little-endian)
DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"), 1: np.dtype("<f8"), 2: np.dtype("<f2"), 3: np.dtype("u1"),
    4: np.dtype("<i4"), 5: np.dtype("i1"), 6: np.dtype("<i8"),
}
CODES = {dtype: code for code, dtype in DTYPES.items()}
_MAX_NDIM = 32


class _Reader:
    """Sequential little-endian reads from bytes; running short raises ModelLoadError naming ``what``."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def take(self, size: int, what: str) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise ModelLoadError(f"{self.path}: truncated MXNet .params file (ends inside {what}, at byte "
                                 f"{len(self.data)} of the {self.pos + size} needed)")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))


def load_mxnet_params(path: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """``{"arg": {name: tensor}, "aux": {name: tensor}}`` from an mxnet ``.params`` file.

    Names without an ``arg:``/``aux:`` prefix (a plain ``mx.nd.save`` dict) go to ``"arg"``. Raises
    :class:`ModelLoadError` naming the file and what is wrong (bad magic, truncation, unknown dtype...).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read the MXNet .params file ({exc.strerror or exc})") from exc
    reader = _Reader(data, path)
    magic, _reserved = reader.unpack("QQ", "the list header")
    if magic != LIST_MAGIC:
        raise ModelLoadError(f"{path}: not an MXNet .params file (list magic {magic:#x}, expected {LIST_MAGIC:#x})")
    (count,) = reader.unpack("Q", "the array count")
    if count > len(data):
        raise ModelLoadError(f"{path}: corrupt MXNet .params file (array count {count} exceeds the file size)")
    arrays = [_read_array(reader, i) for i in range(count)]
    names = _read_names(reader, count)
    if reader.pos != len(data):
        raise ModelLoadError(f"{path}: corrupt MXNet .params file ({len(data) - reader.pos} bytes after the names)")
    out: dict[str, dict[str, torch.Tensor]] = {"arg": {}, "aux": {}}
    for index, (name, array) in enumerate(zip(names, arrays, strict=True)):
        kind, _, key = name.partition(":") if name.startswith(("arg:", "aux:")) else ("arg", "", name)
        if array is None:
            continue
        if key in out[kind]:
            raise ModelLoadError(f"{path}: corrupt MXNet .params file (name {name!r} appears twice, array {index})")
        out[kind][key] = array
    return out


def _read_array(reader: _Reader, index: int) -> torch.Tensor | None:
    what = f"array {index}"
    (magic,) = reader.unpack("I", f"{what}'s magic")
    if magic in (V2_MAGIC, V3_MAGIC):
        (stype,) = reader.unpack("i", f"{what}'s storage type")
        if stype != 0:
            raise ModelLoadError(f"{reader.path}: {what} has sparse storage type {stype}; only dense arrays "
                                 "are supported")
    if magic == V3_MAGIC:
        (ndim,) = reader.unpack("i", f"{what}'s shape")
        if ndim == -1:
            return None
        shape = _dims(reader, ndim, "q", what)
    elif magic in (V1_MAGIC, V2_MAGIC):
        (ndim,) = reader.unpack("I", f"{what}'s shape")
        shape = _dims(reader, ndim, "q", what)
        if ndim == 0:
            return None
    else:  # legacy layout: the word read was the number of dimensions
        shape = _dims(reader, magic, "I", what)
        if magic == 0:
            return None
    _dev_type, _dev_id, code = reader.unpack("iii", f"{what}'s context and dtype")
    if code not in DTYPES:
        raise ModelLoadError(f"{reader.path}: {what} has unsupported dtype code {code} (supported: "
                             f"{', '.join(f'{c}={d.name}' for c, d in DTYPES.items())})")
    dtype = DTYPES[code]
    count = math.prod(shape)  # Python integers: numpy's int64 product of hostile dims wraps around
    raw = reader.take(count * dtype.itemsize, f"{what}'s data")
    values = np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    return torch.from_numpy(values.copy())


def _dims(reader: _Reader, ndim: int, fmt: str, what: str) -> tuple[int, ...]:
    if not 0 <= ndim <= _MAX_NDIM:
        raise ModelLoadError(f"{reader.path}: corrupt MXNet .params file ({what} has {ndim} dimensions, or an "
                             "unknown array magic)")
    dims = reader.unpack(fmt * ndim, f"{what}'s shape")
    if any(d < 0 for d in dims):
        raise ModelLoadError(f"{reader.path}: corrupt MXNet .params file ({what} has shape {dims})")
    return tuple(int(d) for d in dims)


def _read_names(reader: _Reader, count: int) -> list[str]:
    (name_count,) = reader.unpack("Q", "the name count")
    if name_count not in (0, count):
        raise ModelLoadError(f"{reader.path}: corrupt MXNet .params file ({name_count} names for {count} arrays)")
    names = []
    for i in range(name_count):
        (length,) = reader.unpack("Q", f"name {i}'s length")
        try:
            names.append(reader.take(length, f"name {i}").decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ModelLoadError(f"{reader.path}: corrupt MXNet .params file (name {i} is not UTF-8)") from exc
    return names or [f"arg:{i}" for i in range(count)]


def save_mxnet_params(path: str | Path, params: Mapping[str, torch.Tensor | np.ndarray], *,
                      version: int = 2) -> Path:
    """Write ``{"arg:NAME" | "aux:NAME": array}`` in mxnet's layout (``version`` 2, 3, 1 or 0 = legacy),
    atomically. For tests and tools: mxnet's ``mx.nd.load`` reads what this writes."""
    magic = {1: V1_MAGIC, 2: V2_MAGIC, 3: V3_MAGIC}.get(version)
    parts = [struct.pack("<QQQ", LIST_MAGIC, 0, len(params))]
    for value in params.values():
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        dtype = array.dtype.newbyteorder("<") if array.dtype.itemsize > 1 else array.dtype
        if dtype not in CODES:
            raise ValueError(f"save_mxnet_params: dtype {array.dtype} has no mxnet type code")
        if version == 0:
            parts.append(struct.pack(f"<I{array.ndim}I", array.ndim, *array.shape))
        else:
            head = struct.pack("<I", magic) + (struct.pack("<i", 0) if version >= 2 else b"")
            ndim = struct.pack("<i" if version == 3 else "<I", array.ndim)
            parts.append(head + ndim + struct.pack(f"<{array.ndim}q", *array.shape))
        parts.append(struct.pack("<iii", 1, 0, CODES[dtype]) + np.ascontiguousarray(array, dtype=dtype).tobytes())
    parts.append(struct.pack("<Q", len(params)))
    for name in params:
        encoded = name.encode("utf-8")
        parts.append(struct.pack("<Q", len(encoded)) + encoded)
    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(b"".join(parts))
    return path
