"""The native 16-px bridge student against the MobileFaceNet it is distilled from: faces/s on this CPU, same run.

    python -m benchmarks.bridge_speed --student S.pt --reference M.pt --threads 2 --out runs/bench/bridge_speed.json

Both models (trained ``student.pt`` files; by default a random ``bridge_student@16`` and ``mbf@112``, the shape of
InsightFace's model-zoo MobileFaceNet: speed does not depend on the weights) run at their own native input
through the project's inference path (:func:`~insightface_lr.models.inference.inference_net`: BatchNorm folded,
channels-last where it pays) and through ONNX Runtime on the float file ``export`` writes. Rounds interleave
every lane, so a load change on a shared machine hits all of them alike; each figure is the median over rounds,
and the student / MobileFaceNet ratio is taken per round, then the median.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import common
from .common import base_parser, describe, format_table, load_average, machine_info, set_threads, write_json


def load_model(spec: str):
    """``(model in eval mode, native input size, label)`` from a ``student.pt`` path or ``name@size``."""
    from insightface_lr.models import get_backbone
    from insightface_lr.models.student_file import load_student

    if Path(spec).is_file():
        model, _ = load_student(spec)
        return model.eval(), int(model.input_size), Path(spec).parent.name or spec
    name, _, size = spec.partition("@")
    return get_backbone(name, input_size=int(size or 112)).eval(), int(size or 112), spec


def lanes_of(model, size: int, batch: int, threads: int, workdir: Path) -> dict[str, Callable[[], Any]]:
    """``{lane: one batch through it}``: the inference path and ONNX Runtime."""
    import torch

    from insightface_lr.models.inference import inference_net

    from .inference import onnx_runner

    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    net, runner, x_numpy = inference_net(model), onnx_runner(model, size, threads, workdir), x.numpy()

    def torch_call():
        with torch.inference_mode():
            return net(x)

    return {"inference_net": torch_call, "onnxruntime": lambda: runner(x_numpy)}


def interleave(models: dict[str, dict[str, Callable[[], Any]]], batch: int, rounds: int, repeats: int
               ) -> dict[str, dict[str, list[float]]]:
    """faces/s samples ``{model: {lane: [one per round]}}``, every lane timed once per round."""
    samples: dict[str, dict[str, list[float]]] = {m: {lane: [] for lane in lanes} for m, lanes in models.items()}
    for _ in range(rounds):
        for model, lanes in models.items():
            for lane, call in lanes.items():
                samples[model][lane].append(batch / common.measure(call, repeats=repeats, warmup=1).median)
    return samples


def summarise(samples: dict[str, dict[str, list[float]]]) -> list[dict[str, Any]]:
    """One row per lane: both models' median faces/s and the median of the per-round ratios."""
    rows = []
    for lane in samples["student"]:
        student, reference = samples["student"][lane], samples["reference"][lane]
        ratios = [s / r for s, r in zip(student, reference, strict=True)]
        rows.append({"lane": lane, "student_faces_per_s": statistics.median(student),
                     "reference_faces_per_s": statistics.median(reference), "ratio": statistics.median(ratios),
                     "student_samples": student, "reference_samples": reference})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], "runs/bench/bridge_speed.json")
    parser.add_argument("--student", default="bridge_student@16", help="student.pt or name@size")
    parser.add_argument("--reference", default="mbf@112", help="student.pt or name@size (MobileFaceNet)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per lane and round (median)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.batch, args.rounds, args.repeats = 4, 2, 1
    import torch

    set_threads(args.threads)
    info, threads = machine_info(), torch.get_num_threads()
    print(describe(info))
    loaded = {"student": load_model(args.student), "reference": load_model(args.reference)}
    with tempfile.TemporaryDirectory() as tmp:
        models = {role: lanes_of(model, size, args.batch, threads, Path(tmp)) for role, (model, size, _) in
                  loaded.items()}
        start = load_average()
        rows = summarise(interleave(models, args.batch, args.rounds, args.repeats))
    params = {role: sum(p.numel() for p in model.parameters()) for role, (model, _, _) in loaded.items()}
    print(f"\nstudent {loaded['student'][2]} @{loaded['student'][1]} px ({params['student'] / 1e6:.3f}M params) vs "
          f"reference {loaded['reference'][2]} @{loaded['reference'][1]} px ({params['reference'] / 1e6:.3f}M), "
          f"batch {args.batch}, {threads} thread(s), load {start} -> {load_average()}")
    print(format_table(rows, ["lane", "student_faces_per_s", "reference_faces_per_s", "ratio"]))
    write_json(args.out, {"benchmark": "bridge_speed", "machine": info, "batch": args.batch, "rounds": args.rounds,
                          "threads": threads, "params": params, "rows": rows,
                          "models": {role: {"spec": spec, "input_size": size} for role, (_, size, spec) in
                                     loaded.items()}})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
