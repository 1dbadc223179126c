"""``insightface-lr eval``: resolution sweep with FaceBN off/on, report.md + results.json + PNG plots.

Every number in results.json is checked against a direct call of ``lowres_verification`` (with a FaceBN
built by hand for the "on" cells); the table and plots are checked as files a person would open.
"""

from __future__ import annotations

import json
import os
import re
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hr_student import hr_calibrated_student

from insightface_lr import cli
from insightface_lr.commands.eval import parse_facebn, parse_models, parse_sizes
from insightface_lr.data.degrade import degrade_to_size
from insightface_lr.data.image_codec import encode_jpeg
from insightface_lr.data.synthetic import SyntheticFaceConfig, generate_faces
from insightface_lr.data.verification_bin import load_bin_images, write_bin
from insightface_lr.errors import ConfigError
from insightface_lr.eval.lowres import degrade_normalised, embed_at_size, lowres_verification, probe_chain
from insightface_lr.eval.model_loading import load_eval_model
from insightface_lr.eval.report import SweepConfig, run_sweep, unique_names, write_report
from insightface_lr.models.facebn import FaceBN
from insightface_lr.models.inference import inference_net
from insightface_lr.models.teacher import load_student, save_student
from insightface_lr.registry import BACKBONES

SIZES = (112, 16, 8)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
METRICS = ("accuracy_mean", "accuracy_std", "best_threshold", "val", "val_std", "far", "xnorm")


def make_pair_bin(path: Path, identities: int, per_identity: int = 4, seed: int = 0, size: int = 112) -> Path:
    """A verification .bin of synthetic faces: per identity k one genuine pair (images 0, 1 of k) and one
    impostor pair (image 2 of k, image 3 of k+1), interleaved genuine/impostor."""
    images, _ = generate_faces(SyntheticFaceConfig(num_identities=identities, images_per_identity=per_identity,
                                                   image_size=size, seed=seed))
    k = np.arange(identities)
    genuine = np.stack([k * per_identity, k * per_identity + 1], axis=1)
    impostor = np.stack([k * per_identity + 2, ((k + 1) % identities) * per_identity + 3], axis=1)
    order = np.stack([genuine, impostor], axis=1).reshape(-1)  # g0 i0 g1 i1 ... as image indices
    issame = np.tile([True, False], identities)
    return write_bin(path, [encode_jpeg(images[i]) for i in order], issame.tolist())


def make_student(path: Path, bin_path: Path) -> Path:
    """The tiny student with the HR population statistics of the set's faces."""
    return hr_calibrated_student(path, load_bin_images(bin_path)[0])


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval_assets")
    bin_path = make_pair_bin(root / "tiny.bin", identities=10)
    return {"root": root, "bin": bin_path, "student": make_student(root / "tiny_student.pt", bin_path)}


@pytest.fixture(scope="module")
def cli_run(assets, tmp_path_factory):
    """One end-to-end ``insightface-lr eval`` run: 3 sizes x FaceBN off/batch."""
    out = tmp_path_factory.mktemp("eval_out")
    argv = ["eval", "--model", f"tiny={assets['student']}", "--bins", str(assets["bin"]), "--sizes",
            ",".join(map(str, SIZES)), "--facebn", "batch", "--out", str(out), "--batch-size", "16", "--device", "cpu",
            "--quiet", "--roc-size", "8", "--threads", "1"]  # the direct reference runs on 1 thread (conftest)
    import contextlib
    import io

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = cli.main(argv)
    return {"rc": rc, "out": out, "stdout": stdout.getvalue(),
            "results": json.loads((out / "results.json").read_text()) if rc == 0 else None}


def cell(results: dict, size: int, facebn: str, model: str = "tiny") -> dict:
    (record,) = [r for r in results["records"]
                 if r["model"] == model and r["size"] == size and r["facebn"] == facebn]
    return record


