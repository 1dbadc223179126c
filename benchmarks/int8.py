"""int8 export of a student: file size, insightface loading, accuracy against float32, faces/s int8 / float32.

    python -m benchmarks.int8 --student runs/demo/students/bridge_16px_s0/student.pt \
        --calibrate runs/demo/data/train.rec --bin runs/demo/data/test.bin \
        [--real-bin ../shared/data/real_faces/dev.bin] --out runs/bench/int8.json

Both model packages are written by the ``export`` command's code (``export_model_package``; the int8 one with
``int8_calibration`` from ``--calibrate``'s faces, the training set's, never the test set, made by the command's
``int8_calibration``: the student's native-size probes, every 5th identity held out for the accuracy check, whose
change is reported too, and a student the command would refuse, beyond ``--int8-max-drop``'s default plus the
check's standard error, is refused here as well: the benchmark runs the command's defaults). Accuracy: the
verification sweep of ``insightface-lr eval`` (FaceBN off, 10-fold) at ``--sizes`` on each ``.bin``, for the
torch student, the float32 package and the int8 package. Speed: onnxruntime on 112-px graph inputs, 1 thread,
float32 and int8 sessions interleaved round by round, medians. ``--tiny``: a random student, a generated
``.bin`` and a few rounds (checks that the script runs; its accuracies mean nothing).
"""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from .common import base_parser, describe, format_table, load_average, machine_info, measure, write_json

MAX_PACKAGE_MB = 0.3
MAX_ACCURACY_DROP = 0.5  # points


def write_packages(student: Path, calibrate: Path, folder: Path, limit: int) -> tuple[dict[str, Path], dict]:
    """The float32 and int8 packages of ``student``; ``({variant: onnx file}, the int8 held-out check)``."""
    from insightface_lr.commands.export import int8_calibration
    from insightface_lr.models.export import export_model_package
    from insightface_lr.models.teacher import load_model_file

    model, _meta = load_model_file(student)
    calibration = int8_calibration(model, calibrate, limit)  # the command's defaults, its check included
    out = {}
    for variant, extra in (("float32", {}), ("int8", {"int8_calibration": calibration})):
        package = export_model_package(model, folder / variant, f"student_{variant}", **extra)
        out[variant] = package / f"student_{variant}.onnx"
    return out, calibration.report


def insightface_check(onnx_file: Path) -> dict[str, Any]:
    """What ``insightface.model_zoo.get_model`` makes of the file and of its package, and one embedding."""
    import numpy as np
    from insightface.model_zoo import get_model

    by_file = get_model(str(onnx_file))
    by_package = get_model(str(onnx_file.parent), model_task="recognition")
    face = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    feat = by_package.get_feat(face)
    return {"file_class": type(by_file).__name__, "package_class": type(by_package).__name__,
            "embedding_shape": list(feat.shape)}


def accuracies(models: dict[str, Path], bin_path: Path, sizes: tuple[int, ...]) -> dict[str, Any]:
    """``{"accuracy": {model: {size: accuracy %}}, "paired": {size: int8 - float32 with its 95 % interval}}`` from
    the evaluation sweep, FaceBN off; the interval is the paired bootstrap over pairs within folds
    (:mod:`insightface_lr.eval.paired`): both graphs are scored on the same pairs."""
    from insightface_lr.eval.paired import paired_difference, unpack_bits
    from insightface_lr.eval.report import SweepConfig, run_sweep
    from insightface_lr.eval.verification import kfold_ids

    config = SweepConfig(sizes=sizes, facebn_modes=("off",), batch_size=64)
    result = run_sweep({k: str(v) for k, v in models.items()}, [bin_path], config=config)
    out: dict[str, dict[int, float]] = {name: {} for name in models}
    bits: dict[tuple[str, int], Any] = {}
    for record in result["records"]:
        out[record["model"]][record["size"]] = 100 * record["accuracy_mean"]
        bits[(record["model"], record["size"])] = unpack_bits(record["pair_correct"], record["pairs"])
    paired = {}
    if "int8" in models and "float32" in models:
        for size in sizes:
            int8, float32 = bits[("int8", size)], bits[("float32", size)]
            paired[size] = paired_difference(int8[None], float32[None], kfold_ids(int8.size, 10)).to_dict()
    return {"accuracy": out, "paired": paired}


def speed(files: dict[str, Path], batch: int, rounds: int, repeats: int) -> dict[str, Any]:
    """Median faces/s of each session (1 thread, no spinning) and median per-round int8 / float32."""
    import numpy as np
    import onnxruntime

    from insightface_lr.runtime import ort_session_options

    x = np.random.default_rng(0).uniform(-1, 1, (batch, 3, 112, 112)).astype(np.float32)
    sessions = {k: onnxruntime.InferenceSession(str(f), ort_session_options(1), providers=["CPUExecutionProvider"])
                for k, f in files.items()}
    rates: dict[str, list[float]] = {k: [] for k in files}
    for _ in range(rounds):
        for name, session in sessions.items():
            timing = measure(lambda s=session: s.run(None, {"input": x}), repeats=repeats, warmup=1)
            rates[name].append(timing.rate(batch))
    ratios = [i / f for i, f in zip(rates["int8"], rates["float32"], strict=True)]
    return {"batch": batch, "faces_per_s": {k: statistics.median(v) for k, v in rates.items()},
            "samples": rates, "ratio_int8_to_float32": statistics.median(ratios), "load_avg": load_average()}


