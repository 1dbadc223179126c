"""SIGINT and SIGTERM inside a stage of every long command (issue 27): exit code 130 within 5 s with the
command's one line, nothing half-written kept as finished, and a re-run that completes with the numbers of an
uninterrupted run. Each child starts with SIGINT ignored (as under a CI runner that started the suite with
`&`) and is held inside the stage by :mod:`stage_pause` until the signal is sent, so where the signal lands does
not depend on the machine's speed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from interrupting import SIGNALS, assert_stopped, cli_ok, no_temporaries

DEMO = ("import dataclasses, sys; import insightface_lr.demo.settings as s; "
        "s.PRESETS['quick'] = dataclasses.replace(s.TINY, methods=('none', 'aird'), lr_sizes=(16,), eval_sizes=(16,), "
        "facebn_extra=()); from insightface_lr.cli import main; sys.exit(main(sys.argv[1:]))")


# ----- demo, 2 jobs: the teacher (in the parent), a student and an evaluation (in workers) -----

def _demo_argv(out: Path) -> list[str]:
    return ["demo", "--quick", "--regimes", "same", "--out", str(out), "--jobs", "2", "--device", "cpu",
            "--no-progress"]


def _demo_numbers(out: Path) -> list:
    records = json.loads((out / "results.json").read_text())["records"]
    return sorted(json.dumps({k: v for k, v in r.items() if k != "seconds"}, sort_keys=True) for r in records)


@pytest.fixture(scope="module")
def demo_reference(tmp_path_factory, cli_env) -> list:
    out = tmp_path_factory.mktemp("demo_ref") / "out"
    cli_ok(_demo_argv(out), cli_env, ("-c", DEMO))
    return _demo_numbers(out)


DEMO_STAGES = {"teacher": "insightface_lr.train.trainer:Trainer.accumulate_step:2:main",
               "student": "insightface_lr.train.trainer:Trainer.accumulate_step:1:worker",
               "evaluation": "insightface_lr.eval.report:evaluate_cell:2:worker"}


@SIGNALS
def test_demo_with_two_jobs_stops_in_every_stage_and_resumes(sig, demo_reference, interrupt_cli, cli_env,
                                                             tmp_path) -> None:
    out = tmp_path / "out"
    line = f"insightface-lr demo: interrupted; finished stages are kept in {out}; re-run the same command to continue"
    for stage, pause in DEMO_STAGES.items():
        result = interrupt_cli(_demo_argv(out), pause, sig, tmp_path / "held", python=("-c", DEMO))
        assert_stopped(result, line)
        no_temporaries(out)
        assert not (out / "results.json").exists(), stage
    assert "teacher" in json.loads((out / "timings.json").read_text())  # the first re-run went on from it
    cli_ok(_demo_argv(out), cli_env, ("-c", DEMO))
    assert _demo_numbers(out) == demo_reference


# ----- eval --protocol: a TinyFace tree, interrupted while DataLoader workers embed a set -----

@pytest.fixture(scope="module")
def tinyface_root(tmp_path_factory) -> Path:
    """TinyFace's official layout: 12 probes and 6 gallery faces of 6 identities, 9 distractors (noise)."""
    from PIL import Image
    from scipy.io import savemat

    root = tmp_path_factory.mktemp("tinyface")
    base = root / "tinyface" / "Testing_Set"
    rng = np.random.default_rng(4)
    names = {"Probe": [f"{i}_{k}.jpg" for i in range(1, 7) for k in (2, 3)],
             "Gallery_Match": [f"{i}_1.jpg" for i in range(1, 7)],
             "Gallery_Distractor": [f"x_{k}.jpg" for k in range(9)]}
    for folder, files in names.items():
        (base / folder).mkdir(parents=True)
        for name in files:
            Image.fromarray(rng.integers(0, 256, (20, 16, 3), dtype=np.uint8)).save(base / folder / name)
    for mat, key, folder in (("probe_img_ID_pairs.mat", "probe", "Probe"),
                             ("gallery_match_img_ID_pairs.mat", "gallery", "Gallery_Match")):
        files = np.empty((len(names[folder]), 1), dtype=object)
        files[:, 0] = names[folder]
        ids = np.array([float(n.split("_")[0]) for n in names[folder]]).reshape(-1, 1)
        savemat(base / mat, {f"{key}_set": files, f"{key}_ids": ids})
    return root


def _protocol_argv(model: Path, root: Path, out: Path) -> list[str]:
    return ["eval", "--model", str(model), "--protocol", "tinyface", "--root", str(root), "--sizes", "native,8",
            "--out", str(out), "--quiet", "--no-plots", "--device", "cpu", "--workers", "2", "--batch-size", "4",
            "--threads", "1"]


def _protocol_numbers(out: Path) -> list:
    return [(r["size"], r["facebn"], r["metrics"]) for r in json.loads((out / "tinyface.json").read_text())["records"]]


