"""Process-level settings for long CPU runs (training, evaluation, the demo), applied by the processes we own:
the ``insightface-lr`` command and the demo's workers, never on import.

glibc serves every allocation above its mmap threshold (at most 32 MiB, adapted at run time) with a fresh
``mmap`` and returns it with ``munmap`` on free, and it trims the top of the heap above 128 KiB. A training
step or an evaluation batch allocates and frees the same ~1-30 MiB activation tensors again and again, so
each batch touches fresh pages: measured on the demo (1 torch thread), 2.1 million page faults for one
112-px sweep, and 12-25 % of the wall time (``benchmarks/allocator.py``). Raising both thresholds keeps
freed blocks in the heap for reuse; the cost is that up to ``trim_mib`` of freed memory stays with the
process instead of going back to the OS.

Threads (``benchmarks/student_speed.py``, BENCHMARKS.md section 6): torch's OpenMP team spin-waits between
parallel regions by default. A small net runs ~50 short ops per batch, so when another process holds one of
the cores a 2-thread team spends its time waiting for the descheduled member: 1 % of the matmul rate, 26x
slower than the same team waiting passively. :func:`apply_thread_env` therefore sets passive waiting in the
environment before torch or onnxruntime load (children inherit it), and :func:`default_threads` gives a
process as many intra-op threads as cores are idle when it starts, never more: a team larger than the free
cores is slower than one thread. onnxruntime sessions get the same count with spinning off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import sys
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
PR_SET_PDEATHSIG = 1  # prctl option from <linux/prctl.h>
# passive OpenMP waiting: libgomp (torch's CPU wheels) reads OMP_WAIT_POLICY, Intel's runtime KMP_BLOCKTIME
THREAD_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


def _libc() -> ctypes.CDLL | None:
    """The C library of this process on Linux (None elsewhere or when it cannot be opened)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def tune_malloc(mmap_mib: int = 64, trim_mib: int = 256) -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True if applied (False off glibc Linux)."""
    mallopt = getattr(_libc(), "mallopt", None)  # musl and other C libraries have none
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_mib << 20)) and bool(mallopt(M_TRIM_THRESHOLD, trim_mib << 20))


def die_with_parent() -> bool:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux ``PR_SET_PDEATHSIG``), so a worker
    of a killed run never goes on writing; True if applied."""
    import signal

    prctl = getattr(_libc(), "prctl", None)
    return prctl is not None and prctl(PR_SET_PDEATHSIG, signal.SIGKILL) == 0


def apply_thread_env(env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set :data:`THREAD_ENV` in ``env`` (default ``os.environ``) where the user has not set the variable;
    returns what was set. Only effective before torch / onnxruntime are imported (the OpenMP runtime reads
    it once, when it loads), so the command line calls it first; worker processes inherit it."""
    env = os.environ if env is None else env
    applied = {key: value for key, value in THREAD_ENV.items() if key not in env}
    env.update(applied)
    return applied


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask on Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def idle_cores(sample_s: float = 0.1) -> float | None:
    """How many of this process's cores were idle over ``sample_s`` seconds (``/proc/stat``; None where the
    file is missing). This process sleeps while sampling, so the figure is the load of the others."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
        before = _cpu_times(cpus)
        time.sleep(sample_s)
        after = _cpu_times(cpus)
    except (OSError, AttributeError, ValueError):
        return None
    idle = 0.0
    for (busy0, idle0), (busy1, idle1) in zip(before, after, strict=True):
        total = (busy1 - busy0) + (idle1 - idle0)
        idle += (idle1 - idle0) / total if total > 0 else 1.0
    return idle


def _cpu_times(cpus: list[int]) -> list[tuple[int, int]]:
    """(busy, idle) jiffies of each CPU in ``cpus`` from ``/proc/stat`` (idle counts iowait)."""
    rows = {}
    with open("/proc/stat", encoding="ascii") as handle:
        for line in handle:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
                rows[int(name[3:])] = (sum(values) - values[3] - values[4], values[3] + values[4])
    return [rows[cpu] for cpu in cpus]


def default_threads(sample_s: float = 0.1) -> int:
    """Intra-op threads for a process started now: the idle cores, rounded down unless at least 3/4 idle
    (a team larger than the free cores costs more than a missing thread), between 1 and the usable cores."""
    cores = usable_cores()
    idle = idle_cores(sample_s)
    if idle is None:
        return cores
    return max(1, min(cores, math.floor(idle + 0.25)))


def positive_int(text: str) -> int:
    """argparse type of ``--threads``: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        import argparse

        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads to ``threads`` (None: :func:`default_threads`); returns the count."""
    import torch

    count = int(threads) if threads else default_threads()
    torch.set_num_threads(count)
    return count


@contextmanager
def command_threads(command: str, threads: int | None = None) -> Iterator[int]:
    """Run a command body with ``threads`` torch threads (None: :func:`default_threads`, said on stdout when
    that is fewer than the cores), restoring the caller's count afterwards (in-process callers, tests)."""
    if "torch" not in sys.modules:
        # a command's pre-flight checks (output paths, flags) run before torch is imported, in seconds: pass
        # the count to torch's start-up instead of importing it here (OMP_NUM_THREADS sizes its intra-op pool)
        count = int(threads) if threads else default_threads()
        os.environ["OMP_NUM_THREADS"] = str(count)
        _say_threads(command, threads, count)
        yield count
        return
    import torch

    before = torch.get_num_threads()
    count = configure_threads(threads)
    _say_threads(command, threads, count)
    try:
        yield count
    finally:
        torch.set_num_threads(before)


def _say_threads(command: str, threads: int | None, count: int) -> None:
    if not threads and count < usable_cores():
        print(f"insightface-lr {command}: other processes keep {usable_cores() - count} of {usable_cores()} "
              f"cores busy, so {count} torch thread(s) (--threads N to choose)", flush=True)


def ort_session_options(threads: int | None = None) -> Any:
    """onnxruntime ``SessionOptions`` of this process's policy: ``threads`` intra-op threads (None: torch's
    current count), one inter-op thread, no spinning (a spinning pool starves a busy box, as OpenMP does),
    every graph optimisation (conv + activation fusion, NCHWc layouts)."""
    import onnxruntime
    import torch

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options
