"""Embedding a TinyFace-sized distractor gallery: 150,000 small JPEGs through ``eval --protocol``'s pipeline.

    python -m benchmarks.distractors --out runs/bench/distractors.json

The images are generated into a temporary folder (``--data``; removed afterwards unless ``--keep``): native
low-resolution faces of TinyFace's order of size (random 14-32 px sides, JPEG). They are embedded exactly as
``insightface-lr eval --protocol tinyface`` embeds Gallery_Distractor:
:func:`insightface_lr.eval.protocols.embed.embed_set` (DataLoader workers decoding whole batches, resize to the
model input, flip test, chunked atomic cache) with the 0.21M-parameter ``bridge_student`` at its native 16 px.
The same run times, alone, the model's own forward on ready batches (same batch size, same two views per
face) and the loader alone, and prints the ratio pipeline / model: near 1 means loading is not the bottleneck.
A second call then reads the cached embeddings (what a later cell or run pays).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import base_parser, describe, machine_info, set_threads, write_json


def generate(folder: Path, count: int, seed: int = 0) -> float:
    """``count`` JPEGs of random 14-32 px sides under ``folder`` (1,000 per sub-folder); returns seconds."""
    import numpy as np
    from PIL import Image

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(64, 32, 32, 3), dtype=np.uint8)  # textures, cropped and tinted per file
    sides = rng.integers(14, 33, size=(count, 2))
    tints = rng.integers(-40, 41, size=(count, 3))
    for i in range(count):  # data generation only: each file is one Pillow encode
        h, w = sides[i]
        pixels = np.clip(base[i % 64, :h, :w].astype(np.int16) + tints[i], 0, 255).astype(np.uint8)
        target = folder / f"{i // 1000:03d}"
        if i % 1000 == 0:
            target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(target / f"{i:06d}.jpg", quality=90)
    return time.perf_counter() - t0


def build_model(input_size: int):
    import torch

    from insightface_lr.eval.model_loading import load_eval_model
    from insightface_lr.models import get_backbone

    torch.manual_seed(0)
    return load_eval_model(get_backbone("bridge_student", input_size=input_size).eval(), name="bridge_student")


def model_only(fn, input_size: int, batch_size: int, faces: int) -> float:
    """Images/s of the model alone: ready uint8 batches, normalisation + both views, as the pipeline does."""
    import torch

    from insightface_lr.eval.verification import embed_pairs

    batches = torch.randint(0, 256, (max(faces // batch_size, 1), batch_size, 3, input_size, input_size),
                            dtype=torch.uint8)
    embed_pairs(fn, batches[0], batch_size=batch_size)  # warm-up
    t0 = time.perf_counter()
    for batch in batches:
        embed_pairs(fn, batch, batch_size=batch_size)
    return len(batches) * batch_size / (time.perf_counter() - t0)


def loader_only(face_set, side: int, batch_size: int, workers: int) -> float:
    from insightface_lr.eval.protocols.loader import FaceBatches, batch_windows, iterate_batches

    t0 = time.perf_counter()
    for _ in iterate_batches(FaceBatches(face_set.paths, side), batch_windows(len(face_set), batch_size), workers):
        pass
    return len(face_set) / (time.perf_counter() - t0)


def run(args, folder: Path) -> dict[str, Any]:
    from insightface_lr.eval.protocols.base import FaceSet, joined, list_images
    from insightface_lr.eval.protocols.embed import EmbedOptions, embed_set, inference_fn, model_digest, set_cache

    generated_s = generate(folder / "Gallery_Distractor", args.count)
    t0 = time.perf_counter()
    names = list_images(folder / "Gallery_Distractor", "generated distractors", recursive=True)
    face_set = FaceSet("distractor", joined(folder / "Gallery_Distractor", names), probe_side=False)
    listing_s = time.perf_counter() - t0
    model = build_model(args.input_size)
    opts = EmbedOptions(folder / "cache", batch_size=args.batch_size, workers=args.workers)
    cache = set_cache(opts, "tinyface", model, model_digest(model), face_set, model.input_size, "bench")
    fn = inference_fn(model)  # what eval --protocol embeds FaceBN-off sets with (BN folded, channels-last)
    faces = min(args.model_faces, len(face_set))
    model_rate = model_only(fn, model.input_size, args.batch_size, faces)
    eager_rate = model_only(model.fn, model.input_size, args.batch_size, faces)
    t0 = time.perf_counter()
    embeddings = embed_set(fn, model.input_size, face_set, model.input_size, cache, opts)
    pipeline_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = embed_set(fn, model.input_size, face_set, model.input_size, cache, opts)
    cached_s = time.perf_counter() - t0
    assert again.shape == embeddings.shape == (len(face_set), model.embedding_size)
    loader_rate = loader_only(face_set, model.input_size, args.batch_size, args.workers)
    pipeline_rate = len(face_set) / pipeline_s
    return {"images": len(face_set), "generated_s": generated_s, "listing_s": listing_s,
            "pipeline_s": pipeline_s, "pipeline_images_per_s": pipeline_rate,
            "model_images_per_s": model_rate, "eager_model_images_per_s": eager_rate,
            "loader_images_per_s": loader_rate,
            "pipeline_to_model": pipeline_rate / model_rate, "cached_reload_s": cached_s,
            "workers": args.workers, "batch_size": args.batch_size, "input_size": model.input_size}


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], "runs/bench/distractors.json")
    parser.add_argument("--count", type=int, default=150_000, help="distractor images generated and embedded")
    parser.add_argument("--data", default=None, help="folder for the generated images (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the generated images and cache")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers decoding")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--input-size", type=int, default=16)
    parser.add_argument("--model-faces", type=int, default=51_200, help="faces of the model-only timing")
    parser.set_defaults(threads=1)  # one core runs the model, the other decodes (2-core machine)
    args = parser.parse_args(argv)
    if args.tiny:
        args.count, args.batch_size, args.model_faces = 300, 64, 256
    set_threads(args.threads)
    info = machine_info()
    print(describe(info))
    folder = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="distractors_"))
    try:
        result = run(args, folder)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"{result['images']} distractor JPEGs (14-32 px, generated in {result['generated_s']:.1f} s) embedded by "
          f"bridge_student@{result['input_size']} with {args.workers} worker(s), batch {args.batch_size}:")
    print(f"  pipeline (decode + resize + flip test + cache): {result['pipeline_s']:.1f} s = "
          f"{result['pipeline_images_per_s']:.0f} images/s")
    print(f"  model alone on ready batches (same run):        {result['model_images_per_s']:.0f} images/s "
          f"(unfolded eager model: {result['eager_model_images_per_s']:.0f})")
    print(f"  loader alone:                                   {result['loader_images_per_s']:.0f} images/s")
    print(f"  pipeline / model = {result['pipeline_to_model']:.2f}; cached re-read {result['cached_reload_s']:.2f} s")
    write_json(args.out, {"benchmark": "distractors", "machine": info, **result})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
