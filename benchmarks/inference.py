"""Student inference speed: faces/s, parameters, MFLOPs per face, peak memory, per backend and batch.

    python -m benchmarks.inference --out runs/bench/inference.json

Backends: PyTorch eager (``inference_mode``), ``torch.compile`` (skipped with the reason when it fails)
and ONNX Runtime on the file our :func:`insightface_lr.models.export.export_onnx` writes (BN folded), on
CPU; PyTorch eager on CUDA when present. Each model runs at its native LR input size. Printed ratios,
all measured in this run: faces/s against the bridge paper's 0.21M student (934 faces/s CPU, 14,705 GPU),
compiled and ONNX against eager, and the achieved GFLOP/s against a large float32 matmul on the same
device (the share of what the hardware sustains right now, which also absorbs the load of a shared
machine). FLOPs count a multiply-add as 2 (``torch.utils.flop_counter``), as the matmul figure does.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import common
from .common import base_parser, describe, format_table, machine_info, measure, set_threads, write_json

PAPER_FACES_PER_S = {"cpu": 934.0, "cuda": 14705.0}  # Ge et al., TIP 2020, 0.21M-parameter student
DEFAULT_MODELS = "bridge_student@16,mbf@32,r18@16,r18@32,r50@32"
TINY_MODELS = "bridge_student@16"
Runner = Callable[[Any], Any]


def parse_models(text: str) -> list[tuple[str, int]]:
    """``"bridge_student@16,r18@32"`` -> ``[("bridge_student", 16), ("r18", 32)]``."""
    out = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, _, size = item.partition("@")
        out.append((name, int(size or 112)))
    return out


def count_mflops(model, size: int) -> float:
    """MFLOPs per face of one forward pass (eval mode, batch 1)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e6


def eager_runner(model, device: str) -> Runner:
    import torch

    model = model.to(device)

    def run(x):
        with torch.inference_mode():
            out = model(x)
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    return run


def compile_runner(model, device: str) -> Runner:
    import torch

    return eager_runner(torch.compile(model, dynamic=False), device)