def tiny_inputs(folder: Path, seed: int = 0) -> tuple[Path, Path, Path]:
    """A random 16-px student (``seed``), a generated train.rec (calibration) and test.bin."""
    import torch

    from insightface_lr.data.synthetic import write_synthetic_dataset
    from insightface_lr.models import get_backbone
    from insightface_lr.models.teacher import save_student

    torch.manual_seed(seed)
    student = save_student(folder / "student.pt", get_backbone("bridge_student", input_size=16).eval(),
                           network="bridge_student", kwargs={"input_size": 16, "embedding_size": 128})
    write_synthetic_dataset(folder / "data", train_ids=4, test_ids=8, images_per_identity=4, pairs=40, seed=0)
    return student, folder / "data" / "train.rec", folder / "data" / "test.bin"


def run(args, workdir: Path) -> dict[str, Any]:
    student, calibrate, bin_path = (tiny_inputs(workdir) if args.tiny else
                                    (Path(args.student), Path(args.calibrate), Path(args.bin)))
    files, heldout = write_packages(student, calibrate, workdir / "packages", args.calibrate_limit)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    models = {"torch": student, **files}
    result: dict[str, Any] = {
        "student": str(student), "calibration": str(calibrate), "heldout_check": heldout,
        "file_mb": {k: os.path.getsize(f) / 1e6 for k, f in files.items()},
        "insightface": {k: insightface_check(f) for k, f in files.items()},
        "synthetic": {"bin": str(bin_path), **accuracies(models, bin_path, sizes)},
    }
    real = Path(args.real_bin) if args.real_bin else None
    if real is not None and real.is_file():  # read in place, never copied
        result["real"] = {"bin": str(real), **accuracies(models, real, sizes)}
    result["speed"] = speed(files, args.batch, args.rounds, args.repeats)
    return result


def print_report(result: dict[str, Any], sizes: tuple[int, ...]) -> None:
    mb = result["file_mb"]
    print(f"int8 package file {mb['int8']:.3f} MB (float32 {mb['float32']:.3f} MB, x{mb['float32'] / mb['int8']:.2f} "
          f"smaller; limit {MAX_PACKAGE_MB} MB: {'ok' if mb['int8'] <= MAX_PACKAGE_MB else 'OVER'})")
    for variant, check in result["insightface"].items():
        print(f"insightface.model_zoo.get_model({variant}): file -> {check['file_class']}, package -> "
              f"{check['package_class']}, embedding {check['embedding_shape']}")
    check = result["heldout_check"]
    if "change" in check:
        print(f"export's held-out check ({check['pairs']} pairs of the calibration faces' held-out identities): "
              f"float32 {check['float32']:.2f} %, int8 {check['int8']:.2f} %, change {check['change']:+.2f} points")
    for lane in ("synthetic", "real"):
        if lane not in result:
            continue
        acc = result[lane]["accuracy"]
        rows = [{"model": m, **{f"{s}px %": acc[m][s] for s in sizes}} for m in acc]
        print(f"\naccuracy on {result[lane]['bin']} (FaceBN off, 10-fold mean):")
        print(format_table(rows, ["model", *(f"{s}px %" for s in sizes)]))
        for s in sizes:
            drop = acc["float32"][s] - acc["int8"][s]
            pair = result[lane].get("paired", {}).get(s)
            interval = f", paired 95 % interval [{pair['low']:+.2f}, {pair['high']:+.2f}]" if pair else ""
            print(f"{s} px: int8 - float32 = {-drop:+.2f} points{interval} (limit -{MAX_ACCURACY_DROP}: "
                  f"{'ok' if drop <= MAX_ACCURACY_DROP else 'OVER'})")
    sp = result["speed"]
    print(f"\nonnxruntime, 1 thread, batch {sp['batch']} at 112 px (load {sp['load_avg']}): float32 "
          f"{sp['faces_per_s']['float32']:.0f} faces/s, int8 {sp['faces_per_s']['int8']:.0f} faces/s, "
          f"int8 / float32 x{sp['ratio_int8_to_float32']:.2f} (median of per-round ratios)")


def run_single_threaded(run_fn, args) -> tuple[dict[str, Any], dict[str, Any]]:
    """``run_fn(args, workdir)`` on 1 torch thread in a temporary folder, after printing the machine."""
    from insightface_lr.runtime import apply_thread_env

    apply_thread_env()
    import torch

    torch.set_num_threads(1)
    info = machine_info()
    print(describe(info))
    with tempfile.TemporaryDirectory() as tmp:
        return info, run_fn(args, Path(tmp))


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], "runs/bench/int8.json")
    parser.add_argument("--student", help="student .pt (save_student) to export")
    parser.add_argument("--calibrate", help="int8 calibration faces: train.rec, image folder or .bin")
    parser.add_argument("--bin", help="test .bin (accuracy): the demo's synthetic test.bin, or a validation split")
    parser.add_argument("--real-bin", default="../shared/data/real_faces/dev.bin",
                        help="real-face .bin, read in place when present (accuracy, with the same limit)")
    parser.add_argument("--sizes", default="16")
    parser.add_argument("--calibrate-limit", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.tiny:
        args.batch, args.rounds, args.repeats, args.calibrate_limit, args.real_bin = 4, 2, 1, 16, None
    elif not (args.student and args.calibrate and args.bin):
        parser.error("--student, --calibrate and --bin are required (or --tiny)")
    info, result = run_single_threaded(run, args)
    print_report(result, tuple(int(s) for s in args.sizes.split(",")))
    write_json(args.out, {"benchmark": "int8", "machine": info, **result})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
