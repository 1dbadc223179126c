"""Shared pieces of the benchmark scripts: the machine description, a median timer, peak memory, the
matmul roofline, a plain-text table and the JSON file every script writes.

Kept free of torch at import time (``recordio.py`` runs a worker in the mxnet venv, which has no torch);
functions that need torch import it inside.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of one measured call: the median (the figure reported) and every sample,
    since the machine is shared and a single run can be hit by another process."""

    median: float
    samples: tuple[float, ...]

    def rate(self, items: float) -> float:
        """Items per second at the median time."""
        return items / self.median if self.median > 0 else float("inf")


def measure(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1, min_seconds: float = 0.0,
            max_repeats: int = 1000) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then at least ``repeats`` times (and until ``min_seconds``
    of timed calls have passed, at most ``max_repeats``); return the median and the samples."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < repeats or (time.perf_counter() - start < min_seconds and len(samples) < max_repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return Timing(statistics.median(samples), tuple(samples))


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def load_average() -> list[float] | None:
    """1/5/15-minute load: on a shared machine this says how much of the CPU the figures really had."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info(with_torch: bool = True) -> dict[str, Any]:
    """What the figures were measured on (stored in every JSON and printed at the top of every run)."""
    info: dict[str, Any] = {
        "cpu": cpu_model(), "cores": usable_cores(), "python": platform.python_version(),
        "platform": platform.platform(), "load_avg_start": load_average(),
        "memory_gib": _memory_gib(),
    }
    if with_torch:
        import torch

        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                    cuda=torch.cuda.is_available())
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _memory_gib() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return round(pages * size / 2**30, 1)


def describe(info: dict[str, Any]) -> str:
    parts = [f"{info['cpu']} ({info['cores']} cores)", f"python {info['python']}"]
    if "torch" in info:
        parts.append(f"torch {info['torch']} ({info['torch_threads']} threads)")
        parts.append(f"GPU {info['gpu']}" if info.get("gpu") else "no CUDA")
    parts.append(f"load {info['load_avg_start']}")
    return "machine: " + ", ".join(parts)


# --- peak memory -------------------------------------------------------------------------------------
# torch's CPU allocator does not go through Python's, so tracemalloc cannot see tensors; the kernel's
# resident-set high-water mark (VmHWM) can, and writing "5" to clear_refs resets it (Linux >= 4.0).
def reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def rss_mib(field: str = "VmRSS") -> float | None:
    """Current (``VmRSS``) or peak (``VmHWM``) resident memory of this process in MiB (None off Linux)."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else None


def peak_memory_of(fn: Callable[[], Any]) -> float | None:
    """MiB that the peak resident memory rose above the current one while ``fn`` ran (None if unknown)."""
    if not reset_peak_rss():
        return None
    before = rss_mib("VmRSS")
    fn()
    after = rss_mib("VmHWM")
    return None if before is None or after is None else max(after - before, 0.0)


# --- roofline ----------------------------------------------------------------------------------------
def matmul_gflops(n: int = 2048, device: str = "cpu", repeats: int = 5) -> float:
    """GFLOP/s of a large float32 ``n x n`` matmul (2 n^3 flops): what this CPU/GPU sustains right now."""
    import torch

    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)

    def run() -> None:
        torch.mm(a, b)
        if device != "cpu":
            torch.cuda.synchronize()

    timing = measure(run, repeats=repeats, warmup=1)
    return 2 * n**3 / timing.median / 1e9


# --- output ------------------------------------------------------------------------------------------
def base_parser(description: str, default_out: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", default=default_out, help="JSON file written with every figure")
    parser.add_argument("--tiny", action="store_true", help="smallest settings: checks the script runs")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    return parser


def set_threads(threads: int) -> None:
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A fixed-width text table of ``rows`` (floats rounded to 4 significant digits)."""
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "-" if value is None else str(value)

    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def write_json(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus the end-of-run load average) atomically as indented JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    machine = payload.get("machine")
    if isinstance(machine, dict):
        machine["load_avg_end"] = load_average()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    os.replace(tmp, path)
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