def direct(assets, size: int, facebn: str, mode: str = "lr-lr", batch_size: int = 16):
    """lowres_verification called by hand on a freshly loaded model: the independent reference."""
    model, _ = load_student(assets["student"])
    images, issame = load_bin_images(assets["bin"])
    if facebn == "off":  # the inference path (= eager within float tolerance: tests/models/test_inference.py)
        fn = inference_net(model)
    else:
        adapted = FaceBN(model, mode=facebn)
        if facebn == "calibrate":  # the set's own faces, degraded as the evaluation degrades them: the 8-bit
            # probes (their kernel against torch's: tests/eval/test_probes.py), then the resize to the input
            from insightface_lr.data.pixels import normalize_uint8
            from insightface_lr.eval.probes import lr_probes, to_input_size

            low = to_input_size(normalize_uint8(torch.from_numpy(lr_probes(images, size)).permute(0, 3, 1, 2)), 16)
            # one pass per layer, as the sweep calibrates (SweepConfig.calibrate_passes="exact")
            adapted.calibrate([low[i:i + batch_size] for i in range(0, len(low), batch_size)], passes="exact")
        fn = adapted
    # hr-lr: the HR gallery is embedded by the plain model (its BN stats ARE the HR statistics)
    hr = embed_at_size(inference_net(model), images, 112, 16, batch_size) if mode == "hr-lr" else None
    return lowres_verification(fn, images, issame, size, 16, mode=mode, batch_size=batch_size, hr_embeddings=hr)


# ------------------------------------------------------------------------------------------ end to end
def test_cli_writes_report_json_and_real_pngs(cli_run) -> None:
    import matplotlib.image as mpimg

    assert cli_run["rc"] == 0
    out = cli_run["out"]
    assert (out / "report.md").is_file() and (out / "results.json").is_file()
    pngs = sorted(out.glob("*.png"))
    assert {p.name for p in pngs} == {"accuracy_vs_resolution_tiny.png", "facebn_gain_tiny.png", "roc_tiny_8px.png"}
    for png in pngs:
        data = png.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 10_000, png
        pixels = mpimg.imread(png)
        assert pixels.ndim == 3 and pixels.shape[0] > 300 and pixels.shape[1] > 400
        assert pixels[..., :3].std() > 0.05  # not a blank canvas: lines, text, legend
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))  # atomic writes left no temp files
    assert (out / "report.md").stat().st_mode & 0o777 == 0o644  # shareable, not mkstemp's 0600


def test_results_json_holds_every_cell_and_the_run(cli_run) -> None:
    res = cli_run["results"]
    assert len(res["records"]) == len(SIZES) * 2
    assert {(r["size"], r["facebn"]) for r in res["records"]} == {(s, m) for s in SIZES for m in ("off", "batch")}
    for r in res["records"]:
        assert r["status"] == "ok" and all(np.isfinite(r[k]) for k in METRICS)
        assert len(r["tpr"]) == len(r["fpr"]) == len(res["roc_thresholds"]) == 400
        assert len(r["fold_accuracy"]) == 10
    hw = res["hardware"]
    assert hw["torch"] == torch.__version__ and hw["device"] == "cpu" and hw["cpu"]
    assert res["wall_time_s"] > 0 and res["bins"]["tiny"]["pairs"] == 20
    assert res["models"]["tiny"]["input_size"] == 16 and res["models"]["tiny"]["supports_facebn"]


@pytest.mark.parametrize(("size", "facebn"), [(8, "off"), (8, "batch"), (112, "batch"), (16, "batch")])
def test_json_numbers_equal_direct_lowres_verification(cli_run, assets, size, facebn) -> None:
    record = cell(cli_run["results"], size, facebn)
    ref = direct(assets, size, facebn)
    for key in METRICS:
        assert record[key] == pytest.approx(getattr(ref, key), abs=1e-12), key
    np.testing.assert_allclose(record["tpr"], ref.tpr, atol=1e-12)
    np.testing.assert_allclose(record["fold_accuracy"], ref.fold_accuracy, atol=1e-12)


