"""Running the demo's per-model tasks (train a student, evaluate a model) one by one or in worker processes.

Every task is deterministic given its inputs and the torch thread count, so ``--jobs`` only changes the
wall time, never a number. Two rules keep workers from stepping on each other:

- a shared teacher cache is built by exactly one task: the first task of each cache starts at once, alone
  for its cache, and the cache's other tasks are submitted when it has finished (no barrier: cache-free
  tasks and the other caches' tasks keep the workers busy meanwhile);
- only the parent writes ``timings.json``: workers return their stage times.

Workers are started with ``spawn`` (a forked OpenMP runtime can hang) and, on Linux, ask the kernel to kill
them when the parent dies, so a killed demo never leaves a worker writing into the folder of its re-run.

Stopping (Ctrl-C, SIGTERM): only the parent decides. Workers ignore SIGINT (a terminal's Ctrl-C reaches the
whole process group; a worker's own KeyboardInterrupt would print a traceback per worker), and the parent,
interrupted, cancels what has not started and terminates the running workers at once instead of waiting for
their stages (a student can take minutes; a scheduler SIGKILLs 10-30 s after its SIGTERM). That loses
nothing: every output is written atomically and every stage resumes (a student from its last checkpoint), so
a killed stage is simply redone by the re-run, bit for bit as an uninterrupted run. The temporary files of
the writes a killed worker had under way (``atomic.py`` names them after the writer's pid) are removed.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Protocol

from ..errors import InsightFaceLRError


class Pipeline(Protocol):
    """What the pool needs of a :class:`~insightface_lr.demo.pipeline.DemoPipeline` (a protocol, so that this
    module, which the pipeline imports, does not import it back); a worker rebuilds one from its class."""

    out: Path
    jobs: int
    threads: int
    settings: Any
    device: str
    recipes: Path

    def cache_of(self, name: str) -> str | None: ...

    def needs(self, name: str) -> str | None: ...

    def run_task(self, name: str) -> None: ...

    def add_timings(self, timings: dict[str, float], ran: list[str]) -> None: ...

    def say(self, text: str) -> None: ...


Followers = dict[str, list[str]]


def task_order(pipeline: Pipeline, names: list[str]) -> tuple[list[str], Followers, Followers]:
    """(tasks to submit now, builder -> the tasks that wait for its cache, task -> the tasks that need it done).
    The first task of each shared cache builds it; builders come first so that their followers are released
    early, then the cache-free tasks in the order of ``names``. A task that needs another of ``names``
    (:meth:`needs`: bridge2 needs its bridge) starts when that one has finished."""
    builders, free, waiting, builder_of, after = [], [], {}, {}, {}
    present = set(names)
    for name in names:
        needed = pipeline.needs(name)
        if needed in present:
            after.setdefault(needed, []).append(name)
            continue
        cache = pipeline.cache_of(name)
        if cache is None:
            free.append(name)
        elif cache not in builder_of:
            builder_of[cache] = name
            builders.append(name)
            waiting[name] = []
        else:
            waiting[builder_of[cache]].append(name)
    return builders + free, waiting, after


def run_tasks(pipeline: Pipeline, names: list[str]) -> None:
    """Every task of ``names`` via ``pipeline.run_task``, in-process (``jobs == 1``) or in a process pool."""
    if pipeline.jobs == 1:
        for name in names:
            pipeline.run_task(name)
        return
    import multiprocessing

    pool = ProcessPoolExecutor(max_workers=pipeline.jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(pipeline.threads,))
    try:
        _schedule(pipeline, pool, *task_order(pipeline, names))
    except BrokenProcessPool as exc:  # a worker was killed (out of memory?) or exited without a Python error
        stop_workers(pool, pipeline.out)
        raise InsightFaceLRError(
            f"demo: a worker process died without an error message ({exc}); what finished is kept in "
            f"{pipeline.out}: re-run the same command to continue, or use --jobs 1 to run in one process") from exc
    except BaseException:  # KeyboardInterrupt (Ctrl-C, or SIGTERM through the cli): stop now, not after the stages
        stop_workers(pool, pipeline.out)
        raise
    pool.shutdown(wait=True)


def stop_workers(pool: ProcessPoolExecutor, out: Path, grace_s: float = 2.0) -> list[int]:
    """Cancel the pool's pending tasks and end its workers: SIGTERM (a worker has no handler for it, so it
    dies at once), SIGKILL for any still alive after ``grace_s``; then remove the temporary files of their
    unfinished atomic writes under ``out``. Returns the workers' pids."""
    # the pool's processes are private API; Python 3.14's ProcessPoolExecutor.terminate_workers() does the same
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + grace_s
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join(1.0)
    pool.shutdown(wait=True, cancel_futures=True)  # quick: no worker is left to wait for
    pids = [process.pid for process in processes if process.pid is not None]
    remove_temporaries(Path(out), pids)
    return pids


