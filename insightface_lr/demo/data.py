"""The demo's data stage: the faces every model trains on and the sets they are evaluated on.

Synthetic (default): the embedded face set (``train.rec`` + ``test.bin``) and its camera-shifted copy.
Real (``--faces``): the user's labelled faces, split by whole identities with fixed seeds into

- ``val.bin``: ``val_fraction`` of the identities, as 10 folds of open-set pairs: the only set the demo
  chooses anything on (tuning, budgets), so the reported test ``.bin`` files never shape a setting;
- ``train.rec``: the other identities (the teacher, and the students of regime "same");

and, for both sources, ``subset/train.rec``: a seeded ``student_fraction`` of the training identities (the
students of regime "subset", where the teacher knows more people than the students ever see).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data.faces import FaceSource
from ..data.splits import split_identities, write_pairs_bin, write_subset_rec
from ..errors import DataFormatError
from .settings import DemoSettings

VAL_SEED_OFFSET = 1  # the validation and subset draws use data_seed + offset: independent of each other
SUBSET_SEED_OFFSET = 2


def make_synthetic(data: Path, s: DemoSettings) -> dict[str, Any]:
    from ..data.synthetic import SyntheticFaceConfig, write_synthetic_dataset
    from .shifted import ShiftConfig, write_shifted_bin

    paths = write_synthetic_dataset(data, train_ids=s.train_ids, test_ids=s.test_ids,
                                    images_per_identity=s.images_per_identity, pairs=s.pairs, seed=s.data_seed,
                                    base=SyntheticFaceConfig(coarse_clusters=s.coarse_clusters,
                                                             coarse_jitter=s.coarse_jitter,
                                                             fine_detail=s.fine_detail))
    write_shifted_bin(paths.test_bin, data / "shifted.bin", ShiftConfig(seed=s.data_seed))
    info = {"train_ids": s.train_ids, "test_ids": s.test_ids, "images_per_identity": s.images_per_identity,
            "pairs": s.pairs}
    return {**info, **_write_subset(FaceSource(data / "train.rec"), data, s)}


def make_real(data: Path, s: DemoSettings) -> dict[str, Any]:
    """Split ``s.faces`` into val.bin / train.rec (and the subset); the test bins are only checked here."""
    source = FaceSource(s.faces)
    if source.image_size != (112, 112):
        raise DataFormatError(f"{s.faces}: faces are {source.image_size[0]}x{source.image_size[1]}; the demo "
                              "expects InsightFace's aligned 112x112 crops")
    for path in s.test_bins:
        if not Path(path).is_file():
            raise DataFormatError(f"--test-bin {path}: file not found (an InsightFace verification .bin)")
    val_ids, train_ids = np.array([], np.int64), np.unique(source.labels)
    if s.val_fraction:
        val_ids, train_ids = split_identities(source.labels, s.val_fraction, s.data_seed + VAL_SEED_OFFSET)
        write_pairs_bin(source, data / "val.bin", val_ids, s.val_pairs_per_fold, s.data_seed + VAL_SEED_OFFSET)
    write_subset_rec(source, data, train_ids)
    info = {"faces": str(s.faces), "identities": len(set(source.labels)), "images": len(source),
            "val_identities": len(val_ids), "train_identities": len(train_ids)}
    return {**info, **_write_subset(FaceSource(data / "train.rec"), data, s)}


def _write_subset(train: FaceSource, data: Path, s: DemoSettings) -> dict[str, Any]:
    if "subset" not in s.regimes:
        return {}
    chosen, _ = split_identities(train.labels, s.student_fraction, s.data_seed + SUBSET_SEED_OFFSET)
    write_subset_rec(train, data / "subset", chosen)
    return {"subset_identities": len(chosen), "subset_images": int(np.isin(train.labels, chosen).sum())}


def bins(data: Path, s: DemoSettings) -> dict[str, Path]:
    """Name -> path of every set the models are evaluated on (the test sets first, then val)."""
    from ..eval.report import unique_names

    if not s.real:
        return {"test": data / "test.bin", "shifted": data / "shifted.bin"}
    paths = [Path(p) for p in s.test_bins]
    named = dict(zip(unique_names([p.stem for p in paths]), paths, strict=True))
    if "val" in named:
        raise DataFormatError("--test-bin: a test set may not be named val.bin (the demo's validation split)")
    if s.val_fraction:
        named["val"] = data / "val.bin"
    return named
