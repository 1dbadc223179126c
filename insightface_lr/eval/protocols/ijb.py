"""IJB-B / IJB-C 1:1 template verification in InsightFace's layout (``recognition/_evaluation_/ijb/ijb_11.py``).

``<root>`` is the ``IJBB`` or ``IJBC`` folder of InsightFace's IJB release:

* ``meta/<ijbc>_face_tid_mid.txt``: one line per image, ``image_name template_id media_id`` (space-separated);
* ``meta/<ijbc>_template_pair_label.txt``: ``template_id_1 template_id_2 label`` (1 genuine, 0 impostor);
* ``meta/<ijbc>_name_5pts_score.txt``: ``image_name x1 y1 ... x5 y5 detector_score``, the same images in the
  same order as the tid/mid list (InsightFace indexes both by line number; we check the names agree);
* ``loose_crop/<image_name>``: the loosely cropped faces the landmarks refer to.

Each face is aligned from its 5 landmarks to the 112 x 112 ArcFace template (``norm_crop``), embedded with the
flip test (views summed, not normalised: mode F2 + N1), multiplied by its detector score (D1), pooled per
media then per template and compared by cosine (:mod:`insightface_lr.eval.ijb`); TAR@FAR 1e-6..1e-1 takes
InsightFace's nearest-FPR reading of the ROC. An LR cell degrades every aligned face (both templates).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path

import numpy as np

from ...errors import DataFormatError
from ..ijb import IJB_FARS, pool_templates, roc_curve, tar_at_far, template_pair_scores
from .base import Benchmark, FaceSet, Protocol, Scores, joined, list_images, require_dir, require_file

ROC_POINTS = np.logspace(-6, 0, 121)  # the ROC is stored at these FPRs (IJB-C has 15.7M pairs)


def read_table(path: Path, columns: int, what: str) -> np.ndarray:
    """A whitespace-separated text file of ``columns`` fields per line as a [N, columns] str array."""
    require_file(path, what)
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    tokens = text.split()
    if not lines or len(tokens) != columns * len(lines):
        bad = next((i for i, line in enumerate(lines) if len(line.split()) != columns), 0)
        raise DataFormatError(f"{path}: line {bad + 1}: expected {columns} space-separated fields ({what})")
    return np.array(tokens).reshape(-1, columns)


def _numbers(table: np.ndarray, dtype: type, path: Path, what: str) -> np.ndarray:
    try:
        return table.astype(dtype)
    except ValueError:
        raise DataFormatError(f"{path}: non-numeric field where {what} expected") from None


def read(root: Path, target: str) -> Benchmark:
    root, stem = Path(root), target.lower()
    meta = require_dir(root / "meta", f"InsightFace's {target.upper()} meta/ folder")
    tid_file, pair_file = meta / f"{stem}_face_tid_mid.txt", meta / f"{stem}_template_pair_label.txt"
    lmk_file = meta / f"{stem}_name_5pts_score.txt"
    faces = read_table(tid_file, 3, "image_name template_id media_id")
    pairs = _numbers(read_table(pair_file, 3, "template_id_1 template_id_2 label"), np.int64, pair_file,
                     "integer template ids and 0/1 labels")
    points = read_table(lmk_file, 12, "image_name, 10 landmark coordinates, detector score")
    if len(points) != len(faces) or (points[:, 0] != faces[:, 0]).any():
        bad = int(np.argmax(points[:, 0] != faces[:len(points), 0])) if len(points) <= len(faces) else len(faces)
        raise DataFormatError(f"{lmk_file}: line {bad + 1} does not name the image of line {bad + 1} of "
                              f"{tid_file.name} (expected the same images in the same order)")
    if not np.isin(pairs[:, 2], (0, 1)).all():
        raise DataFormatError(f"{pair_file}: labels must be 0 or 1")
    crop = root / "loose_crop"
    missing = sorted(set(faces[:, 0].tolist()) - set(list_images(crop, "the loose_crop faces named in meta/")))
    if missing:
        raise DataFormatError(f"{lmk_file}: names {len(missing)} image(s) not in {crop}, e.g. {missing[0]!r}")
    values = _numbers(points[:, 1:], np.float32, lmk_file, "landmark coordinates and a score")
    face_set = FaceSet("faces", joined(crop, faces[:, 0].tolist()), probe_side=True,
                       landmarks=values[:, :10].reshape(-1, 5, 2))
    labels = {"templates": _numbers(faces[:, 1], np.int64, tid_file, "template ids"),
              "medias": _numbers(faces[:, 2], np.int64, tid_file, "media ids"),
              "faceness": values[:, 10], "t1": pairs[:, 0], "t2": pairs[:, 1], "label": pairs[:, 2]}
    info = {"images": len(faces), "templates": int(np.unique(labels["templates"]).size), "pairs": len(pairs),
            "genuine_pairs": int(pairs[:, 2].sum())}
    return Benchmark(stem, root, (face_set,), labels, info)


def score(bench: Benchmark, emb: Mapping[str, np.ndarray]) -> Scores:
    lab = bench.labels
    feats, ids = pool_templates(emb["faces"], lab["templates"], lab["medias"], faceness=lab["faceness"])
    scores = template_pair_scores(feats, ids, lab["t1"], lab["t2"])
    metrics = {f"tar@far={far:g}": v for far, v in tar_at_far(scores, lab["label"], IJB_FARS).items()}
    fpr, tpr, _ = roc_curve(lab["label"], scores)
    keep = np.r_[fpr[1:] != fpr[:-1], True]  # per FPR, its highest TPR
    roc = {"fpr": ROC_POINTS.tolist(), "tpr": np.interp(ROC_POINTS, fpr[keep], tpr[keep]).tolist()}
    return Scores(metrics, {"roc": {"1:1 templates": roc}})


LAYOUT = ("meta/{t}_face_tid_mid.txt, meta/{t}_template_pair_label.txt, meta/{t}_name_5pts_score.txt, "
          "loose_crop/*.jpg")
IJBB = Protocol("ijbb", "IJB-B 1:1 template verification (TAR@FAR)", partial(read, target="ijbb"), score,
                LAYOUT.format(t="ijbb"))
IJBC = Protocol("ijbc", "IJB-C 1:1 template verification (TAR@FAR)", partial(read, target="ijbc"), score,
                LAYOUT.format(t="ijbc"))
