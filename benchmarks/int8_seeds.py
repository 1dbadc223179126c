"""int8 against float32 over several students (one per seed): is the int8 package within the limit on average?

    python -m benchmarks.int8_seeds --students runs/demo/students/bridge2_16px_s{0,1,2}/student.pt \
        --calibrate runs/demo/data/train.rec --bins ../shared/data/real_faces/dev.bin --out runs/bench/int8_seeds.json

One student's int8 - float32 on a 1,200-pair set moves by several tenths of a point with the calibration's draw (the
10-fold thresholds flip pairs; ``benchmarks/int8.py`` measures one). This script exports each student as
``export --int8`` does with its defaults (``int8.write_packages``: the held-out check included, a student it
would refuse is refused here too), scores both graphs on the same pairs of each ``.bin`` (FaceBN off, 10-fold), and
pools them: the paired difference over the seeds and the pairs with its 95 % interval (``eval.paired``, the
statistic of the demo's comparisons), besides each student's own change. ``--tiny``: two random students and a
generated set (checks that the script runs; its accuracies mean nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .common import base_parser, write_json
from .int8 import MAX_ACCURACY_DROP, run_single_threaded, tiny_inputs, write_packages


def pair_bits(models: dict[str, Path], bin_path: Path, sizes: tuple[int, ...]) -> dict[tuple[str, int], Any]:
    """{(model, size): [P] pair judged right} from the evaluation sweep (FaceBN off)."""
    from insightface_lr.eval.paired import unpack_bits
    from insightface_lr.eval.report import SweepConfig, run_sweep

    result = run_sweep({k: str(v) for k, v in models.items()}, [bin_path],
                       config=SweepConfig(sizes=sizes, facebn_modes=("off",), batch_size=64))
    return {(r["model"], r["size"]): unpack_bits(r["pair_correct"], r["pairs"]) for r in result["records"]}


def pooled(bits: list[dict[tuple[str, int], Any]], size: int) -> dict[str, Any]:
    """int8 - float32 at ``size`` over every student (rows) and pair, with the paired interval and verdict."""
    import numpy as np

    from insightface_lr.eval.paired import paired_difference
    from insightface_lr.eval.verification import kfold_ids

    int8 = np.stack([b[("int8", size)] for b in bits])
    float32 = np.stack([b[("float32", size)] for b in bits])
    result = paired_difference(int8, float32, kfold_ids(int8.shape[1], 10)).to_dict()
    # the bar, read two ways: the mean change within the limit, and the whole interval within it (shown)
    return {**result, "mean_within_limit": result["difference"] >= -MAX_ACCURACY_DROP,
            "shown_within_limit": result["low"] >= -MAX_ACCURACY_DROP}


def run(args, workdir: Path) -> dict[str, Any]:
    if args.tiny:
        made = [tiny_inputs(workdir / f"s{seed}", seed=seed) for seed in (0, 1)]
        students, calibrate, bins = [m[0] for m in made], made[0][1], [made[0][2]]
    else:
        students, calibrate = [Path(s) for s in args.students.split(",")], Path(args.calibrate)
        bins = [Path(b) for b in args.bins.split(",")]
    sizes = tuple(int(s) for s in args.sizes.split(","))
    per_student, bits = [], {str(b): [] for b in bins}
    for index, student in enumerate(students):
        files, heldout = write_packages(student, calibrate, workdir / f"packages_{index}", args.calibrate_limit)
        row: dict[str, Any] = {"student": str(student), "heldout_check": heldout, "accuracy": {}}
        for bin_path in bins:
            found = pair_bits(files, bin_path, sizes)
            bits[str(bin_path)].append(found)
            row["accuracy"][str(bin_path)] = {f"{v}@{z}": 100 * float(found[(v, z)].mean())
                                              for v in files for z in sizes}
        per_student.append(row)
    return {"students": per_student, "calibration": str(calibrate),
            "pooled": {b: {str(z): pooled(found, z) for z in sizes} for b, found in bits.items()}}


def print_report(result: dict[str, Any]) -> None:
    for row in result["students"]:
        check = row["heldout_check"]
        held = f"held-out check {check['change']:+.2f}" if "change" in check else "no held-out check"
        print(f"{row['student']}: {held}; " + "; ".join(
            f"{Path(b).name} {k} {v:.2f}" for b, acc in row["accuracy"].items() for k, v in acc.items()))
    for bin_path, by_size in result["pooled"].items():
        for size, p in by_size.items():
            print(f"{Path(bin_path).name} at {size} px over {p['seeds']} students: int8 - float32 "
                  f"{p['difference']:+.2f} [{p['low']:+.2f}, {p['high']:+.2f}] ({p['verdict']}); mean within "
                  f"-{MAX_ACCURACY_DROP}: {'yes' if p['mean_within_limit'] else 'NO'}, whole interval: "
                  f"{'yes' if p['shown_within_limit'] else 'no'}")


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], "runs/bench/int8_seeds.json")
    parser.add_argument("--students", help="comma-separated student .pt files, one per seed")
    parser.add_argument("--calibrate", help="int8 calibration faces: train.rec, image folder or .bin")
    parser.add_argument("--bins", default="../shared/data/real_faces/dev.bin", help="comma-separated .bin files")
    parser.add_argument("--sizes", default="16")
    parser.add_argument("--calibrate-limit", type=int, default=2000)
    args = parser.parse_args(argv)
    if args.tiny:
        args.calibrate_limit = 16
    elif not (args.students and args.calibrate):
        parser.error("--students and --calibrate are required (or --tiny)")
    info, result = run_single_threaded(run, args)
    print_report(result)
    write_json(args.out, {"benchmark": "int8_seeds", "machine": info, **result})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
