"""IJB-B/C from InsightFace's layout, read as ``recognition/_evaluation_/ijb/ijb_11.py`` reads it.

Real-format check (facts from that script, no code copied): ``<IJBC>/meta/ijbc_face_tid_mid.txt`` is
``image_name tid mid`` per line (space-separated, no header), ``meta/ijbc_template_pair_label.txt`` is
``tid_1 tid_2 label``, ``meta/ijbc_name_5pts_score.txt`` is ``image_name`` + 10 landmark coordinates + the
detector score, line by line the same images as the tid/mid list; faces are ``<IJBC>/loose_crop/<name>``,
aligned from the landmarks to 112 x 112, embedded with the flip test (features of both views added, F2), kept
unnormalised (N1), multiplied by the detector score (D1), averaged per media, summed per template, normalised;
TAR at FAR 1e-6..1e-1 is the TPR of the ROC point whose FPR is nearest each FAR.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from trees import cos, file_vector, nearest_tar, stub_model, write_face

from insightface_lr.errors import DataFormatError
from insightface_lr.eval.protocols.ijb import read
from insightface_lr.eval.protocols.loader import align_face
from insightface_lr.eval.protocols.runner import ProtocolConfig, run_protocol

TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                     [41.5493, 92.3655], [70.7299, 92.2041]])  # ArcFace's 112 x 112 landmark template
LOOSE = 150  # loose crops: the face sits at an offset, so alignment really moves pixels


def make_ijb(root: Path, faces: list[tuple[str, int, int, list, float]], pairs: list[tuple[int, int, int]],
             target: str = "ijbc") -> Path:
    """``faces``: (name, template, media, vector, detector score); landmarks put the face at offset (19, 7)."""
    lmk = (TEMPLATE + [19, 7]).ravel()
    tid, pts = [], []
    for name, template, media, vector, score in faces:
        write_face(root / "loose_crop" / name, vector, size=(LOOSE, LOOSE))
        tid.append(f"{name} {template} {media}")
        pts.append(" ".join([name, *(f"{v:.3f}" for v in lmk), f"{score:g}"]))
    meta = root / "meta"
    meta.mkdir(parents=True)
    (meta / f"{target}_face_tid_mid.txt").write_text("\n".join(tid) + "\n")
    (meta / f"{target}_name_5pts_score.txt").write_text("\n".join(pts) + "\n")
    (meta / f"{target}_template_pair_label.txt").write_text("\n".join(f"{a} {b} {c}" for a, b, c in pairs) + "\n")
    return root


def test_alignment_puts_landmarks_on_the_template() -> None:
    """Markers drawn at the 5 landmarks of a loose crop land on the template after ``align_face``."""
    rng = np.random.default_rng(0)
    image = np.zeros((200, 180, 3), np.uint8)
    angle, scale, shift = 0.2, 1.3, np.array([30.0, 40.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = TEMPLATE @ rot.T + shift
    for x, y in np.round(landmarks).astype(int):
        image[y - 1:y + 2, x - 1:x + 2] = 255
    image[..., 1] = rng.integers(0, 50, size=image.shape[:2])  # texture elsewhere, only red/blue markers
    aligned = align_face(image, landmarks)
    assert aligned.shape == (112, 112, 3)
    for x, y in TEMPLATE:
        window = aligned[int(round(y)) - 2:int(round(y)) + 3, int(round(x)) - 2:int(round(x)) + 3, 0]
        assert window.max() > 150  # the marker arrived at the template point
    assert aligned[5:25, 5:25, 0].max() < 50  # and nowhere near the corner


FACES = [  # template 1: three media (10 twice: a video), template 2: one media, template 3: one media
    ("a.jpg", 1, 10, [1, 0, 0], 1.0), ("b.jpg", 1, 10, [0, 1, 0], 1.0), ("c.jpg", 1, 11, [0, 0, 1], 0.5),
    ("d.jpg", 1, 12, [1, 1, 0], 1.0), ("e.jpg", 2, 20, [1, 0.8, 0.3], 1.0), ("f.jpg", 3, 30, [-1, 0, 1], 0.9),
]


def test_template_of_three_media_by_hand(tmp_path: Path) -> None:
    root = make_ijb(tmp_path / "IJBC", FACES, [(1, 2, 1), (1, 3, 0), (2, 3, 0)])
    results = run_protocol({"stub": stub_model()}, "ijbc", root, tmp_path / "cache", ProtocolConfig(batch_size=2))
    (record,) = results["records"]
    v = {name: file_vector(root / "loose_crop" / name) for name, *_ in FACES}
    # by hand: media 10 = mean(a, b); media 11 = 0.5 c (detector score); media 12 = d; template = their sum
    t1 = (v["a.jpg"] + v["b.jpg"]) / 2 + 0.5 * v["c.jpg"] + v["d.jpg"]
    genuine, impostors = cos(t1, v["e.jpg"]), [cos(t1, v["f.jpg"]), cos(v["e.jpg"], v["f.jpg"])]
    assert genuine > max(impostors)  # so every FAR reads TAR = 1 (the (0, 1) ROC corner is nearest)
    assert all(value == 1.0 for value in record["metrics"].values())
    # the pooled score itself, through the public pieces the protocol uses
    from insightface_lr.eval.ijb import pool_templates, template_pair_scores
    from insightface_lr.eval.protocols.embed import model_digest  # noqa: F401 (the cache key helper exists)

    bench = read(root, "ijbc")
    emb = 2 * np.stack([v[name] for name, *_ in FACES])  # the flip test sums two identical views
    feats, ids = pool_templates(emb, bench.labels["templates"], bench.labels["medias"], bench.labels["faceness"])
    assert template_pair_scores(feats, ids, [1], [2])[0] == pytest.approx(genuine, abs=1e-6)


def test_random_templates_equal_plain_loop(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    faces = []
    for t in range(1, 9):  # 8 templates, 1-3 media of 1-2 frames each
        for m in range(rng.integers(1, 4)):
            for f in range(rng.integers(1, 3)):
                faces.append((f"{t}_{m}_{f}.jpg", t, 100 * t + m, rng.uniform(-0.9, 0.9, 3), rng.uniform(0.3, 1.0)))
    pairs = [(a, b, int(rng.random() < 0.4)) for a in range(1, 9) for b in range(a + 1, 9)]
    root = make_ijb(tmp_path / "IJBB", faces, pairs, target="ijbb")
    (record,) = run_protocol({"stub": stub_model()}, "ijbb", root, tmp_path / "cache",
                             ProtocolConfig(batch_size=4, workers=1))["records"]
    templates = {}
    for name, t, m, _, score in faces:  # plain loop pooling: media mean of score-weighted features, then sum
        weighted = float(f"{score:g}") * file_vector(root / "loose_crop" / name)  # the score as written
        templates.setdefault(t, {}).setdefault(m, []).append(weighted)
    pooled = {t: sum(np.mean(frames, axis=0) for frames in medias.values()) for t, medias in templates.items()}
    scores = [cos(pooled[a], pooled[b]) for a, b, _ in pairs]
    labels = [y for *_, y in pairs]
    for far in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1):
        assert record["metrics"][f"tar@far={far:g}"] == pytest.approx(nearest_tar(scores, labels, far))


def test_label_files_must_agree(tmp_path: Path) -> None:
    root = make_ijb(tmp_path / "IJBC", FACES, [(1, 2, 1), (1, 3, 0)])
    lines = (root / "meta" / "ijbc_name_5pts_score.txt").read_text().splitlines()
    (root / "meta" / "ijbc_name_5pts_score.txt").write_text("\n".join([lines[1], lines[0], *lines[2:]]))
    with pytest.raises(DataFormatError, match=r"ijbc_name_5pts_score.txt: line 1 does not name the image of line 1"):
        read(root, "ijbc")
    (root / "meta" / "ijbc_name_5pts_score.txt").write_text("\n".join(lines))
    (root / "meta" / "ijbc_template_pair_label.txt").write_text("1 2 1\n1 3\n")
    with pytest.raises(DataFormatError, match="ijbc_template_pair_label.txt: line 2: expected 3 space-separated"):
        read(root, "ijbc")
    (root / "meta" / "ijbc_template_pair_label.txt").write_text("1 2 1\n")
    (root / "loose_crop" / "c.jpg").unlink()
    with pytest.raises(DataFormatError, match=r"names 1 image\(s\) not in .*loose_crop, e.g. 'c.jpg'"):
        read(root, "ijbc")