@SIGNALS
def test_interrupted_protocol_eval_keeps_whole_embeddings_and_resumes(sig, tinyface_root, student16, interrupt_cli,
                                                                      cli_env, tmp_path) -> None:
    out, reference = tmp_path / "rep", tmp_path / "ref"
    cli_ok(_protocol_argv(student16, tinyface_root, reference), cli_env)
    # embedding batches: probes 1-3, gallery 4-5, distractors 6-8: held in the distractors, workers running
    result = interrupt_cli(_protocol_argv(student16, tinyface_root, out),
                           "insightface_lr.eval.protocols.embed:embed_pairs:7", sig, tmp_path / "held")
    assert_stopped(result, f"insightface-lr eval: interrupted; finished cells are kept in {out / 'eval_cells'}; "
                            "re-run the same command to continue from them")
    finished = sorted(p.parent.name.split("-")[0] for p in (out / "embeddings").rglob("embeddings.npy"))
    assert finished == ["gallery", "probe"] and not (out / "tinyface.json").exists()
    for path in (out / "embeddings").rglob("*.npy"):  # whole files only
        assert np.load(path, allow_pickle=False).dtype == np.float32
    no_temporaries(out)
    cli_ok(_protocol_argv(student16, tinyface_root, out), cli_env)
    assert _protocol_numbers(out) == _protocol_numbers(reference)


# ----- train: held in step 5 (checkpoints every 2 steps), resumed to the end -----

@SIGNALS
def test_interrupted_training_resumes_to_the_uninterrupted_weights(sig, tiny_data, train_args, interrupt_cli,
                                                                   cli_env, tmp_path) -> None:
    import torch

    out, reference = tmp_path / "run", tmp_path / "ref"
    extra = ("--max-steps", "12", "--set", "checkpoint_every=2", "--threads", "1")
    cli_ok(train_args(tiny_data, reference, *extra), cli_env)
    result = interrupt_cli(train_args(tiny_data, out, *extra),
                           "insightface_lr.train.trainer:Trainer.accumulate_step:5", sig, tmp_path / "held")
    assert_stopped(result, f"insightface-lr train: interrupted; last checkpoint: step 4 in {out / 'checkpoints'} "
                            "(stopped after step 5); continue with --resume")
    assert not (out / "student.pt").exists()
    no_temporaries(out)
    cli_ok(train_args(tiny_data, out, *extra, "--resume"), cli_env)
    final, expected = (torch.load(p / "student.pt", weights_only=True)["state_dict"] for p in (out, reference))
    assert final.keys() == expected.keys() and all(torch.equal(final[k], expected[k]) for k in final)


# ----- export --int8: interrupted while onnxruntime calibrates the activation ranges -----

@pytest.fixture(scope="module")
def face_folder(tmp_path_factory) -> Path:
    """6 identities x 8 synthetic faces as FOLDER/<identity>/<image>.png (int8 calibration faces)."""
    from insightface_lr.data.image_codec import encode_png
    from insightface_lr.data.synthetic import SyntheticFaceConfig, generate_faces

    folder = tmp_path_factory.mktemp("faces")
    faces, labels = generate_faces(SyntheticFaceConfig(num_identities=6, images_per_identity=8, seed=1))
    for i, (face, label) in enumerate(zip(faces, labels, strict=True)):
        (folder / f"id{int(label)}").mkdir(exist_ok=True)
        (folder / f"id{int(label)}" / f"{i}.png").write_bytes(encode_png(face))
    return folder


def _export_argv(model: Path, faces: Path, out: Path) -> list[str]:
    # a random-weight student: its held-out accuracy is chance, so the check only reports (inf)
    return ["export", "--model", str(model), "--out", str(out / "s8.onnx"), "--int8", "--calibrate", str(faces),
            "--batch-size", "4", "--int8-max-drop", "inf"]


@SIGNALS
def test_interrupted_int8_export_leaves_nothing_and_reruns_to_the_same_file(sig, student16, face_folder,
                                                                            interrupt_cli, cli_env, tmp_path) -> None:
    out, reference = tmp_path / "out", tmp_path / "ref"
    out.mkdir()
    cli_ok(_export_argv(student16, face_folder, reference), cli_env)
    result = interrupt_cli(_export_argv(student16, face_folder, out),
                           "insightface_lr.models.quantize:_Batches.get_next:3", sig, tmp_path / "held")
    assert_stopped(result, "insightface-lr export: interrupted; nothing half-written is left (files are replaced "
                           "whole); re-run to export")
    assert list(out.iterdir()) == []  # no int8 file, no float or pre-processed copy, no temporary file
    cli_ok(_export_argv(student16, face_folder, out), cli_env)
    assert (out / "s8.onnx").read_bytes() == (reference / "s8.onnx").read_bytes()
