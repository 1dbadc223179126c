"""Image bytes <-> uint8 RGB arrays (Pillow), with the channel-order convention of InsightFace data.

Channel order: arrays in this project are always RGB (H x W x 3, uint8). A JPEG/PNG *file* carries no
channel order of its own: it encodes colours. InsightFace's tools hand OpenCV BGR arrays to
``cv2.imencode`` (``mx.recordio.pack_img``), which expects BGR, so the stored bytes encode the true
colours; ``mx.image.imdecode`` turns them into RGB, ``cv2.imdecode`` into BGR. Pillow, used here, gives
RGB, i.e. the same array arcface_torch's ``MXFaceDataset`` and verification loader see. Images we encode
are ordinary JPEG/PNG files and read the same way through either library.

Decoding refuses images above ``max_pixels`` *before* the pixel data is decoded (Pillow reads the size
from the header lazily), so a small "decompression bomb" file cannot allocate gigabytes.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from ..errors import DataFormatError

MAX_PIXELS = 4096 * 4096  # face crops are ~112 x 112; anything this large is a wrong or hostile file
# What OpenCV-based InsightFace readers accept in practice. Never "every Pillow plugin": EPS, for one,
# runs Ghostscript on load.
FORMATS = ("JPEG", "PNG", "BMP", "WEBP")
# file names read as images wherever the package reads an image folder (pack, export --facebn-calibrate, ...)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _as_rgb_uint8(img: np.ndarray) -> np.ndarray:
    arr = np.asarray(img)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise DataFormatError(f"expected an H x W x 3 uint8 RGB array, got {arr.dtype} {arr.shape}")
    return np.ascontiguousarray(arr)


def encode_jpeg(img: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of an H x W x 3 uint8 RGB array (quality 95 as InsightFace's ``pack_img``)."""
    buf = io.BytesIO()
    Image.fromarray(_as_rgb_uint8(img), "RGB").save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def encode_png(img: np.ndarray) -> bytes:
    """Lossless PNG bytes of an H x W x 3 uint8 RGB array."""
    buf = io.BytesIO()
    Image.fromarray(_as_rgb_uint8(img), "RGB").save(buf, format="PNG")
    return buf.getvalue()


def image_size(data: bytes, source: str = "") -> tuple[int, int]:
    """``(height, width)`` read from the image header only (no pixel decoding)."""
    with _open(data, source, MAX_PIXELS) as im:
        return im.height, im.width


def decode_image(data: bytes, source: str = "", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode JPEG/PNG/... bytes to an H x W x 3 uint8 RGB array (grey and RGBA are converted).

    Raises :class:`DataFormatError` naming ``source`` for undecodable, truncated or oversized images.
    """
    with _open(data, source, max_pixels) as im:
        try:
            rgb = im.convert("RGB") if im.mode != "RGB" else im
            rgb.load()
            return np.asarray(rgb, dtype=np.uint8).copy()
        except Exception as exc:  # noqa: BLE001 - Pillow's decoders raise many types on corrupt data
            raise DataFormatError(f"{source or 'image bytes'}: cannot decode image ({exc})") from None


def _open(data: bytes, source: str, max_pixels: int) -> Image.Image:
    name = source or "image bytes"
    try:
        with warnings.catch_warnings():
            # our own cap below is stricter than Pillow's bomb warning, which would only be noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(bytes(data)), formats=FORMATS)
    except Image.UnidentifiedImageError:
        raise DataFormatError(f"{name}: not a {'/'.join(FORMATS)} image ({len(data)} bytes)") from None
    except Exception as exc:  # noqa: BLE001 - Pillow's plugins raise many types on corrupt headers
        raise DataFormatError(f"{name}: not a readable image ({exc})") from None
    if im.width * im.height > max_pixels or im.width < 1 or im.height < 1:
        im.close()
        raise DataFormatError(
            f"{name}: image of {im.width} x {im.height} pixels is outside 1 .. {max_pixels} pixels"
        )
    return im
