"""glibc allocator thresholds: an evaluation sweep with and without :func:`insightface_lr.runtime.tune_malloc`.

    python -m benchmarks.allocator --threads 1 --out runs/bench/allocator.json

Each measurement is a fresh child process (``mallopt`` is process-wide and cannot be undone cleanly), run
alternately default / tuned ``--repeats`` times so that a change in machine load hits both. A child writes
a small ``.bin`` once (shared), builds a seeded model and runs :func:`insightface_lr.eval.report.run_sweep`
(what ``insightface-lr eval`` and the demo run), then reports its seconds and minor page faults. Printed:
median seconds and faults per mode and the ratio default / tuned (> 1: tuning is faster).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .common import base_parser, describe, format_table, machine_info, set_threads, write_json

MODES = ("default", "tuned")


def child(args) -> dict[str, Any]:
    """One sweep in this process; ``args.child`` says whether the allocator is tuned first."""
    import resource
    import time

    import torch

    from insightface_lr.demo import nets  # noqa: F401  registers demo_hr_net
    from insightface_lr.eval.model_loading import EvalModel
    from insightface_lr.eval.report import SweepConfig, run_sweep
    from insightface_lr.models import get_backbone
    from insightface_lr.runtime import tune_malloc

    applied = tune_malloc() if args.child == "tuned" else False
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = get_backbone(args.network, input_size=args.input_size, embedding_size=128).eval()
    wrapped = EvalModel(name=args.network, fn=model, module=model, input_size=args.input_size,
                        embedding_size=128, source="seeded", kind="torch", supports_facebn=True)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    tic = time.perf_counter()
    run_sweep({args.network: wrapped}, [args.bin], config=SweepConfig(sizes=(112, 16, 8)))
    return {"mode": args.child, "applied": applied, "seconds": time.perf_counter() - tic,
            "minor_faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults}


def measure_modes(args, bin_path: Path) -> list[dict[str, Any]]:
    runs = []
    for _ in range(args.repeats):
        for mode in MODES:
            cmd = [sys.executable, "-m", "benchmarks.allocator", "--child", mode, "--bin", str(bin_path),
                   "--threads", str(args.threads), "--network", args.network, "--input-size", str(args.input_size)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1])
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return runs


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for mode in MODES:
        mine = [r for r in runs if r["mode"] == mode]
        rows.append({"mode": mode, "seconds": statistics.median(r["seconds"] for r in mine),
                     "minor_faults": statistics.median(r["minor_faults"] for r in mine), "runs": len(mine)})
    rows[0]["ratio_default_to_tuned"] = rows[0]["seconds"] / rows[1]["seconds"]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], "runs/bench/allocator.json")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--bin", help="(child) the .bin to sweep")
    parser.add_argument("--network", default="demo_hr_net", help="backbone (default: the demo's 112-px teacher)")
    parser.add_argument("--input-size", type=int, default=112)
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3, help="child runs per mode (median reported)")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    if args.tiny:
        args.pairs, args.repeats, args.network, args.input_size = 10, 1, "bridge_student", 16
    set_threads(args.threads)  # the children set their own; this makes the printed machine line say it
    info = machine_info()
    print(describe(info))
    with tempfile.TemporaryDirectory() as tmp:
        from insightface_lr.data.synthetic import write_synthetic_dataset

        paths = write_synthetic_dataset(Path(tmp), train_ids=2, test_ids=max(4, args.pairs // 10),
                                        images_per_identity=4, pairs=args.pairs, seed=0)
        runs = measure_modes(args, paths.test_bin)
    rows = summarise(runs)
    print(format_table(rows, ["mode", "seconds", "minor_faults", "runs"]))
    print(f"default / tuned = {rows[0]['ratio_default_to_tuned']:.3f} (sweep of {args.network} at {args.input_size} "
          f"px, {args.pairs} pairs, sizes 112/16/8 x FaceBN off/batch)")
    write_json(args.out, {"benchmark": "allocator", "machine": info, "runs": runs, "summary": rows,
                          "settings": {k: getattr(args, k) for k in ("network", "input_size", "pairs", "repeats")}})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
