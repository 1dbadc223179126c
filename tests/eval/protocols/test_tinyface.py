"""TinyFace from its official layout, read as AdaFace's ``validation_lq/validate_tinyface.py`` reads it.

Real-format check (facts taken from that script and from TinyFace's own evaluation code, no code copied):
``tinyface/Testing_Set/{Probe,Gallery_Match,Gallery_Distractor}/`` image folders,
``Testing_Set/probe_img_ID_pairs.mat`` with variables ``probe_set`` (a cell array of Probe file names, read
as ``p[0].item()``) and ``probe_ids``, and ``Testing_Set/gallery_match_img_ID_pairs.mat`` with ``gallery_set``
and ``gallery_ids``; distractors are every image of Gallery_Distractor, with no id; probes are scored against
Gallery_Match + Gallery_Distractor by inner product of normalised features, CMC rank-k. Files are
``<id>_<n>.jpg``; sizes are native and vary (here 20 x 16 and 14 x 11).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from trees import cos, file_vector, random_vectors, rank_of_mate, stub_model, write_face, write_name_ids

from insightface_lr.errors import DataFormatError
from insightface_lr.eval.protocols.runner import ProtocolConfig, run_protocol
from insightface_lr.eval.protocols.tinyface import read


def make_tinyface(root: Path, probes: dict[str, tuple[int, list]], gallery: dict[str, tuple[int, list]],
                  distractors: dict[str, list]) -> Path:
    base = root / "tinyface" / "Testing_Set"
    for folder, entries in (("Probe", probes), ("Gallery_Match", gallery)):
        for k, (name, (_, vector)) in enumerate(entries.items()):
            write_face(base / folder / name, vector, size=(20, 16) if k % 2 else (14, 11))
    for name, vector in distractors.items():
        write_face(base / "Gallery_Distractor" / name, vector)
    write_name_ids(base / "probe_img_ID_pairs.mat", "probe_set", "probe_ids", list(probes),
                   [i for i, _ in probes.values()])
    write_name_ids(base / "gallery_match_img_ID_pairs.mat", "gallery_set", "gallery_ids", list(gallery),
                   [i for i, _ in gallery.values()])
    return root


HAND_PROBES = {"1_2.jpg": (1, [1, 0.1, 0]),      # its mate g1 is the closest: rank 1
               "2_2.jpg": (2, [0.6, 0.5, 0]),    # g1 (cos 0.77) beats its mate g2 (0.64): ranked 2nd
               "3_2.jpg": (3, [0, 0.3, 1])}      # its mate g3 is best among the matches, but a distractor wins
HAND_GALLERY = {"1_1.jpg": (1, [1, 0, 0]), "2_1.jpg": (2, [0, 1, 0]), "3_1.jpg": (3, [0, 0, 1])}
HAND_DISTRACTORS = {"d_1.jpg": [0, 0.35, 1], "d_2.jpg": [-1, -1, -1]}


def written_tree(tmp_path: Path, probes: dict, gallery: dict, distractors: dict):
    """The tree on disk, and the gallery/distractor vectors as written (JPEG-rounded) with the gallery labels."""
    root = make_tinyface(tmp_path / "data", probes, gallery, distractors)
    base = root / "tinyface" / "Testing_Set"
    g_vec = [file_vector(base / "Gallery_Match" / n) for n in gallery]
    d_vec = [file_vector(base / "Gallery_Distractor" / n) for n in distractors]
    return root, base, g_vec, d_vec, [i for i, _ in gallery.values()]


def _run(root: Path, tmp_path: Path, workers: int = 0) -> dict:
    results = run_protocol({"stub": stub_model()}, "tinyface", root, tmp_path / "cache",
                           ProtocolConfig(batch_size=2, workers=workers))
    (record,) = results["records"]
    return record["metrics"]


def test_hand_checked_ranks(tmp_path: Path) -> None:
    root = make_tinyface(tmp_path / "data", HAND_PROBES, HAND_GALLERY, HAND_DISTRACTORS)
    metrics = _run(root, tmp_path)
    # without distractors: probes 1 and 3 at rank 1, probe 2 at rank 2
    assert metrics["rank_1_no_distractors"] == pytest.approx(2 / 3)
    assert metrics["rank_5_no_distractors"] == 1.0
    # with distractors: d_1 beats the mate of probe 3, so only probe 1 is at rank 1
    assert metrics["rank_1"] == pytest.approx(1 / 3)
    assert metrics["rank_5"] == metrics["rank_20"] == 1.0


def test_random_tree_equals_plain_loop(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    ids = [1, 2, 3, 4, 5, 6]
    gallery = {f"{i}_1.jpg": (i, v) for i, v in zip(ids, random_vectors(rng, 6), strict=True)}
    probes = {f"{i}_{k}.jpg": (i, v) for (i, k), v in
              zip([(i, k) for i in ids for k in (2, 3)], random_vectors(rng, 12), strict=True)}
    distractors = {f"x_{k}.jpg": v for k, v in enumerate(random_vectors(rng, 30))}
    root, base, g_vec, d_vec, g_lab = written_tree(tmp_path, probes, gallery, distractors)
    with_d, without = [], []
    for name, (label, _) in probes.items():
        p = file_vector(base / "Probe" / name)
        with_d.append(rank_of_mate(p, label, g_vec + d_vec, g_lab + [-1] * len(d_vec)))
        without.append(rank_of_mate(p, label, g_vec, g_lab))
    metrics = _run(root, tmp_path, workers=2)
    for k in (1, 5, 10, 20):
        assert metrics[f"rank_{k}"] == pytest.approx(sum(r <= k for r in with_d) / len(with_d))
        assert metrics[f"rank_{k}_no_distractors"] == pytest.approx(sum(r <= k for r in without) / len(without))
    assert metrics["rank_1"] < metrics["rank_1_no_distractors"]  # 30 random distractors do cost rank-1


def test_layout_errors_name_the_file(tmp_path: Path) -> None:
    root = make_tinyface(tmp_path / "data", HAND_PROBES, HAND_GALLERY, HAND_DISTRACTORS)
    base = root / "tinyface" / "Testing_Set"
    assert read(root).info == {"probes": 3, "gallery": 3, "distractors": 2, "identities": 3}
    (base / "Probe" / "1_2.jpg").rename(base / "Probe" / "9_9.jpg")
    with pytest.raises(DataFormatError, match=r"probe_img_ID_pairs.mat: names 1 image\(s\) not in .*Probe"):
        read(root)
    (base / "Probe" / "9_9.jpg").rename(base / "Probe" / "1_2.jpg")
    write_name_ids(base / "gallery_match_img_ID_pairs.mat", "wrong_set", "gallery_ids", ["1_1.jpg"], [1])
    with pytest.raises(DataFormatError, match=r"gallery_match_img_ID_pairs.mat: variable\(s\) \['gallery_set'\]"):
        read(root)
    (base / "gallery_match_img_ID_pairs.mat").unlink()
    with pytest.raises(DataFormatError, match="gallery_match_img_ID_pairs.mat: file not found"):
        read(root)


def average_precision_loop(probe, label, gallery, gallery_labels) -> float:
    """Plain loop: sort the gallery by score (non-mates first among equal scores: ties against the probe), then
    the mean over the mates of (mates so far / entries so far)."""
    ranked = sorted(((cos(probe, g), lab != label) for g, lab in zip(gallery, gallery_labels, strict=True)),
                    key=lambda t: (-t[0], not t[1]))
    hits, precisions = 0, []
    for position, (_, non_mate) in enumerate(ranked, start=1):
        if not non_mate:
            hits += 1
            precisions.append(hits / position)
    return sum(precisions) / len(precisions)


def test_map_hand_checked_and_against_a_plain_loop(tmp_path: Path) -> None:
    from insightface_lr.eval.identification import average_precision

    # probe of id 1: gallery ranked [mate 0.9, other 0.8, mate 0.5, other 0.1] -> AP = (1/1 + 2/3) / 2
    scores = np.array([[0.9, 0.8, 0.5, 0.1], [0.2, 0.2, 0.2, 0.9]])
    gallery_labels = np.array([1, 2, 1, -1])
    ap = average_precision(scores, np.array([1, 2]), gallery_labels)
    assert ap[0] == pytest.approx((1 + 2 / 3) / 2)
    assert ap[1] == pytest.approx(1 / 4)  # its one mate ties with two others and trails a distractor: 1 / 4
    assert np.isnan(average_precision(scores[:1], np.array([7]), gallery_labels)[0])  # no mate: NaN
    # a tree with several gallery images per identity, through the protocol, against the plain loop
    rng = np.random.default_rng(4)
    ids = [1, 2, 3, 4]
    gallery = {f"{i}_{k}.jpg": (i, v) for (i, k), v in
               zip([(i, k) for i in ids for k in (1, 2, 3)], random_vectors(rng, 12), strict=True)}
    probes = {f"{i}_9.jpg": (i, v) for i, v in zip(ids, random_vectors(rng, 4), strict=True)}
    distractors = {f"x_{k}.jpg": v for k, v in enumerate(random_vectors(rng, 10))}
    root, base, g_vec, d_vec, g_lab = written_tree(tmp_path, probes, gallery, distractors)
    expected = [average_precision_loop(file_vector(base / "Probe" / n), label, g_vec + d_vec, g_lab + [-1] * 10)
                for n, (label, _) in probes.items()]
    expected_plain = [average_precision_loop(file_vector(base / "Probe" / n), label, g_vec, g_lab)
                      for n, (label, _) in probes.items()]
    metrics = _run(root, tmp_path)
    assert metrics["mAP"] == pytest.approx(np.mean(expected))
    assert metrics["mAP_no_distractors"] == pytest.approx(np.mean(expected_plain))
    assert metrics["mAP"] <= metrics["mAP_no_distractors"]
