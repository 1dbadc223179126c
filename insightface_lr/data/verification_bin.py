"""InsightFace verification sets (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``, ...): safe read, write.

A ``.bin`` is a pickle of ``(bins, issame)``: ``bins`` the encoded images (JPEG bytes; pairs are
consecutive images, so ``len(bins) == 2 * len(issame)``), ``issame`` one bool per pair. Files from the
Python 2 era hold ``str`` images (read with ``encoding='bytes'``); files written by InsightFace's
Python 3 scripts may hold the uint8 numpy arrays returned by ``cv2.imencode``.

A pickle can run arbitrary code on load. :class:`_BinUnpickler` therefore resolves only the few globals
such files contain, each to a checking wrapper (numpy array and bool-scalar reconstruction with
numeric dtypes, latin-1 ``_codecs.encode``); every other global is refused with
:class:`DataFormatError` *before* anything is called. A first pass with ``pickletools.genops`` checks
the opcode stream against the real file length, so a length field cannot make us allocate gigabytes.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..atomic import atomic_output
from ..errors import DataFormatError
from .image_codec import decode_image

_NUMERIC_KINDS = "biu"  # bool, signed, unsigned: what images (uint8) and issame flags (bool) need
_NDARRAY = object()  # stands for numpy.ndarray: usable as _reconstruct's subtype argument, not callable
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_SCALAR = np.bool_(True).__reduce__()[0]


class _BinUnpickler(pickle.Unpickler):
    """Unpickler that knows only the globals of a verification ``.bin``."""

    def __init__(self, data: bytes, path: str, encoding: str) -> None:
        super().__init__(io.BytesIO(data), encoding=encoding)
        self.path = path
        allowed = {
            "_reconstruct": self._reconstruct, "scalar": self._scalar, "_frombuffer": self._frombuffer,
            "ndarray": _NDARRAY, "dtype": self._dtype, "encode": self._encode,
        }
        modules = {
            "_reconstruct": ("numpy.core.multiarray", "numpy._core.multiarray"),
            "scalar": ("numpy.core.multiarray", "numpy._core.multiarray"),
            "_frombuffer": ("numpy.core.numeric", "numpy._core.numeric"),
            "ndarray": ("numpy",), "dtype": ("numpy",), "encode": ("_codecs",),
        }
        self._allowed = {(m, name): obj for name, obj in allowed.items() for m in modules[name]}

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DataFormatError(
                f"{self.path}: refusing to load global '{module}.{name}' from the pickle: a verification "
                f".bin holds only image bytes and booleans (numpy arrays allowed)"
            ) from None

    def _refuse(self, what: str) -> DataFormatError:
        return DataFormatError(f"{self.path}: refusing {what} in the pickle")

    def _dtype(self, spec, align=False, copy=True) -> np.dtype:
        spec = spec.decode("latin-1") if isinstance(spec, bytes) else spec
        dtype = np.dtype(spec) if isinstance(spec, str) else None
        if dtype is None or dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None:
            raise self._refuse(f"numpy dtype {spec!r} (only bool/integer dtypes)")
        return dtype

    def _reconstruct(self, subtype, shape, dtype_code) -> np.ndarray:
        # numpy always pickles (ndarray, (0,), b'b'): the real shape/dtype/data arrive via __setstate__
        if subtype is not _NDARRAY or tuple(shape) != (0,):
            raise self._refuse(f"array reconstruction {subtype!r}, {shape!r}")
        return _RECONSTRUCT(np.ndarray, (0,), b"b")

    def _scalar(self, dtype, data=None):
        if not isinstance(dtype, np.dtype) or not isinstance(data, bytes) or len(data) != dtype.itemsize:
            raise self._refuse("a numpy scalar that is not a bool/integer")
        return _SCALAR(dtype, data)

    def _frombuffer(self, buf, dtype, shape, order) -> np.ndarray:
        if not isinstance(dtype, np.dtype) or order not in ("C", "F", "A"):
            raise self._refuse(f"array from buffer with dtype {dtype!r}, order {order!r}")
        return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)

    def _encode(self, text, encoding="utf-8") -> bytes:
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise self._refuse(f"_codecs.encode with encoding {encoding!r}")
        return text.encode("latin-1")


def _check_stream(data: bytes, path: str) -> None:
    """Walk the opcodes without building objects: every length is checked against what is left."""
    stream = io.BytesIO(data)
    try:
        for _ in pickletools.genops(stream):
            pass
    except Exception as exc:  # noqa: BLE001 - genops raises ValueError, struct.error, ... on bad bytes
        offset = stream.tell()
        raise DataFormatError(f"{path}: not a valid pickle near byte offset {offset} ({exc})") from None


def _load(data: bytes, path: str):
    _check_stream(data, path)
    for encoding in ("ASCII", "bytes"):  # Python 3 pickles, then Python 2 ``str`` images as bytes
        try:
            return _BinUnpickler(data, path, encoding).load()
        except DataFormatError:
            raise
        except UnicodeDecodeError:
            continue
        except Exception as exc:  # noqa: BLE001 - any other failure means malformed data
            why = f"{type(exc).__name__}: {exc}"
            raise DataFormatError(f"{path}: cannot unpickle verification set ({why})") from None
    raise DataFormatError(f"{path}: text in the pickle is neither ASCII nor Python-2 byte strings")


def _as_bytes(item, path: str, i: int) -> bytes:
    if isinstance(item, (bytes, bytearray)):
        return bytes(item)
    if isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim <= 2:
        return item.tobytes()
    raise DataFormatError(f"{path}: image {i} is {type(item).__name__}, expected bytes or a uint8 array")


def _as_flags(issame, path: str) -> list[bool]:
    items = issame.tolist() if isinstance(issame, np.ndarray) and issame.ndim == 1 else issame
    if not isinstance(items, (list, tuple)):
        raise DataFormatError(f"{path}: issame is {type(issame).__name__}, expected a list of booleans")
    flags = [x.item() if isinstance(x, np.generic) else x for x in items]
    if any(not isinstance(f, (bool, int)) or f not in (0, 1) for f in flags):
        raise DataFormatError(f"{path}: issame must hold only booleans")
    return [bool(f) for f in flags]


def read_bin(path: str | os.PathLike) -> tuple[list[bytes], list[bool]]:
    """Read a verification ``.bin`` safely: ``(image bytes [2P], issame [P])``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read verification set ({exc.strerror})") from None
    obj = _load(data, str(path))
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise DataFormatError(f"{path}: expected a pickled (bins, issame) 2-tuple, got {type(obj).__name__}")
    bins, issame = obj
    if not isinstance(bins, (list, tuple)):
        raise DataFormatError(f"{path}: bins is {type(bins).__name__}, expected a list of image bytes")
    images = [_as_bytes(b, str(path), i) for i, b in enumerate(bins)]
    flags = _as_flags(issame, str(path))
    if len(images) != 2 * len(flags):
        raise DataFormatError(f"{path}: {len(images)} images for {len(flags)} pairs (expected 2 per pair)")
    return images, flags