def onnx_runner(model, size: int, threads: int, workdir: Path) -> Runner:
    import onnxruntime as ort

    from insightface_lr.models.export import export_onnx

    path = workdir / f"{type(model).__name__}_{size}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LR input sizes are not insightface.model_zoo-routable: expected here
        export_onnx(model, path, input_size=size, check=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(x):
        return session.run(None, {"input": x})[0]

    return run


def make_runner(backend: str, model, size: int, threads: int, workdir: Path) -> Runner:
    if backend == "eager":
        return eager_runner(model, "cpu")
    if backend == "compile":
        return compile_runner(model, "cpu")
    if backend == "onnx":
        return onnx_runner(model, size, threads, workdir)
    if backend == "eager-cuda":
        return eager_runner(model, "cuda")
    raise ValueError(f"unknown backend {backend!r}")


def make_input(backend: str, batch: int, size: int):
    import torch

    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
    if backend == "onnx":
        return x.numpy()
    return x.cuda() if backend == "eager-cuda" else x


def bench_backend(backend: str, model, size: int, batches: list[int], args, workdir: Path) -> dict[str, Any]:
    """Build the runner and run the largest batch once (peak memory of that), then time every batch."""
    import torch

    record: dict[str, Any] = {"backend": backend}
    if backend == "eager-cuda":
        torch.cuda.reset_peak_memory_stats()
    common.reset_peak_rss()
    before = common.rss_mib()
    t0 = time.perf_counter()
    try:
        runner = make_runner(backend, model, size, torch.get_num_threads(), workdir)
        runner(make_input(backend, max(batches), size))
    except Exception as exc:  # compile needs a working C++ toolchain; report, don't stop the run
        return {**record, "skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    record["setup_s"] = time.perf_counter() - t0  # export / compilation + first call
    peak = common.rss_mib("VmHWM")
    record["peak_rss_mib"] = None if before is None or peak is None else max(peak - before, 0.0)
    if backend == "eager-cuda":
        record["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    record["faces_per_s"] = {}
    for batch in batches:
        x = make_input(backend, batch, size)
        timing = measure(lambda x=x: runner(x), repeats=args.repeats, warmup=1, min_seconds=args.min_seconds)
        record["faces_per_s"][batch] = timing.rate(batch)
    return record


def bench_model(name: str, size: int, backends: list[str], batches: list[int], args, workdir: Path,
                roofline: dict[str, float]) -> dict[str, Any]:
    import torch

    from insightface_lr.models import get_backbone

    torch.manual_seed(0)
    model = get_backbone(name, input_size=size).eval()
    mflops = count_mflops(model, size)
    result = {"model": name, "input_size": size, "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
              "mflops_per_face": mflops, "backends": []}
    for backend in backends:
        if backend == "compile" and name not in args.compile_models:
            continue
        record = bench_backend(backend, model, size, batches, args, workdir)
        device = "cuda" if backend.endswith("cuda") else "cpu"
        if "faces_per_s" in record:
            best = max(record["faces_per_s"].values())
            record["gflops_per_s"] = best * mflops / 1e3
            record["fraction_of_matmul"] = record["gflops_per_s"] / roofline[device]
        result["backends"].append(record)
    model.to("cpu")
    return result


def add_ratios(results: list[dict[str, Any]]) -> None:
    """Per backend: ratio to the paper's student and to eager on the same model and batch."""
    for result in results:
        eager = next((b for b in result["backends"] if b["backend"] == "eager"), None)
        for record in result["backends"]:
            if "faces_per_s" not in record:
                continue
            device = "cuda" if record["backend"].endswith("cuda") else "cpu"
            rates = record["faces_per_s"]
            record["ratio_to_paper"] = {b: r / PAPER_FACES_PER_S[device] for b, r in rates.items()}
            if eager is not None and "faces_per_s" in eager and record is not eager:
                record["speedup_vs_eager"] = {b: r / eager["faces_per_s"][b] for b, r in rates.items()}


def print_results(results: list[dict[str, Any]], batches: list[int], roofline: dict[str, float]) -> None:
    rows = []
    for res in results:
        for rec in res["backends"]:
            row = {"model": f"{res['model']}@{res['input_size']}", "params_M": res["params_m"],
                   "MFLOPs": res["mflops_per_face"], "backend": rec["backend"]}
            if "skipped" in rec:
                row["note"] = "skipped: " + rec["skipped"][:60]
            else:
                row.update({f"b{b}/s": rec["faces_per_s"][b] for b in batches})
                row.update({"peak_MiB": rec["peak_rss_mib"], "GFLOP/s": rec["gflops_per_s"],
                            "%matmul": 100 * rec["fraction_of_matmul"],
                            "x_paper": max(rec["ratio_to_paper"].values()),
                            "x_eager": max(rec.get("speedup_vs_eager", {}).values(), default=None)})
            rows.append(row)
    columns = ["model", "params_M", "MFLOPs", "backend", *(f"b{b}/s" for b in batches), "peak_MiB",
               "GFLOP/s", "%matmul", "x_paper", "x_eager", "note"]
    print(format_table(rows, columns))
    print("matmul GFLOP/s (float32, same run): " + ", ".join(f"{d} {v:.1f}" for d, v in roofline.items()))
    print("x_paper: best faces/s over batches / 934 (CPU) or 14,705 (GPU); x_eager: best speedup over eager")


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], "runs/bench/inference.json")
    parser.add_argument("--models", default=None, help=f"name@size list (default {DEFAULT_MODELS})")
    parser.add_argument("--batches", default="1,64,256")
    parser.add_argument("--backends", default="eager,compile,onnx")
    parser.add_argument("--compile-models", default="bridge_student,mbf",
                        help="models tried with torch.compile (compilation of the big ones takes minutes)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-seconds", type=float, default=1.0, help="least timed seconds per figure")
    args = parser.parse_args(argv)
    if args.tiny:
        args.models = args.models or TINY_MODELS
        args.batches, args.repeats, args.min_seconds, args.compile_models = "1,4", 1, 0.0, ""
    set_threads(args.threads)
    import torch

    models = parse_models(args.models or DEFAULT_MODELS)
    batches = [int(b) for b in args.batches.split(",")]
    backends = [b for b in args.backends.split(",") if b]
    if torch.cuda.is_available() and "eager-cuda" not in backends:
        backends.append("eager-cuda")
    args.compile_models = set(filter(None, args.compile_models.split(",")))
    info = machine_info()
    print(describe(info))
    roofline = {"cpu": common.matmul_gflops(512 if args.tiny else 2048)}
    if torch.cuda.is_available():
        roofline["cuda"] = common.matmul_gflops(8192, device="cuda")
    with tempfile.TemporaryDirectory() as tmp:
        results = [bench_model(n, s, backends, batches, args, Path(tmp), roofline) for n, s in models]
    add_ratios(results)
    print_results(results, batches, roofline)
    write_json(args.out, {"benchmark": "inference", "machine": info, "matmul_gflops": roofline,
                          "paper_faces_per_s": PAPER_FACES_PER_S, "batches": batches, "results": results})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
