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


# --- thread policy ------------------------------------------------------------------------------------
def test_thread_env_fills_only_what_the_user_left_unset() -> None:
    from insightface_lr.runtime import THREAD_ENV, apply_thread_env

    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    applied = apply_thread_env(env)
    assert env["OMP_WAIT_POLICY"] == "ACTIVE" and env["KMP_BLOCKTIME"] == "0"
    assert applied == {"KMP_BLOCKTIME": "0"} and THREAD_ENV["OMP_WAIT_POLICY"] == "PASSIVE"
    assert apply_thread_env(env) == {}


SPY = """
import json, os, sys
from insightface_lr import runtime
seen = {}
real = runtime.apply_thread_env
def spy(env=None):
    seen["torch_loaded"] = "torch" in sys.modules or "onnxruntime" in sys.modules
    return real(env)
runtime.apply_thread_env = spy
from insightface_lr import cli
code = cli.main(sys.argv[1:])
print(json.dumps({**seen, "code": code, "policy": os.environ.get("OMP_WAIT_POLICY")}))
"""


@pytest.mark.parametrize("argv", [["eval", "--model", "missing.pt", "--bins", "missing.bin"],
                                  ["export", "--model", "missing.pt", "--out", "x.onnx"]])
def test_every_command_sets_the_policy_before_torch_loads(argv, tmp_path) -> None:
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME")}
    out = subprocess.run([sys.executable, "-c", SPY, *argv], capture_output=True, text=True, env=env,
                         cwd=tmp_path, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"torch_loaded": False, "code": 2, "policy": "PASSIVE"}


@pytest.mark.parametrize(("idle", "cores", "threads"),
                         [(0.0, 2, 1), (0.9, 2, 1), (1.6, 2, 1), (1.8, 2, 2), (2.0, 2, 2), (7.9, 8, 8),
                          (3.2, 8, 3), (None, 4, 4)])
def test_default_threads_are_the_idle_cores(monkeypatch, idle, cores, threads) -> None:
    from insightface_lr import runtime

    monkeypatch.setattr(runtime, "idle_cores", lambda sample_s=0.1: idle)
    monkeypatch.setattr(runtime, "usable_cores", lambda: cores)
    assert runtime.default_threads() == threads


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/stat is Linux's")
def test_idle_cores_is_a_share_of_the_usable_cores() -> None:
    from insightface_lr.runtime import idle_cores, usable_cores

    idle = idle_cores(0.05)
    assert idle is not None and 0.0 <= idle <= usable_cores() + 1e-9


def test_threads_flag_is_applied_and_the_callers_count_restored(monkeypatch, tmp_path) -> None:
    import torch

    from insightface_lr import cli
    from insightface_lr.commands import eval as eval_command

    seen = []
    monkeypatch.setattr(eval_command, "run", lambda args: seen.append(torch.get_num_threads()) or 0)
    before = torch.get_num_threads()
    for threads in ("2", "1"):
        assert cli.main(["eval", "--model", "m.pt", "--bins", "b.bin", "--threads", threads]) == 0
    assert seen == [2, 1] and torch.get_num_threads() == before


def test_auto_threads_say_so_when_the_box_is_busy(monkeypatch, capsys) -> None:
    from insightface_lr import cli, runtime
    from insightface_lr.commands import train as train_command

    monkeypatch.setattr(runtime, "idle_cores", lambda sample_s=0.1: 0.2)
    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    monkeypatch.setattr(train_command, "run", lambda args: 0)
    assert cli.main(["train"]) == 0
    assert "1 of 2 cores busy, so 1 torch thread(s) (--threads N to choose)" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["0", "-1", "two"])
def test_threads_must_be_positive(bad, capsys) -> None:
    from insightface_lr import cli

    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--threads", bad])
    assert info.value.code == 2 and "--threads" in capsys.readouterr().err


def test_onnxruntime_sessions_do_not_spin() -> None:
    from insightface_lr.runtime import ort_session_options

    options = ort_session_options(3)
    assert options.intra_op_num_threads == 3 and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
