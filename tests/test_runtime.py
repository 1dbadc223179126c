"""``runtime.tune_malloc``: glibc keeps freed activation-sized blocks for reuse instead of unmapping them.

Measured in fresh processes by minor page faults (a count, not a time): 40 rounds of allocating, writing and
freeing a 40 MiB buffer (above the 32 MiB ceiling of glibc's adaptive mmap threshold, as a 112-px batch of
activations can be) touch fresh pages every round by default and almost none once tuned.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CHILD = """
import json, resource, sys
import numpy as np
from insightface_lr.runtime import tune_malloc
applied = tune_malloc() if sys.argv[1] == "tuned" else False
np.ones(10 << 20, dtype=np.float32)  # warm up: the first round faults in both modes
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    block = np.ones(10 << 20, dtype=np.float32)  # 40 MiB: always mmap'ed by default
    del block
print(json.dumps({"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _faults(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_tuned_allocator_reuses_freed_blocks() -> None:
    default, tuned = _faults("default"), _faults("tuned")
    assert tuned["applied"] is True and default["applied"] is False
    # by default every round maps fresh memory (counted in 4 KiB or 2 MiB pages, depending on transparent huge
    # pages: >= 1 fault per round either way); tuned, the freed block is reused
    assert default["faults"] >= 40
    assert tuned["faults"] * 10 <= default["faults"]


def test_long_running_commands_tune_the_allocator_light_ones_do_not(monkeypatch) -> None:
    from insightface_lr import cli, runtime

    calls = []
    monkeypatch.setattr(runtime, "tune_malloc", lambda: calls.append(True) or True)
    assert cli.main(["eval", "--model", "missing.pt", "--bins", "missing.bin"]) == 2  # fails after tuning
    assert calls == [True]
    with pytest.raises(SystemExit):
        cli.main(["info", "--help"])
    assert calls == [True]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_die_with_parent_sets_the_parent_death_signal() -> None:
    child = ("import ctypes, ctypes.util, signal; from insightface_lr.runtime import die_with_parent; "
             "libc = ctypes.CDLL(ctypes.util.find_library('c')); sig = ctypes.c_int(0); "
             "before = libc.prctl(2, ctypes.byref(sig)) or sig.value; "  # PR_GET_PDEATHSIG
             "applied = die_with_parent(); libc.prctl(2, ctypes.byref(sig)); "
             "print(before, applied, sig.value == signal.SIGKILL)")
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "True", "True"]
