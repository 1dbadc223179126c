"""Which FaceBN mode can be the default: every mode's change over FaceBN off, at two eval batch sizes.

    python scripts/facebn_modes.py --models 'demo_out/students/*_16px_s[0-9]_subset/student.pt' \
        --bins demo_out/data/val.bin,../shared/data/real_faces/dev.bin --size 16 --out runs/facebn_modes.json

A default must (issue 14) cost at most 0.3 points on faces that are not shifted, move at most 0.2 points
between eval batch sizes 32 and 256, and still gain under a real shift (the synthetic demo's shifted.bin).
This prints, per set and mode, the mean ± std over the models of (mode - off) at each batch size and the
largest |batch 32 - batch 256| change of any model; every number lands in ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import numpy as np

MODES = ("off", "batch", "prior:16", "prior:64", "prior:256", "calibrate", "calibrate:2400")


def evaluate(models: list[str], bins: list[str], size: int, modes: tuple[str, ...],
             batch_sizes: tuple[int, ...]) -> list[dict]:
    from insightface_lr.demo import nets  # noqa: F401  registers demo_hr_net (the demo's teacher)
    from insightface_lr.eval.report import SweepConfig, run_sweep

    records = []
    for batch in batch_sizes:
        config = SweepConfig(sizes=(size,), facebn_modes=modes, batch_size=batch)
        result = run_sweep({m: m for m in models}, bins, config=config, progress=True)
        records += [{**r, "batch_size": batch} for r in result["records"] if r["status"] == "ok"]
    return records


def table(records: list[dict], modes: tuple[str, ...], batch_sizes: tuple[int, ...]) -> str:
    acc = {(r["model"], r["bin"], r["facebn"], r["batch_size"]): 100 * r["accuracy_mean"] for r in records}
    models = sorted({r["model"] for r in records})
    lines = ["| set | mode | " + " | ".join(f"change at batch {b}" for b in batch_sizes) +
             " | max abs(batch change) |", "|---|---|" + "---:|" * (len(batch_sizes) + 1)]
    for bin_name in sorted({r["bin"] for r in records}):
        off = {m: acc[(m, bin_name, "off", batch_sizes[0])] for m in models}
        for mode in modes[1:]:
            cells = []
            for b in batch_sizes:
                d = np.array([acc[(m, bin_name, mode, b)] - off[m] for m in models])
                cells.append(f"{d.mean():+.2f} ± {d.std(ddof=1) if len(d) > 1 else 0.0:.2f}")
            moves = [abs(acc[(m, bin_name, mode, batch_sizes[0])] - acc[(m, bin_name, mode, batch_sizes[-1])])
                     for m in models]
            lines.append(f"| {bin_name} | {mode} | " + " | ".join(cells) + f" | {max(moves):.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", required=True, help="glob of student.pt files (quote it)")
    parser.add_argument("--bins", required=True, help="comma-separated .bin files")
    parser.add_argument("--size", type=int, default=16, help="probe size in px (default 16)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"FaceBN modes (default {','.join(MODES)})")
    parser.add_argument("--batch-sizes", default="32,256", help="eval batch sizes (default 32,256)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", help="JSON with every record")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    models = sorted(glob.glob(args.models))
    if not models:
        parser.error(f"--models {args.models!r} matches no file")
    modes = tuple(args.modes.split(","))
    batch_sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    records = evaluate(models, args.bins.split(","), args.size, modes, batch_sizes)
    print(f"{len(models)} models, {args.size} px; change of accuracy (points) against FaceBN off")
    print(table(records, modes, batch_sizes))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"models": models, "records": records}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
