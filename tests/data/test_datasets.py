"""RecordDataset / ImageFolderDataset / pack_image_folder, against mxnet's reading of the same files."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from insightface_lr.data.datasets import ImageFolderDataset, RecordDataset, pack_image_folder
from insightface_lr.data.image_codec import encode_png
from insightface_lr.data.recordio import IRHeader, RecordWriter, pack
from insightface_lr.errors import DataFormatError

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "mxnet"
EXPECTED = json.loads((FIX / "expected.json").read_text())


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hwc(image: torch.Tensor) -> bytes:
    return image.permute(1, 2, 0).contiguous().numpy().tobytes()


def test_record_dataset_matches_mxnet() -> None:
    ds = RecordDataset(FIX)  # the folder; train.rec inside
    assert len(ds) == 6 and ds.labels == EXPECTED["train_labels"] == [0, 0, 1, 1, 1, 3]
    assert ds.num_classes == 4 and ds.identity_range == (7, 10) and ds.property == (4, 16, 16)
    for i, entry in enumerate(EXPECTED["train"][:6]):
        image, label = ds[i]
        assert image.dtype == torch.uint8 and list(image.shape) == [3] + entry["pixels"]["shape"][:2]
        assert sha(hwc(image)) == entry["pixels"]["sha256"] and label == int(entry["header"]["label"])


def test_record_dataset_without_property_or_header(tmp_path: Path) -> None:
    shutil.copy(FIX / "train.rec", tmp_path)
    shutil.copy(FIX / "train.idx", tmp_path)
    assert RecordDataset(tmp_path / "train.rec").num_classes == 4  # max label + 1, no property file
    png = encode_png(np.full((4, 4, 3), 9, np.uint8))
    with RecordWriter(tmp_path / "m.rec", tmp_path / "m.idx") as writer:  # no header record 0
        writer.write_idx(5, pack(IRHeader(0, [2.0, 0.25], 5, 0), png))  # multi-label: label[0]
        writer.write_idx(6, pack(IRHeader(0, 1, 6, 0), png))
    ds = RecordDataset(tmp_path / "m.rec")
    assert len(ds) == 2 and ds.labels == [2, 1] and ds.num_classes == 3 and ds.identity_range is None
    image, label = ds[0]
    assert label == 2 and (image == 9).all() and image.shape == (3, 4, 4)


def test_record_dataset_refuses_header_beyond_index(tmp_path: Path) -> None:
    with RecordWriter(tmp_path / "train.rec", tmp_path / "train.idx") as writer:
        writer.write_idx(0, pack(IRHeader(0, (5, 6), 0, 1), b""))
        writer.write_idx(1, pack(IRHeader(0, 0, 1, 0), b"x"))
    with pytest.raises(DataFormatError, match="announces image key 4"):
        RecordDataset(tmp_path)


def _crop16(image: torch.Tensor) -> torch.Tensor:  # module level: workers must unpickle it
    return image[:, :16, :16]


def test_record_dataset_in_dataloader_with_workers() -> None:
    ds = RecordDataset(FIX, transform=_crop16)  # the fixture has one 32x32 image: crop to batch
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.reader._fd is None and torch.equal(clone[1][0], ds[1][0])
    loader = DataLoader(ds, batch_size=2, num_workers=2, shuffle=False)
    images, labels = zip(*loader, strict=True)
    assert torch.cat(labels).tolist() == ds.labels
    assert torch.equal(torch.cat(images), torch.stack([ds[i][0] for i in range(len(ds))]))


def _folder(root: Path, sizes: dict[str, list[int]]) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(1)
    made = {}
    for name, shape_list in sizes.items():
        (root / name).mkdir(parents=True)
        made[name] = []
        for j, side in enumerate(shape_list):
            img = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
            (root / name / f"{j:02d}.png").write_bytes(encode_png(img))
            made[name].append(img)
    return made


def test_image_folder_dataset(tmp_path: Path) -> None:
    made = _folder(tmp_path, {"zeta": [8, 8], "alpha": [8]})
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "zeta" / "notes.txt").write_text("not an image: ignored")
    ds = ImageFolderDataset(tmp_path)
    assert ds.classes == ["alpha", "zeta"] and ds.num_classes == 2 and ds.labels == [0, 1, 1] and len(ds) == 3
    image, label = ds[2]
    assert label == 1 and np.array_equal(image.permute(1, 2, 0).numpy(), made["zeta"][1])  # PNG: lossless


@pytest.mark.parametrize(("layout", "message"), [(None, "not found"), ({}, "no identity sub-folders"),
                                                  ({"a": [8], "b": []}, "holds no")])
def test_image_folder_errors(tmp_path: Path, layout, message: str) -> None:
    root = tmp_path / "faces"
    if layout is not None:
        root.mkdir()
        _folder(root, layout)
    with pytest.raises(DataFormatError, match=message):
        ImageFolderDataset(root)


def test_pack_image_folder_round_trip(tmp_path: Path) -> None:
    made = _folder(tmp_path / "faces", {"bob": [8, 8], "amy": [8], "cid": [8]})
    rec = pack_image_folder(tmp_path / "faces", tmp_path / "out")
    assert rec == tmp_path / "out" / "train.rec" and (tmp_path / "out" / "property").read_text() == "3,8,8\n"
    packed, folder = RecordDataset(rec), ImageFolderDataset(tmp_path / "faces")
    assert packed.labels == folder.labels == [0, 1, 1, 2] and packed.identity_range == (5, 8)
    flat = made["amy"] + made["bob"] + made["cid"]
    for i in range(4):
        assert np.array_equal(packed[i][0].permute(1, 2, 0).numpy(), flat[i])


def test_pack_refuses_mixed_sizes_and_leaves_nothing(tmp_path: Path) -> None:
    _folder(tmp_path / "faces", {"a": [8], "b": [8, 12]})
    with pytest.raises(DataFormatError, match=r"01\.png: image is 12x12 but .* is 8x8"):
        pack_image_folder(tmp_path / "faces", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # every image is checked before anything is written


# -- image codec (decode path shared by both datasets and the .bin loader) ---------------------------------
def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (a decompression bomb needs no more than that)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_codec_round_trip_and_channel_order() -> None:
    from insightface_lr.data.image_codec import decode_image, encode_jpeg

    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 255  # pure red: a BGR mix-up would come back blue
    red = decode_image(encode_jpeg(rgb))
    assert red.shape == (16, 16, 3) and red[..., 0].min() > 240 and red[..., 1:].max() < 15
    rows, cols = np.meshgrid(np.arange(16) * 8, np.arange(16) * 4, indexing="ij")
    ramp = np.stack([rows, cols, np.full((16, 16), 77)], -1)
    assert np.abs(decode_image(encode_jpeg(ramp.astype(np.uint8))).astype(int) - ramp).max() <= 8
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((3, 5), 42, np.uint8), "L").save(buf, format="PNG")  # greyscale file
    grey = decode_image(buf.getvalue())
    assert grey.shape == (3, 5, 3) and (grey == 42).all()


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        (_png_claiming(5000, 5000), {}, "5000 x 5000 pixels is outside"),  # our cap, below Pillow's
        (_png_claiming(100_000, 100_000), {}, "decompression bomb"),  # Pillow's own refusal
        (encode_png(np.zeros((16, 16, 3), np.uint8)), {"max_pixels": 100}, "16 x 16 pixels is outside 1 .. 100"),
        (b"not an image at all", {}, "not a JPEG/PNG/BMP/WEBP image"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", {}, "not a JPEG/PNG/BMP/WEBP image"),
        (_png_claiming(8, 8), {}, "cannot decode"),  # header fine, pixel data short
    ],
)
def test_decode_refuses_bombs_and_garbage(data: bytes, kwargs: dict, message: str) -> None:
    from insightface_lr.data.image_codec import decode_image

    with pytest.raises(DataFormatError, match=message) as info:
        decode_image(data, source="probe.png", **kwargs)
    assert str(info.value).startswith("probe.png: ")


def test_encode_refuses_non_rgb_arrays() -> None:
    from insightface_lr.data.image_codec import encode_jpeg

    with pytest.raises(DataFormatError, match="H x W x 3 uint8"):
        encode_jpeg(np.zeros((4, 4), np.uint8))
    with pytest.raises(DataFormatError, match="float32"):
        encode_png(np.zeros((4, 4, 3), np.float32))
