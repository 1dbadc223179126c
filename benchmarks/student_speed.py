"""Student speed against the hardware: the inference path vs eager, and the thread policy under a busy box.

    python -m benchmarks.student_speed --out runs/bench/student_speed.json

Phase 1, one torch thread, no load of ours: rounds interleave a float32 2048x2048 matmul (the reference: what
this core sustains right now) with every lane of the model (eager; BN folded; folded + channels-last; the
:func:`~insightface_lr.models.inference.inference_net` choice; ONNX Runtime). Each figure is the median over
rounds; ``%matmul`` = faces/s x FLOPs per face / matmul FLOP/s of the same round, then the median.

Phase 2, a competing busy process (started here, killed at the end, bounded by ``--load-seconds``): rounds
interleave one thread with the project's default threads (``runtime.default_threads()``, sampled while the
competitor runs) on the inference path. Child processes then show what the policy avoids: every core with
libgomp's default spin-waiting vs with passive waiting, under the same competitor.

GPU lane (eager vs inference path, fp16 autocast, matmul reference) when CUDA exists; otherwise said so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import common
from .common import base_parser, describe, format_table, load_average, machine_info, write_json

BUSY_LOOP = "import sys, time\nend = time.time() + float(sys.argv[1])\nwhile time.time() < end:\n    pass\n"


def build_lanes(name: str, size: int, batch: int, workdir: Path | None) -> tuple[dict[str, Callable[[], Any]], float]:
    """``{lane: zero-argument call on one batch}`` and the model's MFLOPs per face (``workdir`` None: no
    onnxruntime lane)."""
    import torch

    from insightface_lr.models import fold_batchnorm, get_backbone
    from insightface_lr.models.inference import InferenceNet, inference_net

    from .inference import count_mflops, onnx_runner

    torch.manual_seed(0)
    model = get_backbone(name, input_size=size).eval()
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    variants = {"eager": model, "folded": InferenceNet(fold_batchnorm(model), channels_last=False),
                "folded_nhwc": inference_net(model, channels_last=True), "inference_net": inference_net(model)}
    lanes: dict[str, Callable[[], Any]] = {}
    for lane, net in variants.items():
        lanes[lane] = _torch_call(net, x)
    if workdir is not None:
        runner = onnx_runner(model, size, 1, workdir)
        x_numpy = x.numpy()
        lanes["onnxruntime"] = lambda: runner(x_numpy)
    return lanes, count_mflops(model, size)


def _torch_call(net, x) -> Callable[[], Any]:
    import torch

    def call():
        with torch.inference_mode():
            return net(x)

    return call


def time_lane(call: Callable[[], Any], threads: int, repeats: int) -> float:
    """Median seconds of ``repeats`` calls (after one untimed) with ``threads`` torch threads."""
    import torch

    torch.set_num_threads(threads)
    return common.measure(call, repeats=repeats, warmup=1).median


def matmul_seconds(repeats: int, n: int) -> float:
    import torch

    torch.set_num_threads(1)
    a, b = torch.randn(n, n), torch.randn(n, n)
    return common.measure(lambda: torch.mm(a, b), repeats=repeats, warmup=1).median


def interleaved(lanes: dict[str, tuple[Callable[[], Any], int]], rounds: int, repeats: int, n: int,
                batch: int, mflops: float) -> dict[str, dict[str, Any]]:
    """Per lane: median faces/s over rounds and median per-round share of that round's matmul rate."""
    samples: dict[str, list[float]] = {lane: [] for lane in lanes}
    shares: dict[str, list[float]] = {lane: [] for lane in lanes}
    matmul: list[float] = []
    for _ in range(rounds):
        gflops = 2 * n**3 / matmul_seconds(repeats, n) / 1e9
        matmul.append(gflops)
        for lane, (call, threads) in lanes.items():
            rate = batch / time_lane(call, threads, repeats)
            samples[lane].append(rate)
            shares[lane].append(rate * mflops / 1e3 / gflops)
    out = {lane: {"threads": lanes[lane][1], "faces_per_s": statistics.median(samples[lane]),
                  "fraction_of_matmul": statistics.median(shares[lane]), "samples": samples[lane]}
           for lane in lanes}
    out["matmul"] = {"gflops": statistics.median(matmul), "samples": matmul}
    return out


