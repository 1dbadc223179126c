"""A labelled face set given as an image folder or an InsightFace ``.rec``: labels and stored bytes.

What the real-data demo needs to split a user's faces by identity and write the parts out again without
re-encoding a single image (JPEG bytes are copied as they are).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataFormatError
from .image_codec import image_size


class FaceSource:
    """``FaceSource(path)``: ``path`` is ``FOLDER/<identity>/<image>`` or a ``train.rec`` (or its folder)."""

    def __init__(self, path: str | os.PathLike) -> None:
        from .datasets import ImageFolderDataset, RecordDataset

        self.path = Path(path)
        if not self.path.exists():
            raise DataFormatError(f"{self.path}: faces not found (expected an image folder or a train.rec)")
        is_rec = self.path.suffix == ".rec" or (self.path / "train.rec").is_file()
        self._rec = RecordDataset(self.path) if is_rec else None
        self._folder = None if is_rec else ImageFolderDataset(self.path)
        self.labels: list[int] = list(self._rec.labels if self._rec is not None else self._folder.labels)
        if not self.labels:
            raise DataFormatError(f"{self.path}: holds no face")
        self.image_size = image_size(self.encoded(0), source=f"{self.path} (first image)")

    def __len__(self) -> int:
        return len(self.labels)

    def encoded(self, index: int) -> bytes:
        """The stored bytes of face ``index`` (JPEG/PNG)."""
        if self._rec is not None:
            return self._rec.record(index)[1]
        return self._folder.samples[index][0].read_bytes()
