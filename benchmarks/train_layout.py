"""Training step memory layout on this CPU: channels-first vs channels-last, same run, interleaved rounds.

    python -m benchmarks.train_layout [--threads 2] [--rounds 5]

For each network (MobileFaceNet and IResNet-18 at 112 px, the bridge student at its native 16 px) one SGD step
(forward + margin-free loss + backward) on a fixed batch is timed in both layouts, alternating, and the median
seconds per step and the ratio channels-first / channels-last are printed. ``train.parts.wrap_student`` picks
the layout from these measurements (``channels_last = "auto"``).
"""

from __future__ import annotations

import statistics
import time

from .common import base_parser, describe, machine_info, set_threads, write_json

NETWORKS = (("mbf", 112, 32), ("r18", 112, 16), ("bridge_student", 16, 256))


def step_seconds(model, x, channels_last: bool) -> float:
    import torch

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    x = x.contiguous(memory_format=fmt)
    tic = time.perf_counter()
    model(x).square().mean().backward()
    return time.perf_counter() - tic


def measure(name: str, size: int, batch: int, rounds: int) -> dict[str, float]:
    import torch

    from insightface_lr.models.factory import get_backbone

    torch.manual_seed(0)
    model = get_backbone(name, embedding_size=128, input_size=size).train()
    x = torch.randn(batch, 3, size, size)
    times: dict[bool, list[float]] = {False: [], True: []}
    for layout in (False, True):  # warm-up: oneDNN builds its kernels on the first call of each layout
        step_seconds(model, x, layout)
    for _ in range(rounds):
        for layout in (False, True):
            times[layout].append(step_seconds(model, x, layout) / batch)
    first, last = statistics.median(times[False]), statistics.median(times[True])
    return {"faces_per_s_channels_first": 1 / first, "faces_per_s_channels_last": 1 / last, "ratio": first / last}


def main() -> None:
    parser = base_parser(__doc__, "runs/bench/train_layout.json")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    set_threads(args.threads)
    info = machine_info()
    print(describe(info))
    results = {}
    for name, size, batch in NETWORKS[:1] if args.tiny else NETWORKS:
        r = results[name] = measure(name, size, 4 if args.tiny else batch, 1 if args.tiny else args.rounds)
        print(f"{name:>15} @ {size:3d} px, batch {batch:3d}: channels-first {r['faces_per_s_channels_first']:7.1f} "
              f"faces/s, channels-last {r['faces_per_s_channels_last']:7.1f} faces/s, ratio {r['ratio']:.2f}")
    write_json(args.out, {"machine": info, "networks": results})


if __name__ == "__main__":
    main()