def start_competitor(seconds: float) -> subprocess.Popen:
    """One busy Python process that ends by itself after ``seconds`` (and is killed by us before that)."""
    return subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(seconds)])


def child_lane(name: str, size: int, batch: int, threads: int, policy: str, repeats: int) -> dict[str, Any]:
    """faces/s of the inference path in a fresh process whose OpenMP runtime starts with ``policy``
    ("default": libgomp's spin-then-sleep; "passive": the project's)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME")}
    if policy == "passive":
        from insightface_lr.runtime import apply_thread_env

        apply_thread_env(env)
    command = [sys.executable, "-m", "benchmarks.student_speed", "--child", f"{name}@{size}", "--batch",
               str(batch), "--threads", str(threads), "--repeats", str(repeats)]
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root, timeout=600)
    if out.returncode != 0:
        return {"policy": policy, "threads": threads, "error": out.stderr[-500:]}
    return {"policy": policy, "threads": threads, **json.loads(out.stdout.strip().splitlines()[-1])}


def run_child(spec: str, batch: int, threads: int, repeats: int) -> int:
    import torch

    from insightface_lr.models import get_backbone
    from insightface_lr.models.inference import inference_net

    name, _, size = spec.partition("@")
    net = inference_net(get_backbone(name, input_size=int(size)).eval())
    x = torch.randn(batch, 3, int(size), int(size))
    seconds = time_lane(_torch_call(net, x), threads, repeats)
    print(json.dumps({"faces_per_s": batch / seconds, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}))
    return 0


def phase_idle(args, name: str, size: int, workdir: Path) -> dict[str, Any]:
    lanes, mflops = build_lanes(name, size, args.batch, workdir)
    result = interleaved({lane: (call, 1) for lane, call in lanes.items()}, args.rounds, args.repeats,
                         args.matmul_n, args.batch, mflops)
    eager = result["eager"]["faces_per_s"]
    for lane in lanes:
        result[lane]["ratio_to_eager"] = result[lane]["faces_per_s"] / eager
    return {"model": name, "input_size": size, "mflops_per_face": mflops, "lanes": result,
            "load_avg": load_average()}


def phase_loaded(args, name: str, size: int) -> dict[str, Any]:
    """Default threads vs 1 thread with a competitor running, then the spin/passive children."""
    from insightface_lr.runtime import default_threads, usable_cores

    lanes, mflops = build_lanes(name, size, args.batch, None)
    competitor = start_competitor(args.load_seconds)
    try:
        time.sleep(0.5)  # let it get scheduled before the default is sampled
        threads = default_threads()
        picked = {"one_thread": (lanes["inference_net"], 1), "default_threads": (lanes["inference_net"], threads)}
        result = interleaved(picked, args.rounds, args.repeats, args.matmul_n, args.batch, mflops)
        cores = usable_cores()
        children = [child_lane(name, size, args.batch, t, p, args.repeats)
                    for p in ("default", "passive") for t in sorted({1, cores})] if not args.tiny else []
        load = load_average()
        still_running = competitor.poll() is None
    finally:
        competitor.kill()
        competitor.wait()
    result["default_threads"]["ratio_to_one_thread"] = (
        result["default_threads"]["faces_per_s"] / result["one_thread"]["faces_per_s"])
    return {"model": name, "input_size": size, "default_threads": threads, "cores": cores, "lanes": result,
            "children": children, "load_avg": load, "competitor_ran_throughout": still_running}


def gpu_lane(name: str, size: int, batch: int, repeats: int) -> dict[str, Any]:
    """Eager vs inference path on CUDA, float32 and fp16 autocast, against an 8192 matmul of the same run."""
    import torch

    from insightface_lr.models import get_backbone
    from insightface_lr.models.inference import inference_net

    model = get_backbone(name, input_size=size).eval().cuda()
    x = torch.randn(batch, 3, size, size, device="cuda")
    a = torch.randn(8192, 8192, device="cuda")

    def timed(fn: Callable[[], Any]) -> float:
        def call():
            fn()
            torch.cuda.synchronize()
        return common.measure(call, repeats=repeats, warmup=2).median

    out = {"matmul_gflops": 2 * 8192**3 / timed(lambda: a @ a) / 1e9, "gpu": torch.cuda.get_device_name(0)}
    for label, net in (("eager", model), ("inference_net", inference_net(model))):
        for dtype in ("float32", "fp16"):
            def run(net=net, dtype=dtype):
                with torch.inference_mode(), torch.autocast("cuda", enabled=dtype == "fp16"):
                    net(x)
            out[f"{label}_{dtype}_faces_per_s"] = batch / timed(run)
    return out


def print_report(idle: dict[str, Any], loaded: dict[str, Any] | None, gpu: dict[str, Any] | None) -> None:
    lanes = idle["lanes"]
    rows = [{"lane": lane, "threads": rec["threads"], "faces/s": rec["faces_per_s"],
             "%matmul": 100 * rec["fraction_of_matmul"], "x_eager": rec["ratio_to_eager"]}
            for lane, rec in lanes.items() if lane != "matmul"]
    print(f"\n{idle['model']}@{idle['input_size']}, {idle['mflops_per_face']:.3g} MFLOPs/face, 1 thread, "
          f"matmul {lanes['matmul']['gflops']:.1f} GFLOP/s (same rounds), load {idle['load_avg']}")
    print(format_table(rows, ["lane", "threads", "faces/s", "%matmul", "x_eager"]))
    best = lanes["inference_net"]
    print(f"1 thread: inference_net {100 * best['fraction_of_matmul']:.1f} % of matmul, "
          f"eager -> optimised x{best['ratio_to_eager']:.2f}, load {idle['load_avg']}")
    if loaded is not None:
        rec = loaded["lanes"]
        print(f"\nwith a competing busy process (load {loaded['load_avg']}), matmul "
              f"{rec['matmul']['gflops']:.1f} GFLOP/s; default threads = {loaded['default_threads']} of "
              f"{loaded['cores']} cores")
        print(format_table([{"lane": k, "threads": v["threads"], "faces/s": v["faces_per_s"],
                             "%matmul": 100 * v["fraction_of_matmul"]}
                            for k, v in rec.items() if k != "matmul"], ["lane", "threads", "faces/s", "%matmul"]))
        print(f"default threads / 1 thread under load: x{rec['default_threads']['ratio_to_one_thread']:.2f}; "
              f"/ 1 thread without the competitor: x"
              f"{rec['default_threads']['faces_per_s'] / best['faces_per_s']:.2f}")
        if loaded["children"]:
            print(format_table(loaded["children"], ["policy", "threads", "faces_per_s", "error"]))
    print("GPU lane: " + (json.dumps(gpu) if gpu else "not run (no CUDA on this machine)"))


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], "runs/bench/student_speed.json")
    parser.add_argument("--model", default="bridge_student@16", help="name@size")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per lane and round (median)")
    parser.add_argument("--matmul-n", type=int, default=2048)
    parser.add_argument("--load-seconds", type=float, default=300, help="the competitor's longest life")
    parser.add_argument("--no-load", action="store_true", help="skip phase 2 (the competing process)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: one lane in a fresh process
    args = parser.parse_args(argv)
    if args.child:
        return run_child(args.child, args.batch, args.threads, args.repeats)
    from insightface_lr.runtime import apply_thread_env

    apply_thread_env()  # the project's policy, before torch loads (when this is the process's first import)
    if args.tiny:
        args.batch, args.rounds, args.repeats, args.matmul_n, args.load_seconds = 8, 2, 1, 256, 30
    import torch

    name, _, size = args.model.partition("@")
    info = machine_info()
    print(describe(info))
    with tempfile.TemporaryDirectory() as tmp:
        idle = phase_idle(args, name, int(size or 16), Path(tmp))
        loaded = None if args.no_load else phase_loaded(args, name, int(size or 16))
    gpu = gpu_lane(name, int(size or 16), args.batch, args.repeats) if torch.cuda.is_available() else None
    torch.set_num_threads(info["torch_threads"])
    print_report(idle, loaded, gpu)
    write_json(args.out, {"benchmark": "student_speed", "machine": info, "batch": args.batch,
                          "rounds": args.rounds, "idle": idle, "loaded": loaded, "gpu": gpu,
                          "thread_env": {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME")}})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
