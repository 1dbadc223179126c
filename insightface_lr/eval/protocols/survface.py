"""QMUL-SurvFace (Cheng, Zhu, Gong, 2018): native surveillance faces, 1:1 verification and open-set 1:N search.

Official layout of the release (``<root>`` = its ``QMUL-SurvFace`` folder; either test set may be absent):

* ``Face_Verification_Test_Set/verification_images/*.jpg`` (10,051 images) with ``positive_pairs_names.mat``
  (variable ``positive_pairs_names``, a [5320, 2] cell array of file names) and ``negative_pairs_names.mat``
  (``negative_pairs_names``, [5320, 2]);
* ``Face_Identification_Test_Set/{gallery,mated_probe,unmated_probe}/*.jpg`` with ``gallery_img_ID_pairs.mat``
  (``gallery_set``, ``gallery_ids``) and ``mated_probe_img_ID_pairs.mat`` (``mated_probe_set``,
  ``mated_probe_ids``); unmated probes (e.g. ``distractors_<n>.jpg``) carry no id: none has a gallery mate.

Metrics, as the benchmark reports them: verification TAR@FAR = 0.3, 0.1, 0.01, 0.001 on the cosine scores of
the pairs (InsightFace's nearest-FPR reading of the ROC, :func:`insightface_lr.eval.ijb.tar_at_far`), and
identification TPIR20@FPIR = 0.3, 0.2, 0.1: a mated probe counts when its mate is within the top 20 and scores
above the threshold at which that fraction of unmated probes raises an alarm (``eval/identification.py``).
Every image is a native surveillance face: probes, verification images and LR cells share the probe path;
the gallery is embedded natively without FaceBN.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ...errors import DataFormatError
from ..ijb import roc_curve, tar_at_far
from ..verification import l2_normalize
from .base import (
    Benchmark,
    FaceSet,
    Protocol,
    Scores,
    check_same_names,
    joined,
    list_images,
    mat_name_ids,
    mat_names,
    read_mat,
)
from .ranking import probe_stats

FARS = (0.3, 0.1, 0.01, 0.001)
FPIRS = (0.3, 0.2, 0.1)
TPIR_RANK = 20
VERIFICATION, IDENTIFICATION = "Face_Verification_Test_Set", "Face_Identification_Test_Set"


def _pairs(folder: Path, key: str, known: set[str]) -> list[str]:
    path = folder / f"{key}.mat"
    cells = np.asarray(read_mat(path, (key,), f"{key}: a [P, 2] cell array of image names")[key], dtype=object)
    if cells.ndim != 2 or cells.shape[1] != 2 or cells.shape[0] == 0:
        raise DataFormatError(f"{path}: {key} must be a [P, 2] cell array of image names, got shape {cells.shape}")
    names = mat_names(cells, path, key)  # row-major: pair i = names 2i, 2i+1
    missing = sorted(set(names) - known)
    if missing:
        raise DataFormatError(f"{path}: names {len(missing)} image(s) not in verification_images, e.g. {missing[0]!r}")
    return names


def _verification(base: Path, sets: list, labels: dict) -> None:
    images = base / "verification_images"
    found = list_images(images, "QMUL-SurvFace's verification images")
    pos, neg = (_pairs(base, k, set(found)) for k in ("positive_pairs_names", "negative_pairs_names"))
    index = {name: i for i, name in enumerate(found)}
    labels["pair_rows"] = np.array([index[n] for n in pos + neg], dtype=np.int64).reshape(-1, 2)
    labels["issame"] = np.r_[np.ones(len(pos) // 2, bool), np.zeros(len(neg) // 2, bool)]
    sets.append(FaceSet("verification", joined(images, found), probe_side=True))


def _identification(base: Path, sets: list, labels: dict) -> None:
    for name, mat, names_key, ids_key, probe in (
            ("gallery", "gallery_img_ID_pairs.mat", "gallery_set", "gallery_ids", False),
            ("mated_probe", "mated_probe_img_ID_pairs.mat", "mated_probe_set", "mated_probe_ids", True)):
        found = list_images(base / name, f"QMUL-SurvFace's {name} images")
        names, ids = mat_name_ids(base / mat, names_key, ids_key, f"{names_key}/{ids_key} of the {name} images")
        check_same_names(names, found, base / mat, base / name)
        sets.append(FaceSet(name, joined(base / name, names), probe_side=probe))
        labels[name] = ids
    unmated = list_images(base / "unmated_probe", "QMUL-SurvFace's unmated probe images")
    sets.append(FaceSet("unmated_probe", joined(base / "unmated_probe", unmated), probe_side=True))


def read(root: Path) -> Benchmark:
    root = Path(root)
    sets: list[FaceSet] = []
    labels: dict[str, np.ndarray] = {}
    if (root / VERIFICATION).exists():
        _verification(root / VERIFICATION, sets, labels)
    if (root / IDENTIFICATION).exists():
        _identification(root / IDENTIFICATION, sets, labels)
    if not sets:
        raise DataFormatError(f"{root}: neither {VERIFICATION}/ nor {IDENTIFICATION}/ found (expected the "
                              "QMUL-SurvFace folder of the release)")
    info = {s.name: len(s) for s in sets}
    return Benchmark("survface", root, tuple(sets), labels, info)


def score(bench: Benchmark, emb: Mapping[str, np.ndarray]) -> Scores:
    metrics: dict[str, float] = {}
    curves: dict[str, dict] = {}
    if "verification" in emb:
        rows, unit = bench.labels["pair_rows"], l2_normalize(emb["verification"])
        scores = np.einsum("ij,ij->i", unit[rows[:, 0]], unit[rows[:, 1]])
        issame = bench.labels["issame"]
        metrics |= {f"tar@far={f:g}": v for f, v in tar_at_far(scores, issame, FARS).items()}
        fpr, tpr, _ = roc_curve(issame, scores)
        curves["roc"] = {"verification": {"fpr": fpr.tolist(), "tpr": tpr.tolist()}}
    if "gallery" in emb:
        probes = np.concatenate([emb["mated_probe"], emb["unmated_probe"]])
        labels = np.r_[bench.labels["mated_probe"], np.full(len(emb["unmated_probe"]), -1)]
        stats = probe_stats(probes, labels, emb["gallery"], bench.labels["gallery"])
        found = stats.open_set(FPIRS, TPIR_RANK)
        metrics |= {f"tpir{TPIR_RANK}@fpir={f:g}": v["dir"] for f, v in found.items()}
        curves["cmc"] = {"mated probes": stats.cmc_curve()}
    return Scores(metrics, curves)


PROTOCOL = Protocol(
    "survface", "QMUL-SurvFace verification (TAR@FAR) and open-set identification (TPIR20@FPIR)", read, score,
    "Face_Verification_Test_Set/{verification_images/,positive_pairs_names.mat,negative_pairs_names.mat}, "
    "Face_Identification_Test_Set/{gallery,mated_probe,unmated_probe}/ + *_img_ID_pairs.mat")
