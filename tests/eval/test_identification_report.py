"""``insightface-lr eval --identification``: CMC rank-k per model, size and FaceBN mode, through the CLI.

The numbers in identification.json are checked against a direct call of ``identification_at_size`` on a
freshly loaded model (FaceBN cells: a FaceBN built by hand on the probes, the HR gallery by the plain
model), and the markdown table against the JSON.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hr_student import hr_calibrated_student
from PIL import Image

from insightface_lr import cli
from insightface_lr.data.datasets import ImageFilesDataset, ImageFolderDataset, RecordDataset
from insightface_lr.data.synthetic import SyntheticFaceConfig, generate_faces, write_synthetic_dataset
from insightface_lr.eval.identification import cmc, cosine_scores
from insightface_lr.eval.identification_report import IdentificationConfig, run_identification
from insightface_lr.eval.identification_sets import identification_at_size
from insightface_lr.eval.lowres import embed_at_size
from insightface_lr.eval.model_loading import load_eval_model
from insightface_lr.models.facebn import FaceBN
from insightface_lr.models.teacher import load_student

SIZES = (32, 8)
HR = 32


def write_folder(root: Path, images: np.ndarray, labels: np.ndarray | None) -> Path:
    """``root/id<label>/<i>.png`` per image, or a flat ``root/<i>.png`` when ``labels`` is None."""
    for i, image in enumerate(images):
        folder = root if labels is None else root / f"id{labels[i]:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    return root


def make_student(path: Path, images: np.ndarray) -> Path:
    """The tiny student with the HR population statistics of ``images``."""
    return hr_calibrated_student(path, images)


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ident_assets")
    images, labels = generate_faces(SyntheticFaceConfig(num_identities=8, images_per_identity=4, image_size=HR, seed=2))
    extra, _ = generate_faces(SyntheticFaceConfig(num_identities=3, images_per_identity=2, image_size=HR, seed=2,
                                                  identity_offset=100))
    return {"faces": write_folder(root / "faces", images, labels),
            "distractors": write_folder(root / "distractors", extra, None),
            "student": make_student(root / "tiny.pt", images)}


def run_cli(argv: list[str]) -> tuple[int, str]:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = cli.main(argv)
    return rc, stdout.getvalue()


@pytest.fixture(scope="module")
def cli_run(assets, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("ident_out")
    rc, stdout = run_cli(["eval", "--model", f"tiny={assets['student']}", "--identification", str(assets["faces"]),
                          "--distractors", str(assets["distractors"]), "--sizes", ",".join(map(str, SIZES)),
                          "--facebn", "batch", "--out", str(out), "--batch-size", "8", "--device", "cpu", "--quiet"])
    assert rc == 0
    return {"out": out, "stdout": stdout, "results": json.loads((out / "identification.json").read_text())}


def cell(results: dict, size: int, facebn: str, model: str = "tiny") -> dict:
    (record,) = [r for r in results["records"] if (r["model"], r["size"], r["facebn"]) == (model, size, facebn)]
    return record


@pytest.mark.parametrize("size", SIZES)
def test_facebn_off_cells_equal_identification_at_size(cli_run, assets, size) -> None:
    model, _ = load_student(assets["student"])
    faces = ImageFolderDataset(assets["faces"])
    ref = identification_at_size(model, faces, faces.labels, size, 16, distractors=ImageFilesDataset(
        assets["distractors"]), batch_size=8)
    record = cell(cli_run["results"], size, "off")
    assert record["status"] == "ok"
    assert {k: record[f"rank_{k}"] for k in (1, 5, 20)} == pytest.approx(ref, abs=1e-12)
    assert 0.0 < ref[1] < 1.0 and ref[20] == 1.0  # a real ranking problem; 14 gallery entries < 20


def test_facebn_cell_equals_hand_built_facebn_on_probes(cli_run, assets) -> None:
    model, _ = load_student(assets["student"])
    faces = ImageFolderDataset(assets["faces"])
    images = np.stack([faces[i][0].permute(1, 2, 0).numpy() for i in range(len(faces))])
    labels = np.asarray(faces.labels)
    first = np.array([np.flatnonzero(labels == k)[0] for k in np.unique(labels)])
    probes = np.setdiff1d(np.arange(len(labels)), first)
    extra = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(assets["distractors"].glob("*.png"))])
    gallery = np.concatenate([embed_at_size(model, images[first], HR, 16, 8).sum(0),
                              embed_at_size(model, extra, HR, 16, 8).sum(0)])
    for size in SIZES:
        probe = embed_at_size(FaceBN(model, mode="batch"), images[probes], size, 16, 8).sum(0)
        ref = cmc(cosine_scores(probe, gallery), labels[probes], np.r_[labels[first], [-1] * len(extra)])
        record = cell(cli_run["results"], size, "batch")
        assert {k: record[f"rank_{k}"] for k in (1, 5, 20)} == pytest.approx(ref, abs=1e-12)
    # the statistics really changed the probes' embeddings (the HR stats are wrong for 8-px faces)
    off, on = cell(cli_run["results"], 8, "off"), cell(cli_run["results"], 8, "batch")
    assert (off["rank_1"], off["rank_5"]) != (on["rank_1"], on["rank_5"])


def test_json_describes_the_split_and_markdown_matches(cli_run) -> None:
    res, out = cli_run["results"], cli_run["out"]
    assert res["data"] == {**res["data"], "identities": 8, "gallery": 8, "probes": 24, "distractors": 6,
                           "gallery_per_id": 1, "hr_size": [HR, HR]}
    assert len(res["records"]) == len(SIZES) * 2 and res["config"]["ranks"] == [1, 5, 20]
    md = (out / "identification.md").read_text()
    for k in (1, 5, 20):
        block = md.split(f"rank-{k} identification rate (%)")[1]
        assert "| model | FaceBN | 32 px | 8 px |" in block
        for facebn in ("off", "batch"):
            row = re.search(rf"^\| tiny \| {facebn} \| (.+) \|$", block, re.MULTILINE)
            expected = [f"{100 * cell(res, s, facebn)[f'rank_{k}']:.2f}" for s in SIZES]
            assert row is not None and [c.strip() for c in row.group(1).split("|")] == expected
    assert "24 LR probes vs 8 HR gallery faces" in md and "+ 6 distractors" in md
    assert "rank-1 identification rate" in cli_run["stdout"] and "| tiny | batch |" in cli_run["stdout"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # atomic writes left no temp file


def test_rec_set_with_bins_writes_both_reports(tmp_path) -> None:
    """A train.rec folder (and a .bin in the same run): identification equals the direct call."""
    paths = write_synthetic_dataset(tmp_path / "data", train_ids=5, test_ids=2, images_per_identity=3, pairs=10,
                                    seed=4)
    student = make_student(tmp_path / "s.pt", generate_faces(SyntheticFaceConfig(num_identities=5, seed=4))[0])
    rc, stdout = run_cli(["eval", "--model", str(student), "--identification", str(paths.rec.parent), "--bins",
                          str(paths.test_bin), "--sizes", "12", "--gallery-per-id", "2", "--out", str(tmp_path / "o"),
                          "--batch-size", "4", "--device", "cpu", "--quiet", "--no-plots"])
    assert rc == 0 and "| s | off |" in stdout
    assert {p.name for p in (tmp_path / "o").iterdir()} == {"report.md", "results.json", "identification.md",
                                                             "identification.json"}
    res = json.loads((tmp_path / "o" / "identification.json").read_text())
    model, _ = load_student(student)
    dataset = RecordDataset(paths.rec)
    ref = identification_at_size(model, dataset, dataset.labels, 12, 16, gallery_per_id=2, batch_size=4)
    assert {k: res["records"][0][f"rank_{k}"] for k in (1, 5, 20)} == pytest.approx(ref, abs=1e-12)
    assert res["data"]["gallery"] == 10 and res["data"]["probes"] == 5 and res["data"]["distractors"] == 0


def test_model_without_batchnorm_gets_na_facebn_cells(assets) -> None:
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 8))
    linear.input_size = 16
    plain = load_eval_model(linear, name="linear")
    res = run_identification({"linear": plain}, assets["faces"], config=IdentificationConfig(
        sizes=(8,), facebn_modes=("off", "calibrate"), batch_size=8))
    na = cell(res, 8, "calibrate", "linear")
    assert na["status"] == "n/a" and "BatchNorm" in na["note"] and na["rank_1"] is None
    faces = ImageFolderDataset(assets["faces"])
    ref = identification_at_size(linear, faces, faces.labels, 8, 16, batch_size=8)
    assert cell(res, 8, "off", "linear")["rank_1"] == pytest.approx(ref[1], abs=1e-12)


def test_user_errors_exit_2_before_writing(assets, tmp_path, capsys) -> None:
    base = ["eval", "--model", str(assets["student"]), "--out", str(tmp_path / "out"), "--quiet", "--device", "cpu"]
    (tmp_path / "flat").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "flat" / "a.png")
    mixed = write_folder(tmp_path / "mixed", np.zeros((2, 32, 32, 3), np.uint8), np.array([0, 0]))
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(mixed / "id000" / "z.png")
    cases = [
        ([], "expected --bins (verification) and/or --identification"),
        (["--bins", "", "--identification", ""], "got neither"),
        (["--bins", str(tmp_path / "x.bin"), "--distractors", str(assets["distractors"])],
         "--distractors: only used with --identification"),
        (["--identification", str(tmp_path / "nope")], "nope is neither a folder nor a .rec"),
        (["--identification", str(tmp_path / "flat")], "no identity sub-folders"),
        (["--identification", str(assets["faces"]), "--distractors", str(tmp_path / "none")],
         "--distractors: "),
        (["--identification", str(assets["faces"]), "--gallery-per-id", "0"], "--gallery-per-id: expected >= 1"),
        (["--identification", str(assets["faces"]), "--gallery-per-id", "4"], "no probes left after 4"),
        (["--identification", str(mixed)], "mixed: images differ in size"),
        (["--identification", str(assets["faces"]), "--facebn", "adabn"], "--facebn"),
    ]
    for extra, message in cases:
        assert cli.main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (extra, err)
    assert not (tmp_path / "out").exists()  # nothing written by failed runs


def test_max_rank_is_the_worst_rank_a_probe_can_get() -> None:
    from insightface_lr.eval.identification import match_ranks
    from insightface_lr.eval.identification_report import max_rank
    from insightface_lr.eval.identification_sets import IdentificationSet

    faces = np.zeros((1, 4, 4, 3), np.uint8)
    for gallery, distractors, expected in (([0, 1, 2, 3], 0, 4), ([0, 0, 1, 1, 2, 2], 0, 5), ([0, 1], 3, 5)):
        labels = np.array(gallery)
        extra = np.zeros((distractors, 4, 4, 3), np.uint8) if distractors else None
        split = IdentificationSet(faces.repeat(len(labels), 0), labels, faces.repeat(2, 0), np.array([0, 1]), extra)
        assert max_rank(split) == expected
        # the worst case, every mate scored below every other gallery entry, reaches exactly that rank
        everything = split.all_gallery_labels
        scores = np.where(everything[None, :] == split.probe_labels[:, None], 0.0, 1.0)
        assert match_ranks(scores, split.probe_labels, everything).max() == expected


def test_rank_k_that_cannot_fail_gets_a_note(cli_run) -> None:
    info = cli_run["results"]["data"]
    assert info["max_rank"] == 8 + 6  # 8 identities x 1 gallery face + 6 distractors, minus the mate, plus 1
    md = (cli_run["out"] / "identification.md").read_text()
    assert "Note: rank-20 is 100 % by construction here" in md and "within rank 14" in md
    assert "Note: rank-1 " not in md and "Note: rank-5 " not in md
    assert all(r["rank_20"] == 1.0 for r in cli_run["results"]["records"] if r["status"] == "ok")
