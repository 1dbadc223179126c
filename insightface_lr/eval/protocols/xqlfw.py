"""XQLFW (Knoche, Hörmann, Rigoll, FG 2021): cross-quality LFW, 1:1 verification with 10-fold accuracy.

Official layout of the release: ``xqlfw_pairs.txt`` next to the image folder ``xqlfw_aligned_112/`` (the
aligned 112 x 112 download; the unaligned ``lfw_original_imgs_min_qual0.85variant11/`` is used when it is the
only one), which holds LFW-style ``<Name>/<Name>_<NNNN>.jpg``. The pairs file has LFW's ``pairs.txt`` format:
an optional header ``10 300`` (folds, pairs of each kind per fold), then ``name n1 n2`` lines (same person) and
``name1 n1 name2 n2`` lines (different people), fold by fold. Accuracy is InsightFace's 10-fold protocol
(:func:`insightface_lr.eval.verification.verification_metrics`, contiguous folds in file order, which are the
10 sets of 600 pairs of the file).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ...errors import DataFormatError
from ..verification import verification_metrics
from .base import Benchmark, FaceSet, Protocol, Scores, joined, require_file

IMAGE_FOLDERS = ("xqlfw_aligned_112", "lfw_original_imgs_min_qual0.85variant11")


def parse_pairs(path: Path) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Relative image paths of each pair and the [P] same-person flags of an LFW-format pairs file."""
    lines = [line.split() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    if lines and len(lines[0]) == 2 and all(t.isdigit() for t in lines[0]):
        lines = lines[1:]  # "folds pairs_per_fold" header
    pairs, same = [], []
    for number, fields in enumerate(lines, 1):
        try:
            if len(fields) == 3:
                pairs.append((_image(fields[0], fields[1]), _image(fields[0], fields[2])))
            elif len(fields) == 4:
                pairs.append((_image(fields[0], fields[1]), _image(fields[2], fields[3])))
            else:
                raise ValueError
        except ValueError:
            raise DataFormatError(f"{path}: line {number}: expected 'name n1 n2' or 'name1 n1 name2 n2' "
                                  f"(LFW pairs.txt format), got {' '.join(fields)[:60]!r}") from None
        same.append(len(fields) == 3)
    if not pairs:
        raise DataFormatError(f"{path}: holds no pair (expected LFW pairs.txt format)")
    return pairs, np.array(same)


def _image(name: str, number: str) -> str:
    return f"{name}/{name}_{int(number):04d}.jpg"


def read(root: Path) -> Benchmark:
    root = Path(root)
    pairs_file = require_file(root / "xqlfw_pairs.txt", "XQLFW's pairs file xqlfw_pairs.txt")
    folder = next((root / f for f in IMAGE_FOLDERS if (root / f).is_dir()), None)
    if folder is None:
        raise DataFormatError(f"{root}: no image folder {IMAGE_FOLDERS[0]}/ (expected the XQLFW release)")
    pairs, same = parse_pairs(pairs_file)
    names = sorted({name for pair in pairs for name in pair})
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataFormatError(f"{pairs_file}: names {len(missing)} image(s) not in {folder}, e.g. {missing[0]!r}")
    index = {name: i for i, name in enumerate(names)}
    rows = np.array([index[name] for pair in pairs for name in pair], dtype=np.int64)
    labels = {"rows": rows, "issame": same}
    info = {"pairs": len(pairs), "genuine_pairs": int(same.sum()), "images": len(names), "folder": folder.name}
    return Benchmark("xqlfw", root, (FaceSet("images", joined(folder, names), probe_side=True),), labels, info)


def score(bench: Benchmark, emb: Mapping[str, np.ndarray]) -> Scores:
    result = verification_metrics(emb["images"][bench.labels["rows"]], bench.labels["issame"], nrof_folds=10)
    metrics = {"accuracy": result.accuracy_mean, "accuracy_std": result.accuracy_std, "val@far=1e-3": result.val}
    order = np.argsort(result.fpr, kind="stable")
    return Scores(metrics, {"roc": {"10-fold mean": {"fpr": result.fpr[order].tolist(),
                                                     "tpr": result.tpr[order].tolist()}}})


PROTOCOL = Protocol("xqlfw", "XQLFW cross-quality verification (10-fold accuracy)", read, score,
                    "xqlfw_pairs.txt, xqlfw_aligned_112/<Name>/<Name>_<NNNN>.jpg")
