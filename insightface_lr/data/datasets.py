"""Training-set datasets: InsightFace ``train.rec`` and image folders, plus folder -> ``.rec`` packing.

Both datasets return ``(image, label)`` with ``image`` a uint8 RGB tensor ``[3, H, W]`` (no
normalisation: the degradation pipeline and the models normalise on batches) and ``label`` an int.
Both are picklable with no open file, so they work in ``DataLoader(num_workers > 0)``.
"""

from __future__ import annotations

import os
import re
from array import array
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..errors import DataFormatError
from .image_codec import IMAGE_SUFFIXES, decode_image
from .recordio import RecordReader, unpack, write_rec_dataset

Transform = Callable[[torch.Tensor], torch.Tensor]


def _to_tensor(rgb) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()  # HWC -> CHW, still uint8


def read_property(path: str | os.PathLike) -> tuple[int, int, int]:
    """InsightFace's ``property`` file: ``(num_classes, height, width)``."""
    text = Path(path).read_text(encoding="ascii", errors="replace").strip()
    try:
        num_classes, height, width = (int(x) for x in text.split(","))
    except ValueError:
        raise DataFormatError(f"{path}: expected 'num_classes,height,width', got {text[:60]!r}") from None
    return num_classes, height, width


def _checked_label(value: float, source: str) -> int:
    """A header label used as a record key: a finite, non-negative integer (``int(nan)`` would raise
    ValueError, ``int(inf)`` OverflowError: a hostile header must give DataFormatError instead)."""
    if not (value == value and 0 <= value < 2**62 and float(value).is_integer()):
        raise DataFormatError(f"{source}: header label {value!r} is not a record key "
                              "(record 0 must hold the image-key end and identity range)")
    return int(value)


class RecordDataset(Dataset):
    """An InsightFace ``train.rec`` (+ ``train.idx``), read without mxnet.

    ``rec_path`` is the ``.rec`` file or the folder holding ``train.rec``. When record 0 is an
    InsightFace header (``flag > 0``), the images are keys ``1 .. label[0] - 1`` exactly as
    arcface_torch's ``MXFaceDataset`` reads them; otherwise every key of the index is an image.
    A multi-label image record (``flag > 0``) has label ``label[0]``.
    """

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None,
                 transform: Transform | None = None) -> None:
        path = Path(rec_path)
        self.rec_path = path / "train.rec" if path.is_dir() else path
        self.reader = RecordReader(self.rec_path, idx_path)
        self.transform = transform
        self.identity_range: tuple[int, int] | None = None
        header = unpack(self.reader.read_idx(0), f"{self.rec_path}[key 0]")[0] if 0 in self.reader else None
        if header is not None and header.flag > 0:
            first = _checked_label(header.label[0], f"{self.rec_path}[key 0]")
            last = _checked_label(header.label[1], f"{self.rec_path}[key 0]") if header.flag > 1 else first
            if first > len(self.reader):  # keys 1..first-1 cannot all be indexed: refuse before allocating
                raise DataFormatError(f"{self.rec_path}: record 0 announces image key {first - 1}, "
                                      "which is not in the index")
            self.identity_range = (first, last)
            self.keys = array("q", range(1, first))
        else:
            self.keys = array("q", self.reader.keys)
        missing = [k for k in self.keys[:1] + self.keys[-1:] if k not in self.reader]
        if missing:
            raise DataFormatError(f"{self.rec_path}: record 0 announces image key {missing[0]}, "
                                  "which is not in the index")
        self._labels: list[int] | None = None
        prop = self.rec_path.with_name("property")  # InsightFace's folder-level file, describing train.rec
        self.property = read_property(prop) if prop.is_file() and self.rec_path.name == "train.rec" else None

    def __len__(self) -> int:
        return len(self.keys)

    def _read(self, key: int) -> tuple[int, bytes]:
        header, payload = unpack(self.reader.read_idx(key), f"{self.rec_path}[key {key}]")
        label = header.label[0] if header.flag > 0 else header.label
        return _checked_label(label, f"{self.rec_path}[key {key}]"), payload

    def record(self, index: int) -> tuple[int, bytes]:
        """(label, encoded image bytes as stored) of image ``index``, without decoding it."""
        return self._read(self.keys[index])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        key = self.keys[index]
        label, payload = self._read(key)
        image = _to_tensor(decode_image(payload, source=f"{self.rec_path}[key {key}]"))
        return (self.transform(image) if self.transform else image), label

    @property
    def labels(self) -> list[int]:
        """Label of every image, in dataset order (read from the record headers once, then cached)."""
        if self._labels is None:
            self._labels = [self._read(key)[0] for key in self.keys]
        return self._labels

    @property
    def num_classes(self) -> int:
        """From the ``property`` file next to the ``.rec`` when present, else ``max(labels) + 1``."""
        if self.property is not None:
            return self.property[0]
        return max(self.labels, default=-1) + 1


