"""Distillation overhead: seconds per training step of each method, on the real Trainer.

    python -m benchmarks.train_step --out runs/bench/train_step.json

One synthetic ``train.rec`` and one teacher file (an arcface_torch-style ``backbone.pth`` of a 112-px
MobileFaceNet, random weights: speed does not depend on what the weights learned) serve every variant.
For each variant a :class:`insightface_lr.train.trainer.Trainer` is built exactly as ``insightface-lr
train`` builds it (the teacher cache is built once, during the first construction that needs it: that
variant's ``setup_s``; the mean-teacher class centres of ``aird``/``ccface`` need it even when live) and
``Trainer.train_step`` is timed on the same pre-decoded batches after warm-up steps, the variants in
interleaved rounds (median per variant) so load changes on a shared machine hit all alike. Decoding is the
DataLoader workers' job and is measured by ``benchmarks.recordio``. Printed: the median seconds/step and
its ratio to ``none`` (target: cached ``aird`` <= 1.15x; without the cache the teacher forward dominates).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from .common import base_parser, describe, format_table, machine_info, set_threads, write_json

# (label, --distill spec, teacher cache on)
VARIANTS = (
    ("none", "none", True),
    ("aird_live_teacher", "aird", False),
    ("aird_cached", "aird", True),
    ("ccface", "ccface", True),
    ("rkd", "rkd", True),
)
TARGET_CACHED_RATIO = 1.15


def make_data(root: Path, identities: int, per_identity: int) -> Path:
    from insightface_lr.data.synthetic import write_synthetic_dataset

    write_synthetic_dataset(root, train_ids=identities, test_ids=2, images_per_identity=per_identity, pairs=2,
                            seed=0)
    return root


def make_teacher(path: Path, network: str) -> Path:
    """A frozen 112-px teacher saved as arcface_torch saves ``backbone.pth`` (a bare state dict)."""
    import torch

    from insightface_lr.models import get_backbone

    torch.manual_seed(1)
    torch.save(get_backbone(network, input_size=112).eval().state_dict(), path)
    return path


def build_trainer(data: Path, teacher: Path, out: Path, distill: str, cache: bool, args):
    from insightface_lr.train.config import build_config
    from insightface_lr.train.trainer import Trainer

    fields = {
        "rec": str(data), "output": str(out), "network": args.student, "embedding_size": args.embedding_size,
        "student_input_size": args.input_size, "lr_sizes": [args.input_size], "batch_size": args.batch_size,
        "num_workers": 0, "verbose": 0, "frequent": 1000, "val_targets": [], "device": "cpu",
        "distill": distill, "teacher_cache": cache, "max_steps": 10_000,
    }
    if distill != "none":
        fields.update(teacher=str(teacher), teacher_network=args.teacher_network)
    return Trainer(build_config(fields, source="benchmarks.train_step"), progress=False)


def fixed_batches(trainer, count: int, batch_size: int) -> list[tuple[Any, Any, Any]]:
    """The first ``count`` batches of the sampler's order, decoded once (the same for every variant)."""
    import torch

    n = len(trainer.dataset)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    batches = []
    for b in range(count):
        idx = order[(torch.arange(batch_size) + b * batch_size) % n]
        items = [trainer.dataset[int(i)] for i in idx]
        images = torch.stack([im for im, _, _ in items])
        labels = torch.tensor([lab for _, lab, _ in items])
        batches.append((images, labels, idx))
    return batches


def make_stepper(trainer, batches):
    """A no-argument call running the trainer's next step on the next of the fixed batches."""
    trainer.student.train()
    state = {"i": 0}

    def step() -> None:
        images, labels, indices = batches[state["i"] % len(batches)]
        state["i"] += 1
        trainer.train_step(images, labels, indices, epoch=0)

    return step


def run_variants(data: Path, teacher: Path, work: Path, args) -> list[dict[str, Any]]:
    """Build every variant (one output folder: the teacher cache is built once and reused, as across
    runs), then time them in interleaved rounds so that a change of load on the shared machine hits
    every variant alike; the median of the rounds is reported."""
    import statistics

    records, steppers, batches = [], [], None
    for label, distill, cache in VARIANTS:
        t0 = time.perf_counter()
        trainer = build_trainer(data, teacher, work, distill, cache, args)
        setup = time.perf_counter() - t0
        batches = batches or fixed_batches(trainer, 4, args.batch_size)
        steppers.append(make_stepper(trainer, batches))
        records.append({"variant": label, "distill": distill, "teacher_cache": cache and distill != "none",
                        "setup_s": setup, "samples": []})
    for step in steppers:
        for _ in range(args.warmup):
            step()
    for _ in range(args.steps):
        for step, record in zip(steppers, records, strict=True):
            t0 = time.perf_counter()
            step()
            record["samples"].append(time.perf_counter() - t0)
    base = statistics.median(records[0]["samples"])
    for record in records:
        record["s_per_step"] = statistics.median(record["samples"])
        record["ratio_to_none"] = record["s_per_step"] / base
    return records


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], "runs/bench/train_step.json")
    parser.add_argument("--student", default="bridge_student")
    parser.add_argument("--input-size", type=int, default=16)
    parser.add_argument("--embedding-size", type=int, default=128)
    parser.add_argument("--teacher-network", default="mbf")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--identities", type=int, default=16)
    parser.add_argument("--per-identity", type=int, default=8)
    parser.add_argument("--steps", type=int, default=7, help="timed steps per variant (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    if args.tiny:
        args.batch_size, args.identities, args.per_identity, args.steps, args.warmup = 8, 4, 4, 2, 1
    set_threads(args.threads)
    info = machine_info()
    print(describe(info))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = make_data(work / "data", args.identities, args.per_identity)
        teacher = make_teacher(work / "backbone.pth", args.teacher_network)
        results = run_variants(data, teacher, work / "run", args)
    print(format_table(results, ["variant", "distill", "teacher_cache", "s_per_step", "ratio_to_none", "setup_s"]))
    cached = next(r for r in results if r["variant"] == "aird_cached")["ratio_to_none"]
    live = next(r for r in results if r["variant"] == "aird_live_teacher")["ratio_to_none"]
    verdict = "meets" if cached <= TARGET_CACHED_RATIO else "MISSES"
    print(f"aird cached / none = {cached:.3f} ({verdict} the <= {TARGET_CACHED_RATIO} target); "
          f"aird live teacher / none = {live:.2f}")
    settings = {k: getattr(args, k) for k in ("student", "input_size", "embedding_size", "teacher_network",
                                              "batch_size", "identities", "per_identity", "steps", "warmup")}
    write_json(args.out, {"benchmark": "train_step", "machine": info, "settings": settings,
                          "target_cached_ratio": TARGET_CACHED_RATIO, "results": results})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
