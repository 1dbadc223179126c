"""Benchmark images -> uint8 batches ``[B, 3, side, side]`` in DataLoader workers.

Per image, in a worker: decode (Pillow, through :func:`insightface_lr.data.image_codec.decode_image`, so an
undecodable file is one line naming it), align to the ArcFace 112 x 112 template when the protocol ships five
landmarks (insightface's ``face_align.norm_crop``, the similarity transform InsightFace's IJB scripts use), then
one antialiased bicubic resize to ``side`` (Pillow's filter widens with the shrink factor, as torch's
``antialias=True`` does). ``side`` is the model input for native faces, or the LR size of a cell, which the
embedder then up-samples to the model input with the sweep's bicubic (:func:`..lowres.degrade_normalised`).

A whole batch is one worker call (the sampler yields ``(start, stop)`` windows), so the inter-process cost is
paid once per batch, not per image; the batch is a single ``torch.from_numpy`` of a stacked array.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ...data.image_codec import decode_image
from ...errors import DataFormatError, InsightFaceLRError

ALIGNED_SIDE = 112  # the ArcFace template of norm_crop


def align_face(rgb: np.ndarray, landmarks: np.ndarray, side: int = ALIGNED_SIDE) -> np.ndarray:
    """The face of ``rgb`` warped so its 5 landmarks [5, 2] land on ArcFace's template (``side`` x ``side``)."""
    from insightface.utils.face_align import norm_crop

    with warnings.catch_warnings():  # scikit-image >= 0.26 deprecates the estimate() norm_crop calls
        warnings.simplefilter("ignore", FutureWarning)
        return norm_crop(rgb, np.asarray(landmarks, dtype=np.float32).reshape(5, 2), image_size=side)


def load_face(path: str, side: int, landmarks: np.ndarray | None = None) -> np.ndarray:
    """uint8 ``[side, side, 3]`` RGB face of an image file (aligned first when ``landmarks`` are given)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read the image ({exc.strerror})") from None
    rgb = decode_image(data, source=path)
    if landmarks is not None:
        rgb = align_face(rgb, landmarks)
    if rgb.shape[0] == side and rgb.shape[1] == side:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((side, side), Image.BICUBIC))


class FaceBatches(Dataset):
    """Item ``(start, stop)`` -> uint8 ``[stop - start, 3, side, side]`` faces of ``paths[start:stop]``."""

    def __init__(self, paths: Sequence[str], side: int, landmarks: np.ndarray | None = None) -> None:
        self.paths, self.side = list(paths), int(side)
        self.landmarks = None if landmarks is None else np.asarray(landmarks, dtype=np.float32).reshape(-1, 5, 2)
        if self.landmarks is not None and len(self.landmarks) != len(self.paths):
            raise DataFormatError(f"{len(self.landmarks)} landmark rows for {len(self.paths)} images")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, window: tuple[int, int]) -> torch.Tensor | InsightFaceLRError:
        start, stop = window
        out = np.empty((stop - start, self.side, self.side, 3), dtype=np.uint8)
        try:
            for row, index in enumerate(range(start, stop)):  # decoding is per file by nature; pixels stay in C
                lmk = None if self.landmarks is None else self.landmarks[index]
                out[row] = load_face(self.paths[index], self.side, lmk)
        except InsightFaceLRError as exc:  # returned, not raised: a worker would wrap it in a traceback text
            return exc
        return torch.from_numpy(out).permute(0, 3, 1, 2)


def batch_windows(n: int, batch_size: int, start: int = 0) -> list[tuple[int, int, int]]:
    """``(lo, stop, keep_from)`` per batch covering ``[start, n)``: the last batch is the full-size window ending
    at ``n`` (rows before ``keep_from`` are context only), so batch-statistics FaceBN never sees a tiny tail."""
    out = []
    for begin in range(start, n, batch_size):
        stop = min(begin + batch_size, n)
        lo = max(stop - batch_size, 0)
        out.append((lo, stop, begin))
    return out


def iterate_batches(dataset: FaceBatches, windows: Sequence[tuple[int, int, int]], workers: int,
                    pin_memory: bool = False) -> Iterator[tuple[int, int, torch.Tensor]]:
    """``(begin, stop, faces)`` per window, in order; ``faces`` holds rows ``lo..stop`` (see :func:`batch_windows`)."""
    loader = DataLoader(dataset, batch_size=None, sampler=[(lo, stop) for lo, stop, _ in windows],
                        num_workers=max(int(workers), 0), pin_memory=pin_memory,
                        worker_init_fn=_one_thread if workers > 0 else None,
                        prefetch_factor=4 if workers > 0 else None, persistent_workers=False)
    for (_, stop, begin), faces in zip(windows, loader, strict=True):
        if isinstance(faces, InsightFaceLRError):
            raise faces  # the one-line message naming the file, as if decoded in this process
        yield begin, stop, faces


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # workers decode with Pillow; torch threads would only compete with the model
