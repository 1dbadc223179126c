"""SCface from its official layout (facts from the SCface distribution as bob.db.scface and other readers list
it, no code copied): ``mugshot_frontal_cropped_all/<sid>_frontal.JPG`` and
``surveillance_cameras_distance_<d>/cam<c>/<sid>_cam<c>_<d>.jpg`` for d = 1, 2, 3; cameras 1-5 visible light,
6-7 infrared. Metric: rank-1 of each distance's probes against the mugshot gallery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from trees import file_vector, rank_of_mate, stub_model, write_face

from insightface_lr.errors import DataFormatError
from insightface_lr.eval.protocols.runner import ProtocolConfig, run_protocol
from insightface_lr.eval.protocols.scface import read

MUGSHOTS = {1: [1, 0, 0], 2: [0, 1, 0], 3: [0, 0, 1]}
PROBES = {  # (subject, camera, distance) -> vector
    (1, 1, 1): [1, 0.2, 0], (2, 1, 1): [0.7, 0.5, 0],  # subject 2 at d1: mugshot 1 wins, its own is 2nd
    (3, 2, 1): [0, 0.1, 1], (2, 6, 1): [0, 1, 0.1],     # camera 6 is infrared: left out by default
    (1, 1, 2): [1, 0, 0.3], (2, 2, 2): [0.1, 1, 0], (3, 1, 2): [0.9, 0, 0.5],  # subject 3 at d2: ranked 2nd
    (1, 1, 3): [1, 0, 0], (2, 1, 3): [0, 1, 0], (3, 1, 3): [0, 0, 1],
}


def make_scface(root: Path, mugshots=MUGSHOTS, probes=PROBES) -> Path:
    for sid, vector in mugshots.items():
        write_face(root / "mugshot_frontal_cropped_all" / f"{sid:03d}_frontal.JPG", vector, size=(60, 48))
    for (sid, cam, d), vector in probes.items():
        write_face(root / f"surveillance_cameras_distance_{d}" / f"cam{cam}" / f"{sid:03d}_cam{cam}_{d}.jpg",
                   vector, size=(12 * d, 10 * d))
    return root


def test_rank_1_per_distance_by_hand(tmp_path: Path) -> None:
    root = make_scface(tmp_path / "SCface_database")
    (record,) = run_protocol({"stub": stub_model()}, "scface", root, tmp_path / "cache",
                             ProtocolConfig(batch_size=2))["records"]
    m = record["metrics"]
    assert (m["d1_rank_1"], m["d2_rank_1"], m["d3_rank_1"]) == pytest.approx((2 / 3, 2 / 3, 1.0))
    assert m["d1_rank_5"] == m["d2_rank_5"] == 1.0
    assert read(root).info["d1_probes"] == 3  # the infrared cam6 image is not a probe


def test_random_probes_equal_plain_loop(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    mugshots = {sid: rng.uniform(-0.9, 0.9, 3) for sid in range(1, 9)}
    probes = {(sid, cam, d): rng.uniform(-0.9, 0.9, 3) for sid in mugshots for cam in (1, 3) for d in (1, 2, 3)}
    root = make_scface(tmp_path / "scface", mugshots, probes)
    (record,) = run_protocol({"stub": stub_model()}, "scface", root, tmp_path / "cache",
                             ProtocolConfig(batch_size=4, workers=2))["records"]
    gallery = [file_vector(root / "mugshot_frontal_cropped_all" / f"{sid:03d}_frontal.JPG") for sid in mugshots]
    for d in (1, 2, 3):
        ranks = [rank_of_mate(file_vector(root / f"surveillance_cameras_distance_{d}" / f"cam{cam}"
                                          / f"{sid:03d}_cam{cam}_{d}.jpg"), sid, gallery, list(mugshots))
                 for (sid, cam, dd) in probes if dd == d]
        assert record["metrics"][f"d{d}_rank_1"] == pytest.approx(np.mean([r == 1 for r in ranks]))
        assert record["metrics"][f"d{d}_rank_5"] == pytest.approx(np.mean([r <= 5 for r in ranks]))


def test_names_must_follow_the_layout(tmp_path: Path) -> None:
    root = make_scface(tmp_path / "scface")
    wrong = root / "surveillance_cameras_distance_2" / "cam1" / "001_cam1_3.jpg"
    write_face(wrong, [0, 0, 0])
    with pytest.raises(DataFormatError, match="001_cam1_3.jpg: names distance 3 but lies in .*distance_2"):
        read(root)
    wrong.unlink()
    write_face(root / "surveillance_cameras_distance_1" / "cam1" / "009_cam1_1.jpg", [0, 0, 0])
    with pytest.raises(DataFormatError, match="subject 009 has surveillance images but no mugshot"):
        read(root)
    (root / "surveillance_cameras_distance_1" / "cam1" / "009_cam1_1.jpg").rename(
        root / "surveillance_cameras_distance_1" / "cam1" / "probe.jpg")
    with pytest.raises(DataFormatError, match=r"probe.jpg: file name is not <sid>_cam<c>_1.jpg"):
        read(root)