class ImageFolderDataset(Dataset):
    """``root/<identity>/<image>`` (any of ``IMAGE_SUFFIXES``): sorted folder names get labels ``0 .. C-1``."""

    def __init__(self, root: str | os.PathLike, transform: Transform | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataFormatError(f"{self.root}: image folder not found")
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name[:1] != ".")
        if not self.classes:
            raise DataFormatError(f"{self.root}: no identity sub-folders (expected root/<identity>/<images>)")
        self.samples: list[tuple[Path, int]] = []
        for label, name in enumerate(self.classes):
            files = sorted(p for p in (self.root / name).iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise DataFormatError(f"{self.root / name}: identity folder holds no image "
                                      f"({', '.join(IMAGE_SUFFIXES)})")
            self.samples += [(f, label) for f in files]
        self.labels = [label for _, label in self.samples]
        self.transform = transform

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        image = _to_tensor(decode_image(path.read_bytes(), source=str(path)))
        return (self.transform(image) if self.transform else image), label


class ImageFilesDataset(Dataset):
    """Every image (``IMAGE_SUFFIXES``) under ``root`` (any depth, sorted), label -1: unlabeled faces such as
    TinyFace's gallery distractors, which come as one flat folder."""

    def __init__(self, root: str | os.PathLike, transform: Transform | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataFormatError(f"{self.root}: image folder not found")
        self.files = sorted(p for p in self.root.rglob("*")
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and p.name[:1] != ".")
        if not self.files:
            raise DataFormatError(f"{self.root}: holds no image ({', '.join(IMAGE_SUFFIXES)})")
        self.labels = [-1] * len(self.files)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path = self.files[index]
        image = _to_tensor(decode_image(path.read_bytes(), source=str(path)))
        return (self.transform(image) if self.transform else image), -1


def find_bad_images(samples: list[tuple[Path, int]]) -> tuple[tuple[int, int], dict[Path, str]]:
    """Decode every image once: ``(the common size, {bad file: why})``. A training set has one image size,
    so an image of another size than most is bad too (it is named, not the many that agree)."""
    shapes: dict[Path, tuple[int, int]] = {}
    bad: dict[Path, str] = {}
    for path, _ in samples:
        try:
            shapes[path] = decode_image(path.read_bytes(), source=str(path)).shape[:2]
        except DataFormatError as exc:
            bad[path] = re.sub(r" ?<_io\.BytesIO object at 0x[0-9a-f]+>", "", str(exc)).removeprefix(f"{path}: ")
        except OSError as exc:
            bad[path] = f"cannot read ({exc.strerror})"
    if not shapes:
        return (0, 0), bad
    common = Counter(shapes.values()).most_common(1)[0][0]
    for path, (h, w) in shapes.items():
        if (h, w) != common:
            bad[path] = f"image is {h}x{w} but the common size is {common[0]}x{common[1]}"
    return common, bad


def pack_image_folder(folder: str | os.PathLike, out_dir: str | os.PathLike,
                      on_skip: Callable[[Path, str], None] | None = None) -> Path:
    """Pack an image folder into ``out_dir/{train.rec, train.idx, property}``; returns train.rec.

    Image bytes are stored as they are (no re-encoding loss; mxnet and Pillow read JPEG and PNG) after
    a full decode check of every image; all must share one size, which goes to ``property``. Bad images
    (undecodable, or of another size) are all named in one DataFormatError; with ``on_skip`` they are left
    out instead and each reported as ``on_skip(path, why)``, as is an identity folder left with no image
    (the remaining identities keep their sorted order, labels 0..C-1 without gaps).
    """
    dataset = ImageFolderDataset(folder)
    (height, width), bad = find_bad_images(dataset.samples)
    if bad and (on_skip is None or len(bad) == len(dataset.samples)):
        listed = "; ".join(f"{path}: {why}" for path, why in bad.items())
        hint = "fix or remove them, or pass --skip-bad to pack the others" if on_skip is None else "nothing to pack"
        raise DataFormatError(f"{dataset.root}: {len(bad)} bad image(s) of {len(dataset.samples)}: {listed}; {hint}")
    for path, why in bad.items():
        on_skip(path, why)
    kept = [(path, label) for path, label in dataset.samples if path not in bad]
    labels = sorted({label for _, label in kept})
    for label in sorted(set(dataset.labels) - set(labels)):
        on_skip(dataset.root / dataset.classes[label], "identity left out: none of its images is usable")
    dense = {label: i for i, label in enumerate(labels)}
    return write_rec_dataset(out_dir, (path.read_bytes() for path, _ in kept),
                             [dense[label] for _, label in kept], image_size=(height, width))
