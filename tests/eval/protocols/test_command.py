"""``insightface-lr eval --protocol NAME --root DIR``: the whole command on a tiny TinyFace tree with a real
student file (reports, plots, FaceBN on the probe path only), and bad input as one line + exit code 2 with
nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hr_student import hr_calibrated_student
from test_tinyface import make_tinyface

from insightface_lr import cli
from insightface_lr.eval.model_loading import load_eval_model
from insightface_lr.eval.protocols.loader import FaceBatches
from insightface_lr.eval.protocols.runner import ProtocolConfig, run_protocol
from insightface_lr.eval.protocols.tinyface import read


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("protocol_cli")
    rng = np.random.default_rng(2)
    vectors = lambda n: [rng.uniform(-0.9, 0.9, 3) for _ in range(n)]  # noqa: E731
    gallery = {f"{i}_1.jpg": (i, v) for i, v in zip(range(1, 7), vectors(6), strict=True)}
    probes = {f"{i}_{k}.jpg": (i, v) for (i, k), v in zip([(i, k) for i in range(1, 7) for k in (2, 3)],
                                                           vectors(12), strict=True)}
    root = make_tinyface(tmp / "data", probes, gallery, {f"x_{k}.jpg": v for k, v in enumerate(vectors(9))})
    faces = rng.integers(0, 256, size=(32, 24, 24, 3), dtype=np.uint8)
    return {"root": root, "student": hr_calibrated_student(tmp / "student.pt", faces, embedding_size=16)}


def test_command_writes_reports_and_facebn_touches_probes_only(assets, tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["eval", "--model", f"s={assets['student']}", "--protocol", "tinyface", "--root", str(assets["root"]),
            "--out", str(out), "--quiet", "--device", "cpu", "--workers", "1", "--batch-size", "4",
            "--sizes", "native,8", "--facebn", "batch"]
    assert cli.main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["embeddings", "tinyface.json", "tinyface.md", "tinyface_cmc.png"]
    results = json.loads((out / "tinyface.json").read_text())
    assert [(r["size"], r["facebn"], r["status"]) for r in results["records"]] == [
        ("native", "off", "ok"), ("native", "batch", "ok"), (8, "off", "ok"), (8, "batch", "ok")]
    assert "| s | 8 px | batch |" in (out / "tinyface.md").read_text()
    # FaceBN adapts the probe path: the gallery and distractors are embedded once, natively, without it
    finals = sorted("-".join(p.parent.name.split("-")[:3]) for p in (out / "embeddings").rglob("embeddings.npy"))
    assert finals == ["distractor-16px-facebn_off", "gallery-16px-facebn_off", "probe-16px-facebn_batch",
                      "probe-16px-facebn_off", "probe-8px-facebn_batch", "probe-8px-facebn_off"]
    # FaceBN off: the cached probe embeddings are the model on the loaded faces, flip views summed
    model = load_eval_model(assets["student"], device="cpu")
    probe = read(assets["root"]).set("probe")
    x = (FaceBatches(probe.paths, 16)[(0, len(probe))].float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        direct = (model.fn(x) + model.fn(torch.flip(x, dims=[3]))).numpy()
    cached = {p.parent.name.rsplit("-", 1)[0]: np.load(p) for p in (out / "embeddings").rglob("embeddings.npy")}
    np.testing.assert_allclose(cached["probe-16px-facebn_off"], direct, rtol=1e-5, atol=1e-5)
    assert np.abs(cached["probe-16px-facebn_batch"] - direct).max() > 1e-3


def test_facebn_is_na_for_a_network_without_batchnorm(assets, tmp_path: Path) -> None:
    from trees import stub_model

    results = run_protocol({"stub": stub_model()}, "tinyface", assets["root"], tmp_path / "cache",
                           ProtocolConfig(batch_size=4, workers=0, facebn_modes=("off", "calibrate")))
    assert [r["status"] for r in results["records"]] == ["ok", "n/a"]
    assert "BatchNorm" in results["records"][1]["note"]


def _bad_trees(root: Path, tmp_path: Path) -> list[tuple[Path, str, str]]:
    import shutil

    cases = []
    missing = shutil.copytree(root, tmp_path / "missing")
    shutil.rmtree(missing / "tinyface" / "Testing_Set" / "Gallery_Distractor")
    cases.append((missing, "tinyface", "Gallery_Distractor: folder not found (expected TinyFace's Gallery_Distractor"))
    broken = shutil.copytree(root, tmp_path / "broken")
    (broken / "tinyface" / "Testing_Set" / "Probe" / "3_2.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    cases.append((broken, "tinyface", "3_2.jpg: "))
    cases.append((root, "ijbc", "meta: folder not found (expected InsightFace's IJBC meta/ folder)"))
    cases.append((root, "lfw", "--protocol: expected one of tinyface"))
    return cases


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_input_is_one_line_and_exit_2(assets, tmp_path: Path, capsys, workers: int) -> None:
    for k, (root, protocol, message) in enumerate(_bad_trees(assets["root"], tmp_path)):
        out = tmp_path / f"out{k}"
        argv = ["eval", "--model", str(assets["student"]), "--protocol", protocol, "--root", str(root),
                "--out", str(out), "--quiet", "--device", "cpu", "--workers", str(workers), "--batch-size", "4"]
        assert cli.main(argv) == 2, (protocol, root)
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert not (out / "tinyface.md").exists() and not (out / "tinyface.json").exists()
        assert not list(out.rglob("*.tmp")) if out.exists() else True
    assert cli.main(["eval", "--model", str(assets["student"]), "--protocol", "tinyface", "--quiet"]) == 2
    assert "--protocol NAME and --root DIR go together" in capsys.readouterr().err