def test_identical_model_inputs_are_computed_once(cli_run, assets) -> None:
    """A 16-px student sees a 112-px probe exactly as a 16-px one (the resize to 16 is the only step); the
    sweep reuses that cell, says so, and the numbers still equal direct calls at each size (test above)."""
    res = cli_run["results"]
    for facebn in ("off", "batch"):
        source, reused = cell(res, 112, facebn), cell(res, 16, facebn)  # swept in SIZES order: 112 first
        assert reused["same_input_as_size"] == 112 and "same_input_as_size" not in source
        assert reused["accuracy_mean"] == source["accuracy_mean"] and reused["fold_accuracy"] == source["fold_accuracy"]
    images, _ = load_bin_images(assets["bin"])
    x = (torch.from_numpy(images[:4]).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    assert torch.equal(degrade_normalised(x, 112, 16), degrade_normalised(x, 16, 16))


@pytest.mark.parametrize(("image", "size", "model_input", "chain"), [
    (112, 112, 16, (16,)), (112, 16, 16, (16,)), (112, 24, 16, (24, 16)), (112, 112, 112, ()),
    (112, 16, 112, (16, 112)), (112, 128, 112, (128, 112)), (112, 8, 8, (8,))])
def test_probe_chain(image, size, model_input, chain) -> None:
    assert probe_chain(image, size, model_input) == chain


def test_facebn_on_differs_from_off(cli_run) -> None:
    res = cli_run["results"]
    for size in SIZES:
        off, on = cell(res, size, "off"), cell(res, size, "batch")
        assert off["xnorm"] != pytest.approx(on["xnorm"], rel=1e-4)
        assert not np.allclose(off["tpr"], on["tpr"]) or off["accuracy_mean"] != on["accuracy_mean"]
    # the BN stats are the HR population stats: at 112 px batch statistics are close to them, so FaceBN
    # changes the embeddings far less there than at 8 px, where the statistics really shifted
    gap = {s: abs(cell(res, s, "batch")["xnorm"] - cell(res, s, "off")["xnorm"]) for s in SIZES}
    assert gap[112] < gap[8]


def test_report_markdown_table_matches_json(cli_run) -> None:
    md = (cli_run["out"] / "report.md").read_text()
    res = cli_run["results"]
    assert "| model | FaceBN | 112 px | 16 px | 8 px |" in md
    for facebn in ("off", "batch"):
        row = re.search(rf"^\| tiny \| {facebn} \| (.+) \|$", md, re.MULTILINE)
        assert row is not None
        cells = [c.strip() for c in row.group(1).split("|")]
        expected = [f"{100 * cell(res, s, facebn)['accuracy_mean']:.2f} ± "
                    f"{100 * cell(res, s, facebn)['accuracy_std']:.2f}" for s in SIZES]
        assert cells == expected
    assert "wall time" in md and "roc_tiny_8px.png" in md
    assert "| tiny | batch |" in cli_run["stdout"]  # the CLI prints the table


# ------------------------------------------------------------------------------------- other modes
def test_calibrate_online_and_hr_lr_cells_equal_direct_calls(assets) -> None:
    res = run_sweep({"tiny": assets["student"]}, [assets["bin"]], sizes=(8,),
                    facebn_modes=("off", "calibrate", "online"), pair_mode="hr-lr", batch_size=16)
    for facebn in ("off", "calibrate", "online"):
        ref = direct(assets, 8, facebn, mode="hr-lr")
        assert cell(res, 8, facebn)["accuracy_mean"] == pytest.approx(ref.accuracy_mean, abs=1e-12)
        # calibrate: the reference builds its target batches itself (float rounding may differ by 1 ulp)
        assert cell(res, 8, facebn)["xnorm"] == pytest.approx(ref.xnorm, rel=1e-6)
    xnorms = {m: cell(res, 8, m)["xnorm"] for m in ("off", "calibrate", "online")}
    assert len({round(v, 6) for v in xnorms.values()}) == 3  # three different statistics, three results


def test_calibration_batches_are_the_evaluation_input(assets) -> None:
    from insightface_lr.eval.probes import lr_probes
    from insightface_lr.eval.report import calibration_batches

    images, _ = load_bin_images(assets["bin"])
    low = lr_probes(images, 8)
    batches = list(calibration_batches(low, 16, batch_size=16))
    assert [b.shape[0] for b in batches] == [16, 16, 8] and batches[0].shape[1:] == (3, 16, 16)
    pixels = torch.from_numpy(low[:16]).permute(0, 3, 1, 2).float() / 255  # the 8-px probes, up to the input
    expected = (degrade_to_size(pixels, 16, output_size=None) - 0.5) / 0.5
    torch.testing.assert_close(batches[0], expected, atol=1e-5, rtol=0)


def test_onnx_model_reports_facebn_na(assets, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from insightface_lr.models.export import export_onnx

    model, _ = load_student(assets["student"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # input_size 16 is not an insightface model-zoo size: fine here
        onnx_path = export_onnx(model, tmp_path / "tiny.onnx", input_size=16)
    loaded = load_eval_model(onnx_path, device="cpu")
    assert loaded.kind == "onnx" and not loaded.supports_facebn and loaded.input_size == 16
    res = run_sweep({"torch": assets["student"], "onnx": loaded}, [assets["bin"]], sizes=(8,), batch_size=16)
    na = cell(res, 8, "batch", model="onnx")
    assert na["status"] == "n/a" and "ONNX" in na["note"] and na["accuracy_mean"] is None
    # the ONNX graph (BN folded) computes the same function as the torch model
    assert cell(res, 8, "off", "onnx")["xnorm"] == pytest.approx(cell(res, 8, "off", "torch")["xnorm"], rel=1e-4)
    written = write_report(res, tmp_path / "out", plots=True)
    md = written["report.md"].read_text()
    assert re.search(r"^\| onnx \| batch \| n/a \|$", md, re.MULTILINE)
    assert "ONNX graph, no BatchNorm" in md
    assert json.loads(written["results.json"].read_text())["records"][-1]["accuracy_mean"] is None


def test_load_eval_model_backbone_pth_and_bn_free_module(assets, tmp_path) -> None:
    torch.save(BACKBONES.build("mbf").state_dict(), tmp_path / "backbone.pth")  # arcface_torch's format
    pth = load_eval_model(tmp_path / "backbone.pth")
    assert (pth.name, pth.kind, pth.input_size, pth.embedding_size, pth.supports_facebn) == (
        "backbone", "torch", 112, 512, True)
    assert pth.module is not None and pth.facebn_reason() == ""
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 8))
    linear.input_size = 16
    plain = load_eval_model(linear, name="linear")
    assert not plain.supports_facebn and "BatchNorm" in plain.facebn_reason()
    res = run_sweep({"linear": plain}, [assets["bin"]], sizes=(8,), batch_size=16)
    assert cell(res, 8, "batch", "linear")["status"] == "n/a"
    ref = lowres_verification(linear, *load_bin_images(assets["bin"]), 8, 16, batch_size=16)
    assert cell(res, 8, "off", "linear")["accuracy_mean"] == pytest.approx(ref.accuracy_mean, abs=1e-12)


# ------------------------------------------------------------------------------------- arguments
def test_argument_parsing() -> None:
    assert parse_models("a/x.pt,b/x.pt, t=m.onnx") == {"x": "a/x.pt", "x_2": "b/x.pt", "t": "m.onnx"}
    assert parse_sizes("112, 32,8") == (112, 32, 8)
    assert parse_facebn(None) == ("off",)
    assert parse_facebn("batch") == ("off", "batch")
    assert parse_facebn("calibrate,online,calibrate") == ("off", "calibrate", "online")
    assert unique_names(["lfw", "lfw", "cfp", "lfw"]) == ["lfw", "lfw_2", "cfp", "lfw_3"]
    for bad in (lambda: parse_sizes("112,x"), lambda: parse_sizes("0"), lambda: parse_sizes("8,8"),
                lambda: parse_facebn("adabn"), lambda: parse_models(" , "), lambda: parse_models("=a.pt")):
        with pytest.raises(ConfigError):
            bad()
    with pytest.raises(ConfigError, match="facebn modes"):
        SweepConfig(facebn_modes=("off", "bogus"))
    with pytest.raises(ConfigError, match="pair mode"):
        SweepConfig(pair_mode="lr-hr")


def test_cli_user_errors_exit_2(assets, tmp_path, capsys) -> None:
    base = ["eval", "--model", str(assets["student"]), "--out", str(tmp_path), "--quiet"]
    assert cli.main([*base, "--bins", str(tmp_path / "missing.bin")]) == 2
    assert "missing.bin" in capsys.readouterr().err
    assert cli.main([*base, "--bins", str(assets["bin"]), "--sizes", "16,8", "--roc-size", "12"]) == 2
    assert "--roc-size 12" in capsys.readouterr().err
    assert cli.main([*base, "--bins", str(assets["bin"]), "--device", "cuda:0"] if not torch.cuda.is_available()
                    else [*base, "--bins", str(assets["bin"]), "--device", "nonsense"]) == 2
    assert not list(tmp_path.glob("*.json"))  # nothing written by failed runs


# ------------------------------------------------------------------------------------- full size (slow)
@pytest.mark.slow
@pytest.mark.timeout(4 * 3600)  # about an hour on a 2-core CPU
def test_full_sweep_6000_pairs_mobilefacenet(tmp_path, capsys) -> None:
    """The published-size set: 6,000 pairs (12,000 faces at 112 px), MobileFaceNet (2.0M parameters) as
    an LR student with a native 32-px input (every probe size is resized to 32; at a 112-px input the same
    network costs 12x the FLOPs: 7 hours on a 2-core CPU), 7 sizes x FaceBN off/on via the CLI.
    Prints the wall time (recorded in results.json too). INSIGHTFACE_LR_SWEEP_PAIRS
    scales the set down on slow machines (the time is then extrapolated by hand: it is linear in pairs)."""
    pairs = int(os.environ.get("INSIGHTFACE_LR_SWEEP_PAIRS", "6000"))
    tic = time.perf_counter()
    bin_path = make_pair_bin(tmp_path / "big.bin", identities=pairs // 2)  # half genuine, half impostor pairs
    build_s = time.perf_counter() - tic
    torch.manual_seed(0)
    save_student(tmp_path / "mbf.pt", BACKBONES.build("mbf", input_size=32).eval(), network="mbf")
    rc = cli.main(["eval", "--model", str(tmp_path / "mbf.pt"), "--bins", str(bin_path), "--facebn",
                   "--out", str(tmp_path / "out"), "--batch-size", "128", "--quiet"])
    assert rc == 0
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(res["records"]) == 7 * 2 and res["bins"]["big"]["pairs"] == pairs // 2 * 2
    assert all(r["status"] == "ok" for r in res["records"])
    with capsys.disabled():
        print(f"\n{pairs}-pair sweep (7 sizes x FaceBN off/batch): {res['wall_time_s']:.1f} s on "
              f"{res['hardware']['device']} ({res['hardware']['cpu']}, {res['hardware']['torch_threads']} threads); "
              f"building the .bin took {build_s:.1f} s")


# ------------------------------------------------------------------------------------- honest reports
def test_collapsed_model_val_is_shown_with_its_far_and_a_warning(assets) -> None:
    """All pairs at distance 0: every threshold accepts everything, so "VAL@FAR=1e-3" is 100 % at FAR 1.0 —
    the table must show that FAR and warn, not print 100.00 beside 50 % accuracy."""

    class Collapsed(torch.nn.Module):
        input_size, embedding_size = 16, 8

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.ones(x.shape[0], 8)

    res = run_sweep({"collapsed": load_eval_model(Collapsed()), "tiny": assets["student"]}, [assets["bin"]],
                    sizes=(8,), facebn_modes=("off",), batch_size=16)
    flat = cell(res, 8, "off", "collapsed")
    assert flat["val"] == 1.0 and flat["far"] == 1.0 and flat["accuracy_mean"] == 0.5
    from insightface_lr.eval.report import markdown_tables

    md = markdown_tables(res, ("accuracy_mean", "val"))
    assert "| collapsed | off | 100.00 ± 0.00 (FAR 1.0e+00 !) |" in md
    tiny = cell(res, 8, "off")
    flag = " !" if tiny["far"] > 2e-3 else ""
    assert f"| tiny | off | {100 * tiny['val']:.2f} ± {100 * tiny['val_std']:.2f} (FAR {tiny['far']:.1e}{flag}) |" in md
    assert "Warning: in " in md and "FAR reached is far above the 0.001 target (up to 1)" in md


def test_far_warning_only_where_the_far_is_off() -> None:
    from insightface_lr.eval.report import far_is_off, markdown_tables

    assert not far_is_off({"far": 0.0}) and not far_is_off({"far": 0.002}) and far_is_off({"far": 0.0021})
    base = {"bin": "b", "facebn": "off", "size": 8, "val_std": 0.0, "accuracy_mean": 0.9, "accuracy_std": 0.0}
    results = {"config": {"pair_mode": "lr-lr", "sizes": [8], "facebn_modes": ["off"]},
               "bins": {"b": {"pairs": 6000}}, "models": {"good": {}},
               "records": [{**base, "model": "good", "val": 0.5, "far": 0.001}]}
    md = markdown_tables(results, ("val",))
    assert "| good | off | 50.00 ± 0.00 (FAR 1.0e-03) |" in md and "Warning" not in md


def test_probe_sizes_above_the_hr_face_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"--sizes: probe size\(s\) \[1000, 200\] px are above the 112-px HR face"):
        SweepConfig(sizes=(16, 1000, 200))
    assert SweepConfig(sizes=(112, 8)).sizes == (112, 8)


def test_facebn_spec_reads_prior_and_depth_and_refuses_the_rest() -> None:
    from insightface_lr.eval.report import facebn_spec

    assert facebn_spec("batch") == ("batch", 0.0, 1.0)
    assert facebn_spec("prior") == ("prior", 64.0, 1.0)  # a bare prior is DEFAULT_PRIOR
    assert facebn_spec("calibrate:2400") == ("calibrate", 2400.0, 1.0)
    assert facebn_spec("calibrate@0.25") == ("calibrate", 0.0, 0.25)
    assert facebn_spec("prior:16@0.5") == ("prior", 16.0, 0.5)
    for bad in ("calibrate@0", "calibrate@1.5", "calibrate@x", "off@0.5", "batch:3", "prior:-1", "bn"):
        with pytest.raises(ConfigError):
            facebn_spec(bad)


def test_facebn_flag_alone_is_the_default_mode() -> None:
    from insightface_lr.eval.facebn_modes import DEFAULT_FACEBN

    args = cli.build_parser().parse_args(["eval", "--model", "m.pt", "--bins", "a.bin", "--facebn"])
    assert args.facebn == DEFAULT_FACEBN == "calibrate@0.25"


def test_repeated_faces_are_embedded_once_with_the_same_numbers(assets, tmp_path) -> None:
    """A set whose pairs reuse faces (as dev.bin: 711 faces in 2,400 slots): FaceBN off gives the numbers of
    embedding every slot; calibrate adapts to each distinct face once (the reference calibrates on them by hand)."""
    from insightface_lr.data.pixels import normalize_uint8
    from insightface_lr.eval.probes import distinct_faces, lr_probes, to_input_size

    images, issame = load_bin_images(assets["bin"])
    half = len(images) // 2  # the first half of the faces twice (their pairs again): uneven repeats
    slots = np.concatenate([np.arange(len(images)), np.arange(half)])
    repeated = write_bin(tmp_path / "repeated.bin", [encode_jpeg(images[i]) for i in slots],
                         np.concatenate([issame, issame[:half // 2]]).tolist())
    res = run_sweep({"tiny": assets["student"]}, [repeated], sizes=(8, 16), facebn_modes=("off", "calibrate"),
                    config=SweepConfig(sizes=(8, 16), facebn_modes=("off", "calibrate"), batch_size=16,
                                       facebn_sizes=(8,)))
    assert {(r["size"], r["facebn"]) for r in res["records"]} == {(8, "off"), (8, "calibrate"), (16, "off")}
    faces, same = load_bin_images(repeated)
    model, _ = load_student(assets["student"])
    every_slot = lowres_verification(inference_net(model), faces, same, 8, 16, batch_size=16)
    assert cell(res, 8, "off")["accuracy_mean"] == pytest.approx(every_slot.accuracy_mean, abs=1e-12)
    first, _ = distinct_faces(faces)
    assert first.size == len(images)
    adapted = FaceBN(model, mode="calibrate")
    low = to_input_size(normalize_uint8(torch.from_numpy(lr_probes(faces[first], 8)).permute(0, 3, 1, 2)), 16)
    adapted.calibrate([low[i:i + 16] for i in range(0, len(low), 16)], passes="exact")
    reference = lowres_verification(adapted, faces, same, 8, 16, batch_size=16)
    assert cell(res, 8, "calibrate")["xnorm"] == pytest.approx(reference.xnorm, rel=1e-6)
    assert cell(res, 8, "calibrate")["accuracy_mean"] == pytest.approx(reference.accuracy_mean, abs=1e-12)