def remove_temporaries(folder: Path, pids: list[int]) -> int:
    """Remove the temporary siblings ``.<name>.<pid>.<token>.tmp`` (``atomic.py``) that the processes ``pids``
    left under ``folder``; returns how many. Files of other (live) writers are left alone."""
    removed = 0
    for pid in pids:
        for path in folder.rglob(f".*.{pid}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread meanwhile: a worker spawned inside inherits the blocked mask across exec,
    so a Ctrl-C during its start-up (before :func:`_init_worker` ignores SIGINT) cannot raise in it; a SIGINT
    that reaches the parent meanwhile is delivered when the block ends, not lost."""
    if not hasattr(signal, "pthread_sigmask"):  # not POSIX
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _schedule(pipeline: Pipeline, pool: ProcessPoolExecutor, ready: list[str],
              waiting: dict[str, list[str]], after: dict[str, list[str]]) -> None:
    """Submit ``ready``; as each task ends merge its timings and submit the tasks it released. The first
    failure cancels what has not started and is raised."""
    def submit(name: str):
        with _sigint_blocked():  # the pool spawns a worker inside submit() when it has fewer than its maximum
            return pool.submit(_run_in_worker, _worker_args(pipeline), name)

    running = {submit(name): name for name in ready}
    released: set[str] = set()

    def release(builder: str) -> None:  # a builder's followers start once, when its cache exists or it ends
        if builder not in released:
            released.add(builder)
            running.update({submit(follower): follower for follower in waiting.get(builder, [])})

    while running:
        pending = [b for b in waiting if b not in released]
        done, _ = wait(running, timeout=CACHE_POLL_S if pending else None, return_when=FIRST_COMPLETED)
        for builder in pending:  # the cache is built at the start of the builder's training: no need to wait
            if _cache_ready(pipeline, builder):  # for the rest of it (a 112-px fine-tune: ~10 minutes)
                release(builder)
        for future in done:
            name = running.pop(future)
            if future.exception() is not None:
                pool.shutdown(wait=True, cancel_futures=True)
                raise future.exception()
            timings, ran = future.result()
            pipeline.add_timings(timings, ran)
            for stage in ran:
                pipeline.say(f"[demo] {stage}: {timings[stage]:.1f} s")
            release(name)
            running.update({submit(follower): follower for follower in after.get(name, [])})


CACHE_POLL_S = 5.0


def _cache_ready(pipeline: Pipeline, builder: str) -> bool:
    """Whether the shared teacher cache ``builder`` builds is complete (its ``meta.json`` is written last, and a
    cache in the making lives in a hidden folder until it is renamed into place)."""
    cache = pipeline.cache_of(builder)
    if cache is None:
        return False
    return any(not p.parent.name.startswith(".") for p in (pipeline.out / "cache" / cache).glob("*/meta.json"))


def _worker_args(pipeline: Pipeline) -> dict[str, Any]:
    return {"pipeline_class": type(pipeline), "out": pipeline.out, "settings": pipeline.settings,
            "device": pipeline.device, "recipes": pipeline.recipes, "threads": pipeline.threads}


def _init_worker(threads: int) -> None:
    from ..runtime import die_with_parent, tune_malloc

    die_with_parent()  # first: importing torch can take a minute on a loaded box, and the parent may die meanwhile
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the workers (module docstring)
    import threading

    import torch
    from tqdm import tqdm

    # tqdm's default lock is a multiprocessing semaphore: a terminated worker would leave it registered, and the
    # resource tracker would print a warning at the demo's exit. Workers draw no bars; a thread lock does.
    tqdm.set_lock(threading.RLock())

    torch.set_num_threads(threads)
    tune_malloc()


def _run_in_worker(args: dict[str, Any], name: str) -> tuple[dict[str, float], list[str]]:
    from . import nets  # noqa: F401  registers demo_hr_net in this fresh interpreter

    args = dict(args)
    pipeline = args.pop("pipeline_class")(progress=False, record=False, **args)  # pickled by reference: its module
    pipeline.run_task(name)
    return pipeline.timings, pipeline.ran
