"""Process-level settings for long CPU runs (training, evaluation, the demo), applied by the processes we own:
the ``insightface-lr`` command and the demo's workers, never on import.

glibc serves every allocation above its mmap threshold (at most 32 MiB, adapted at run time) with a fresh
``mmap`` and returns it with ``munmap`` on free, and it trims the top of the heap above 128 KiB. A training
step or an evaluation batch allocates and frees the same ~1-30 MiB activation tensors again and again, so
each batch touches fresh pages: measured on the demo (1 torch thread), 2.1 million page faults for one
112-px sweep, and 12-25 % of the wall time (``benchmarks/allocator.py``). Raising both thresholds keeps
freed blocks in the heap for reuse; the cost is that up to ``trim_mib`` of freed memory stays with the
process instead of going back to the OS.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
PR_SET_PDEATHSIG = 1  # prctl option from <linux/prctl.h>


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
