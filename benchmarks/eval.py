"""Evaluation throughput: a 12,000-image ``.bin`` (6,000 pairs) at 7 probe sizes x FaceBN off/on.

    python -m benchmarks.eval --out runs/bench/eval.json

The ``.bin`` is written from the embedded synthetic faces (JPEG, as InsightFace packs them) into
``--data`` (reused by later runs). The sweep is :func:`insightface_lr.eval.report.run_sweep`, what
``insightface-lr eval`` runs: decode the ``.bin`` once, degrade it once per probe size to uint8 probes
(:mod:`insightface_lr.eval.probes`), then per cell resize them to the model input, embed (and the mirror) and
compute the 10-fold metrics. Printed per cell: seconds and embeddings/s (2 per image: original + flip).

In the same run, the **old path** (before the probes were made once: every cell degraded every batch with
torch's antialiased interpolation, :func:`insightface_lr.eval.lowres.degrade_normalised`) sweeps the same
cells, and the script prints old / new. To show where the time goes it also times, alone, decoding the ``.bin``,
the degradation of the new path (every size once, plus each cell's resize to the input), the model forward
of every cell, and prints degradation / model.
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


def old_path_sweep(model, images, issame, sizes, modes, batch_size: int) -> float:
    """Seconds of the sweep as it ran before the probes were made once: each cell degrades every batch with
    torch's antialiased interpolation (the float path, :func:`degrade_normalised`), then embeds."""
    from insightface_lr.eval.lowres import degrade_normalised
    from insightface_lr.eval.report import facebn_fn
    from insightface_lr.eval.verification import embed_pairs, verification_metrics

    t0 = time.perf_counter()
    for size in sizes:
        for mode in modes:
            fn = model.fn if mode == "off" else facebn_fn(model, mode)
            low = embed_pairs(fn, images, batch_size=batch_size, flip=True,
                              preprocess=lambda x, s=size: degrade_normalised(x, s, model.input_size))
            verification_metrics(low, issame)
    return time.perf_counter() - t0


def component_times(model, images, sizes, modes, batch_size: int) -> dict[str, float]:
    """The new path's work split in two, each timed alone as the sweep does it: degradation (every size in one
    pass, :meth:`ProbeSets.prepare`, then the shrink to a smaller model input, and each cell's enlargement to a
    larger one) and the model forward of every cell (FaceBN cells run the BN-layer network, off cells the
    inference path)."""
    import numpy as np
    import torch

    from insightface_lr.data.pixels import normalize_uint8
    from insightface_lr.eval.lowres import probe_chain
    from insightface_lr.eval.probes import ProbeSets, to_input_size
    from insightface_lr.eval.report import facebn_fn

    t0 = time.perf_counter()
    probes = ProbeSets(images)
    probes.prepare(tuple(sizes))
    ready = [probes.at(size, model.input_size) for size in sizes]
    once = time.perf_counter() - t0
    t0 = time.perf_counter()
    for low in ready:  # per cell: only an enlargement costs anything (a 16-px model: nothing)
        for i in range(0, len(low), batch_size):
            to_input_size(normalize_uint8(torch.from_numpy(np.ascontiguousarray(low[i:i + batch_size]))
                                          .permute(0, 3, 1, 2)), model.input_size)
    resize = (time.perf_counter() - t0) * len(modes)
    x = torch.zeros(batch_size, 3, model.input_size, model.input_size)

    def forward_all(fn) -> None:
        with torch.inference_mode():
            for _ in range(2 * -(-len(images) // batch_size)):  # every batch and its mirror
                fn(x)

    computed = len({probe_chain(images.shape[1], size, model.input_size) for size in sizes})  # the sweep reuses equal
    model_s = sum(measure(lambda m=m: forward_all(model.fn if m == "off" else facebn_fn(model, m)),  # inputs' cells
                          repeats=1, warmup=0).median for m in modes) * computed
    return {"degrade_once_s": once, "resize_s": resize, "degrade_s": once + resize, "model_s": model_s}


def run(args) -> dict[str, Any]:
    from insightface_lr.data.verification_bin import load_bin_images
    from insightface_lr.eval.model_loading import load_eval_model
    from insightface_lr.eval.report import run_sweep

    folder = Path(args.data) / f"bin_p{args.pairs}_i{args.identities}x{args.per_identity}"  # one per setting
    path, generated_s = ensure_bin(folder, args.pairs, args.identities, args.per_identity)
    decode = measure(lambda: load_bin_images(path), repeats=1, warmup=0)
    images, issame = load_bin_images(path)
    model = load_eval_model(build_model(args.model, args.input_size), name=args.model)
    sizes, modes = tuple(int(s) for s in args.sizes.split(",")), ("off", "batch")
    t0 = time.perf_counter()
    sweep = run_sweep({args.model: model}, [path], sizes=sizes, facebn_modes=modes, batch_size=args.batch_size)
    total = time.perf_counter() - t0
    old_total = old_path_sweep(model, images, issame, sizes, modes, args.batch_size)
    cells = [{"size": r["size"], "facebn": r["facebn"], "seconds": r["seconds"],
              "embeddings_per_s": 2 * len(images) / r["seconds"] if r["seconds"] else None,
              "accuracy": r["accuracy_mean"]} for r in sweep["records"]]
    parts = component_times(model, images, sizes, modes, args.batch_size)
    return {"bin": str(path), "images": len(images), "pairs": int(issame.size), "generated_s": generated_s,
            "decode_s": decode.median, "decode_images_per_s": len(images) / decode.median,
            "sweep_total_s": total, "old_path_total_s": old_total, "old_to_new": old_total / total,
            "cells": cells,
            "breakdown": {**parts, "degrade_to_model": parts["degrade_s"] / parts["model_s"],
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
    b = result["breakdown"]
    print(f"{result['images']} images ({result['pairs']} pairs): decode {result['decode_s']:.2f} s "
          f"({result['decode_images_per_s']:.0f} images/s, once per .bin)")
    print(f"whole sweep ({len(result['cells'])} cells): {result['sweep_total_s']:.1f} s; the old path in the same "
          f"run {result['old_path_total_s']:.1f} s: old / new = {result['old_to_new']:.2f}")
    print(f"new path timed alone: degradation {b['degrade_s']:.2f} s (every size once {b['degrade_once_s']:.2f} s, "
          f"resizes to the input {b['resize_s']:.2f} s), model {b['model_s']:.2f} s: degradation / model = "
          f"{b['degrade_to_model']:.1%}; decode / model = {b['decode_to_model']:.1%}")
    write_json(args.out, {"benchmark": "eval", "machine": info, "model": f"{args.model}@{args.input_size}",
                          "batch_size": args.batch_size, **result})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
