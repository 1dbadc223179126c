"""Opt-in lane: the project's readers and ``demo --faces`` on the real development faces in ``../shared``.

``python -m pytest -m real_faces`` runs it (not the default suite, which must pass on a machine without the
data). The data folder is ``$INSIGHTFACE_LR_REAL_FACES`` or ``<repository>/../shared/data/real_faces``
(``train.tar``: 137 identities, 8,608 aligned faces; ``dev.bin``: 1,200 open-set pairs of 40 other
identities). The faces are read where they lie and extracted into a temporary folder, never copied into
the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from insightface_lr.data.faces import FaceSource
from insightface_lr.data.verification_bin import load_bin_images
from insightface_lr.demo.pipeline import DemoPipeline
from insightface_lr.demo.settings import make_settings

pytestmark = [pytest.mark.real_faces, pytest.mark.slow]

DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real_faces"


@pytest.fixture(scope="module")
def real_data() -> Path:
    folder = Path(os.environ.get("INSIGHTFACE_LR_REAL_FACES", DEFAULT_DATA))
    if not (folder / "train.tar").is_file() or not (folder / "dev.bin").is_file():
        pytest.skip(f"no real faces in {folder} (set INSIGHTFACE_LR_REAL_FACES to the folder of train.tar)")
    return folder


@pytest.fixture(scope="module")
def train_folder(real_data, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("real_train")
    with tarfile.open(real_data / "train.tar") as tar:
        tar.extractall(root, filter="data")  # "data": no absolute paths, links or devices from the archive
    return root


def test_dev_bin_is_insightface_layout_ten_folds_of_60_plus_60(real_data) -> None:
    images, issame = load_bin_images(real_data / "dev.bin")
    assert images.shape == (2400, 112, 112, 3) and images.dtype == np.uint8
    assert issame.shape == (1200,)
    per_fold = issame.reshape(10, 120).sum(axis=1)  # the 10-fold protocol splits the pairs in order
    assert per_fold.tolist() == [60] * 10


def test_train_tar_reads_as_an_image_folder_disjoint_from_dev(real_data, train_folder) -> None:
    faces = FaceSource(train_folder)
    assert len(faces) == 8608 and len(set(faces.labels)) == 137 and faces.image_size == (112, 112)
    dev_identities = set((real_data / "dev_identities.txt").read_text().split())
    assert len(dev_identities) == 40
    assert not dev_identities & {p.name for p in train_folder.iterdir()}


@pytest.mark.timeout(1800)  # dev.bin's 2,400 faces per evaluation: minutes on a shared 2-core box
def test_demo_on_real_faces_runs_end_to_end_and_resumes(real_data, train_folder, tmp_path) -> None:
    """A tiny budget (seconds per model): the pipeline, not the numbers (docs/real_faces.md has those)."""
    faces = tmp_path / "faces"
    for person in sorted(p for p in train_folder.iterdir() if p.is_dir())[:16]:
        shutil.copytree(person, faces / person.name)
    settings = make_settings("tiny", faces=str(faces), test_bins=(str(real_data / "dev.bin"),), val_fraction=0.25,
                             val_pairs_per_fold=4, tune_weights=(1.0,), budget_epochs=(2,), student_epochs=1,
                             methods=("none", "aird", "bridge"), lr_sizes=(16,), eval_sizes=(16,), facebn_extra=())
    out = tmp_path / "out"
    DemoPipeline(out, settings, device="cpu", progress=False).run()
    results = json.loads((out / "results.json").read_text())
    reported = [r for r in results["records"] if r["weight"] is None and not r["epochs"]]
    assert {r["bin"] for r in reported} == {"dev", "val"}
    assert {(r["method"], r["regime"]) for r in reported if r["bin"] == "dev"} >= {
        (m, g) for m in settings.methods for g in ("same", "subset")}
    assert all(0.0 <= r["accuracy_mean"] <= 1.0 for r in reported if r["status"] == "ok")
    assert set(results["tuning"]) == {"aird", "bridge"}
    again = DemoPipeline(out, settings, device="cpu", progress=False)
    again.run()
    assert again.ran == []  # every stage was complete: a re-run trains and evaluates nothing