def write_bin(path: str | os.PathLike, bins: Sequence[bytes], issame: Sequence[bool]) -> Path:
    """Write ``(bins, issame)`` as InsightFace does (a pickled 2-tuple; protocol 4, readable by every
    Python 3), atomically. Images must be encoded bytes; pairs are consecutive images."""
    path = Path(path)
    images = [_as_bytes(b, str(path), i) for i, b in enumerate(bins)]
    flags = _as_flags(list(issame), str(path))
    if len(images) != 2 * len(flags):
        raise DataFormatError(f"{path}: {len(images)} images for {len(flags)} pairs (expected 2 per pair)")
    with atomic_output(path, "wb") as fh:
        pickle.dump((images, flags), fh, protocol=4)
    return path


def load_bin_images(
    path: str | os.PathLike, image_size: int | tuple[int, int] = 112
) -> tuple[np.ndarray, np.ndarray]:
    """Decode a verification set: images ``uint8 [2P, H, W, 3]`` RGB and ``issame`` bool ``[P]``.

    Images of another size are resized (bicubic) to ``image_size``, as InsightFace's loader does.
    """
    from PIL import Image

    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    bins, issame = read_bin(path)
    out = np.empty((len(bins), height, width, 3), dtype=np.uint8)
    for i, data in enumerate(bins):  # decoding is per image; pixels are handled whole-array
        img = decode_image(data, source=f"{path}[image {i}]")
        if img.shape[:2] != (height, width):
            img = np.asarray(Image.fromarray(img).resize((width, height), Image.Resampling.BICUBIC))
        out[i] = img
    return out, np.asarray(issame, dtype=bool)
