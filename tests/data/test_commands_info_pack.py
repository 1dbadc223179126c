"""``insightface-lr info`` and ``insightface-lr pack`` through ``cli.main``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from insightface_lr import cli
from insightface_lr.data.datasets import RecordDataset
from insightface_lr.data.image_codec import encode_jpeg

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "mxnet"


def info_json(capsys, path: Path) -> dict:
    assert cli.main(["info", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_rec(capsys) -> None:
    info = info_json(capsys, FIX / "train.idx")
    assert info["file"] == str(FIX / "train.rec") and info["records"] == 10
    assert (info["images"], info["identities"]) == (6, 3)  # 3 identity records (labels 0, 1, 3)
    assert info["header"] == {"flag": 2, "label": [7.0, 10.0], "id": 0, "id2": 1}
    assert info["property"] == {"num_classes": 4, "image_size": "16x16"}
    assert info["image_sizes"] == ["16x16", "32x32"]
    assert cli.main(["info", str(FIX)]) == 0  # folder form, text output
    text = capsys.readouterr().out
    assert "images: 6\n" in text and "image_sizes: 16x16, 32x32\n" in text


def test_info_rec_without_header_counts_labels(capsys) -> None:
    info = info_json(capsys, FIX / "misc.rec")
    assert (info["records"], info["images"], info["identities"]) == (4, 4, 4)  # labels 3.0, 7, 2, 1.5
    assert "property" not in info and info["image_sizes"] == ["16x16", "not an image"]


def test_info_bin(capsys) -> None:
    info = info_json(capsys, FIX / "pairs.bin")
    assert (info["pairs"], info["positives"], info["negatives"], info["images"]) == (2, 1, 1, 4)
    assert info["image_sizes"] == ["16x16"]


def test_info_errors_are_one_line_exit_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "broken.rec"
    bad.write_bytes(b"\0" * 32)
    for path in (bad, tmp_path / "x.txt", tmp_path / "missing.bin"):
        assert cli.main(["info", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("insightface-lr info: error: ") and str(path) in err and err.count("\n") == 1


def test_pack_then_info(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(3)
    for name, count in (("p2", 1), ("p1", 2)):
        (tmp_path / "faces" / name).mkdir(parents=True)
        for j in range(count):
            (tmp_path / "faces" / name / f"{j}.jpg").write_bytes(
                encode_jpeg(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)))
    out = tmp_path / "out"
    assert cli.main(["pack", str(tmp_path / "faces"), str(out)]) == 0
    assert "3 images, 2 identities, 12x12" in capsys.readouterr().out
    info = info_json(capsys, out)
    assert (info["images"], info["identities"], info["image_sizes"]) == (3, 2, ["12x12"])
    assert RecordDataset(out).labels == [0, 0, 1]  # p1 sorts first
    assert cli.main(["pack", str(tmp_path / "nowhere"), str(out)]) == 2
    assert "image folder not found" in capsys.readouterr().err


def test_info_says_when_the_index_is_missing_or_empty(tmp_path: Path, capsys) -> None:
    import shutil

    shutil.copy(FIX / "train.rec", tmp_path / "train.rec")
    info = info_json(capsys, tmp_path / "train.rec")  # no .idx: records found by a scan, and it says so
    assert info["records"] == 10 and info["index"].startswith("none: train.idx is missing")
    (tmp_path / "train.idx").write_bytes(b"")  # a zero-byte index: an error naming it, not "records: 0"
    assert cli.main(["info", str(tmp_path / "train.rec")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'train.idx'}: index file lists no record" in err
    assert "delete train.idx" in err


def _face_folder(root: Path, sizes: dict[str, list[int]]) -> None:
    rng = np.random.default_rng(0)
    for name, sides in sizes.items():
        (root / name).mkdir(parents=True)
        for j, side in enumerate(sides):
            (root / name / f"{j}.jpg").write_bytes(encode_jpeg(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)))


def test_pack_names_every_bad_image_at_once(tmp_path: Path, capsys) -> None:
    _face_folder(tmp_path / "faces", {"a": [16, 16], "b": [16, 24], "c": [16]})
    (tmp_path / "faces" / "a" / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "faces" / "c" / "empty.png").write_bytes(b"")
    assert cli.main(["pack", str(tmp_path / "faces"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "3 bad image(s) of 7" in err and "--skip-bad" in err
    for name in ("broken.jpg", "1.jpg: image is 24x24 but the common size is 16x16", "empty.png"):
        assert name in err, name
    assert not (tmp_path / "out").exists()


def test_pack_skip_bad_leaves_them_out_and_lists_them(tmp_path: Path, capsys) -> None:
    _face_folder(tmp_path / "faces", {"a": [16, 16], "b": [24], "c": [16]})
    (tmp_path / "faces" / "a" / "broken.jpg").write_bytes(b"not an image")
    assert cli.main(["pack", str(tmp_path / "faces"), str(tmp_path / "out"), "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert f"skipped {tmp_path / 'faces' / 'a' / 'broken.jpg'}" in out
    assert f"skipped {tmp_path / 'faces' / 'b' / '0.jpg'}: image is 24x24" in out
    assert f"skipped {tmp_path / 'faces' / 'b'}: identity left out" in out  # its only image was bad
    packed = RecordDataset(tmp_path / "out")
    assert packed.labels == [0, 0, 1] and packed.num_classes == 2  # a, c: labels without a gap
