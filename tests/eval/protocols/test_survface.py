"""QMUL-SurvFace from the release layout (facts from the benchmark's README/protocol page and published readers
of it, no code copied): ``Face_Verification_Test_Set/verification_images/`` with ``positive_pairs_names.mat``
and ``negative_pairs_names.mat`` (variables of the same names, [P, 2] cell arrays of file names), and
``Face_Identification_Test_Set/{gallery,mated_probe,unmated_probe}/`` with ``gallery_img_ID_pairs.mat``
(``gallery_set``, ``gallery_ids``) and ``mated_probe_img_ID_pairs.mat`` (``mated_probe_set``,
``mated_probe_ids``); file names ``<person>_<camera>_<image>.jpg``, unmated ones e.g. ``distractors_<n>.jpg``.
Metrics: TAR@FAR 0.3/0.1/0.01/0.001 and TPIR20@FPIR 0.3/0.2/0.1."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat
from trees import cos, file_vector, nearest_tar, stub_model, write_face, write_name_ids

from insightface_lr.errors import DataFormatError
from insightface_lr.eval.protocols.runner import ProtocolConfig, run_protocol
from insightface_lr.eval.protocols.survface import read


def pair_cells(pairs) -> np.ndarray:
    out = np.empty((len(pairs), 2), dtype=object)
    for i, (a, b) in enumerate(pairs):
        out[i, 0], out[i, 1] = a, b
    return out


def make_survface(root: Path, rng: np.random.Generator) -> Path:
    ver = root / "Face_Verification_Test_Set"
    people = {p: rng.uniform(-0.9, 0.9, 3) for p in range(1, 9)}
    names = {p: [f"{p}_cam{c}_{k}.jpg" for c, k in ((1, 1), (2, 5))] for p in people}
    for p, vector in people.items():
        for n, name in enumerate(names[p]):
            write_face(ver / "verification_images" / name, vector + rng.normal(0, 0.3 + 0.2 * n, 3), size=(24, 20))
    positives = [tuple(names[p]) for p in people]
    negatives = [(names[p][0], names[p % 8 + 1][1]) for p in people]
    savemat(ver / "positive_pairs_names.mat", {"positive_pairs_names": pair_cells(positives)})
    savemat(ver / "negative_pairs_names.mat", {"negative_pairs_names": pair_cells(negatives)})
    ide = root / "Face_Identification_Test_Set"
    gallery = {f"{p}_cam1_{k}.jpg": p for p in range(1, 6) for k in (1, 2)}  # 5 watch-list persons
    mated = {f"{p}_cam3_{k}.jpg": p for p in range(1, 6) for k in (7, 8)}
    unmated = [f"distractors_{k}.jpg" for k in range(10)] + ["9_cam2_1.jpg"]
    for folder, entries in (("gallery", gallery), ("mated_probe", mated)):
        for name, p in entries.items():
            write_face(ide / folder / name, people[p] + rng.normal(0, 0.35, 3))
    for name in unmated:
        write_face(ide / "unmated_probe" / name, rng.uniform(-0.9, 0.9, 3))
    write_name_ids(ide / "gallery_img_ID_pairs.mat", "gallery_set", "gallery_ids", list(gallery),
                   list(gallery.values()))
    write_name_ids(ide / "mated_probe_img_ID_pairs.mat", "mated_probe_set", "mated_probe_ids", list(mated),
                   list(mated.values()))
    return root


def plain_tpir(probes, labels, gallery, gallery_labels, fpir, rank=20) -> float:
    """Plain loop: alarm threshold = the (floor(FPIR * N) + 1)-th highest top score of the N unmated probes;
    a mated probe counts when its best mate is within ``rank`` and strictly above the threshold."""
    tops = sorted((max(cos(p, g) for g in gallery) for p, lab in zip(probes, labels, strict=True) if lab < 0),
                  reverse=True)
    k = math.floor(fpir * len(tops) + 1e-9)
    threshold = tops[k] if k < len(tops) else -math.inf
    hits = []
    for p, lab in zip(probes, labels, strict=True):
        if lab < 0:
            continue
        best = max(cos(p, g) for g, gl in zip(gallery, gallery_labels, strict=True) if gl == lab)
        beaten = sum(1 for g, gl in zip(gallery, gallery_labels, strict=True) if gl != lab and cos(p, g) >= best)
        hits.append(1 + beaten <= rank and best > threshold)
    return sum(hits) / len(hits)


def test_metrics_equal_plain_loops(tmp_path: Path) -> None:
    root = make_survface(tmp_path / "QMUL-SurvFace", np.random.default_rng(11))
    (record,) = run_protocol({"stub": stub_model()}, "survface", root, tmp_path / "cache",
                             ProtocolConfig(batch_size=4, workers=1))["records"]
    m = record["metrics"]
    ver = root / "Face_Verification_Test_Set" / "verification_images"
    scores, labels = [], []
    for key, label in (("positive_pairs_names", 1), ("negative_pairs_names", 0)):
        from scipy.io import loadmat

        for a, b in loadmat(root / "Face_Verification_Test_Set" / f"{key}.mat")[key]:
            scores.append(cos(file_vector(ver / a.item()), file_vector(ver / b.item())))
            labels.append(label)
    for far in (0.3, 0.1, 0.01, 0.001):
        assert m[f"tar@far={far:g}"] == pytest.approx(nearest_tar(scores, labels, far))
    ide = root / "Face_Identification_Test_Set"
    bench = read(root)
    gallery = [file_vector(Path(p)) for p in bench.set("gallery").paths]
    probes = [file_vector(Path(p)) for p in bench.set("mated_probe").paths + bench.set("unmated_probe").paths]
    probe_labels = list(bench.labels["mated_probe"]) + [-1] * len(bench.set("unmated_probe"))
    values = []
    for fpir in (0.3, 0.2, 0.1):
        values.append(plain_tpir(probes, probe_labels, gallery, list(bench.labels["gallery"]), fpir))
        assert m[f"tpir20@fpir={fpir:g}"] == pytest.approx(values[-1])
    assert values[0] > values[-1]  # a stricter alarm rate rejects some mated probes
    assert (ide / "unmated_probe" / "9_cam2_1.jpg").is_file() and bench.info["unmated_probe"] == 11


def test_hand_checked_open_set(tmp_path: Path) -> None:
    """Gallery: persons 1 and 2. Mated probes: p1 (cos 0.99 to its mate), p2 (mate ranked 2nd, cos 0.6).
    Unmated: u1 (top score 0.95), u2 (0.1). FPIR 0.5 -> threshold 0.1 (2nd highest): p1 and p2 both counted
    (rank 2 <= 20); FPIR 0 -> threshold 0.95: only p1."""
    ide = tmp_path / "sf" / "Face_Identification_Test_Set"
    gallery = {"1_c_1.jpg": (1, [1, 0, 0]), "2_c_1.jpg": (2, [0, 1, 0])}
    mated = {"1_c_2.jpg": (1, [1, 0.14, 0]), "2_c_2.jpg": (2, [0.8, 0.75, 0])}
    unmated = {"distractors_1.jpg": [0.95, 0, 0.31], "distractors_2.jpg": [0.1, -0.2, 0.97]}
    for folder, entries in (("gallery", gallery), ("mated_probe", mated)):
        for name, (_, v) in entries.items():
            write_face(ide / folder / name, v)
    for name, v in unmated.items():
        write_face(ide / "unmated_probe" / name, v)
    write_name_ids(ide / "gallery_img_ID_pairs.mat", "gallery_set", "gallery_ids", list(gallery), [1, 2])
    write_name_ids(ide / "mated_probe_img_ID_pairs.mat", "mated_probe_set", "mated_probe_ids", list(mated), [1, 2])
    from insightface_lr.eval.protocols import survface

    bench = read(tmp_path / "sf")
    emb = {s.name: np.stack([file_vector(Path(p)) for p in s.paths]) for s in bench.sets}
    stats = survface.probe_stats(np.concatenate([emb["mated_probe"], emb["unmated_probe"]]), [1, 2, -1, -1],
                                 emb["gallery"], bench.labels["gallery"])
    assert stats.ranks.tolist() == [1, 2, 0, 0]
    assert stats.open_set((0.5,), 20)[0.5]["dir"] == 1.0
    assert stats.open_set((0.0,), 20)[0.0]["dir"] == 0.5
    assert stats.open_set((0.0,), 1)[0.0]["dir"] == 0.5 and stats.open_set((0.5,), 1)[0.5]["dir"] == 0.5


def test_mat_files_must_match_the_images(tmp_path: Path) -> None:
    root = make_survface(tmp_path / "QMUL-SurvFace", np.random.default_rng(0))
    ver = root / "Face_Verification_Test_Set"
    savemat(ver / "negative_pairs_names.mat", {"negative_pairs_names": pair_cells([("1_cam1_1.jpg", "x.jpg")])})
    with pytest.raises(DataFormatError, match=r"negative_pairs_names.mat: names 1 image\(s\) not in verification"):
        read(root)
    savemat(ver / "negative_pairs_names.mat", {"negative_pairs_names": pair_cells([("1_cam1_1.jpg",) * 2])[:, :1]})
    with pytest.raises(DataFormatError, match=r"must be a \[P, 2\] cell array"):
        read(root)
    (ver / "negative_pairs_names.mat").write_bytes(b"not a mat file")
    with pytest.raises(DataFormatError, match="negative_pairs_names.mat: not a readable MATLAB .mat file"):
        read(root)
