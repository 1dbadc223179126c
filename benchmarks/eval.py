"""Evaluation throughput: a 12,000-image ``.bin`` (6,000 pairs) at 7 probe sizes x FaceBN off/on.

    python -m benchmarks.eval --out runs/bench/eval.json

The ``.bin`` is written from the embedded synthetic faces (JPEG, as InsightFace packs them) into
``--data`` (reused by later runs). The sweep is :func:`insightface_lr.eval.report.run_sweep`, what
``insightface-lr eval`` runs: decode the ``.bin`` once, then per cell degrade every face (and its mirror)
to the probe size, embed, and compute the 10-fold metrics. Printed per cell: seconds and embeddings/s
(2 per image: original + flip). To show where the time goes, the same run also times, alone, decoding
the ``.bin``, the degradation of one cell's faces and the model forward of one cell's faces, and prints
decode time against model time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .common import base_parser, describe, format_table, machine_info, measure, set_threads, write_json

SIZES = (112, 32, 24, 20, 16, 12, 8)


def ensure_bin(folder: Path, pairs: int, identities: int, per_identity: int) -> tuple[Path, float]:
    """``folder/test.bin`` with ``pairs`` pairs, generated unless already there; (path, seconds spent)."""
    from insightface_lr.data.synthetic import write_synthetic_dataset

    path = folder / "test.bin"
    if path.is_file():
        return path, 0.0
    t0 = time.perf_counter()
    write_synthetic_dataset(folder, train_ids=2, test_ids=identities, images_per_identity=per_identity,
                            pairs=pairs, seed=0)
    return path, time.perf_counter() - t0


def build_model(name: str, size: int):
    import torch

    from insightface_lr.models import get_backbone

    torch.manual_seed(0)
    return get_backbone(name, input_size=size).eval()


def component_times(model, images, size: int, batch_size: int) -> dict[str, float]:
    """Seconds of one cell's work split in two, each timed alone over all images and their mirrors:
    degradation to ``size`` px (+ resize to the model input) and the model forward on ready input."""
    import numpy as np
    import torch

    from insightface_lr.eval.lowres import degraded_model_fn

    degrade = degraded_model_fn(lambda x: x, size, model.input_size)
    batches = [torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size])).permute(0, 3, 1, 2)
               for i in range(0, len(images), batch_size)]
    ready = torch.zeros(batch_size, 3, model.input_size, model.input_size)

    def degrade_all() -> None:
        for x in batches:
            x = (x.float() / 255 - 0.5) / 0.5
            degrade(x)
            degrade(torch.flip(x, dims=[3]))

    def model_all() -> None:
        with torch.no_grad():
            for _ in range(2 * len(batches)):
                model(ready)

    return {"degrade_s": measure(degrade_all, repeats=1, warmup=0).median,
            "model_s": measure(model_all, repeats=1, warmup=1).median}


def run(args) -> dict[str, Any]:
    from insightface_lr.data.verification_bin import load_bin_images
    from insightface_lr.eval.report import run_sweep

    folder = Path(args.data) / f"bin_p{args.pairs}_i{args.identities}x{args.per_identity}"  # one per setting
    path, generated_s = ensure_bin(folder, args.pairs, args.identities, args.per_identity)
    decode = measure(lambda: load_bin_images(path), repeats=1, warmup=0)
    images, issame = load_bin_images(path)
    model = build_model(args.model, args.input_size)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    t0 = time.perf_counter()
    sweep = run_sweep({args.model: model}, [path], sizes=sizes, facebn_modes=("off", "batch"),
                      batch_size=args.batch_size)
    total = time.perf_counter() - t0
    cells = [{"size": r["size"], "facebn": r["facebn"], "seconds": r["seconds"],
              "embeddings_per_s": 2 * len(images) / r["seconds"], "accuracy": r["accuracy_mean"]}
             for r in sweep["records"]]
    parts = component_times(model, images, args.breakdown_size, args.batch_size)
    return {"bin": str(path), "images": len(images), "pairs": int(issame.size), "generated_s": generated_s,
            "decode_s": decode.median, "decode_images_per_s": len(images) / decode.median,
            "sweep_total_s": total, "cells": cells,
            "breakdown": {"size": args.breakdown_size, **parts,
                          "model_embeddings_per_s": 2 * len(images) / parts["model_s"],
                          "decode_to_model": decode.median / parts["model_s"]}}


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], "runs/bench/eval.json")
    parser.add_argument("--data", default="runs/bench/data", help="folder of the generated .bin")
    parser.add_argument("--model", default="bridge_student")
    parser.add_argument("--input-size", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=6000)
    parser.add_argument("--identities", type=int, default=60, help="distinct test identities rendered")
    parser.add_argument("--per-identity", type=int, default=10)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--breakdown-size", type=int, default=16)
    args = parser.parse_args(argv)
    if args.tiny:
        args.pairs, args.identities, args.per_identity, args.sizes, args.batch_size = 20, 4, 3, "16", 8
        args.data = str(Path(args.out).with_suffix("")) + "_data"
    set_threads(args.threads)
    info = machine_info()
    print(describe(info))
    result = run(args)
    print(format_table(result["cells"], ["size", "facebn", "seconds", "embeddings_per_s", "accuracy"]))
    b = result["breakdown"]
    print(f"{result['images']} images ({result['pairs']} pairs): decode {result['decode_s']:.2f} s "
          f"({result['decode_images_per_s']:.0f} images/s, once per .bin); whole sweep "
          f"{result['sweep_total_s']:.1f} s for {len(result['cells'])} cells")
    print(f"one cell at {b['size']} px, timed alone: model {b['model_s']:.2f} s "
          f"({b['model_embeddings_per_s']:.0f} embeddings/s), degradation {b['degrade_s']:.2f} s; "
          f"decode / model-of-one-cell = {b['decode_to_model']:.2f}, "
          f"decode share of the sweep = {result['decode_s'] / result['sweep_total_s']:.1%}")
    write_json(args.out, {"benchmark": "eval", "machine": info, "model": f"{args.model}@{args.input_size}",
                          "batch_size": args.batch_size, **result})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
