"""Running the demo's per-model tasks (train a student, evaluate a model) one by one or in worker processes.

Every task is deterministic given its inputs and the torch thread count, so ``--jobs`` only changes the
wall time, never a number. Two rules keep workers from stepping on each other:

- a shared teacher cache is built by exactly one task: the first task of each cache starts at once, alone
  for its cache, and the cache's other tasks are submitted when it has finished (no barrier: cache-free
  tasks and the other caches' tasks keep the workers busy meanwhile);
- only the parent writes ``timings.json``: workers return their stage times.

Workers are started with ``spawn`` (a forked OpenMP runtime can hang) and, on Linux, ask the kernel to kill
them when the parent dies, so a killed demo never leaves a worker writing into the folder of its re-run.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from ..errors import InsightFaceLRError

if TYPE_CHECKING:
    from .pipeline import DemoPipeline


def task_order(pipeline: DemoPipeline, names: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """(tasks to submit now, builder -> the tasks that wait for it). The first task of each shared cache
    builds it; builders come first so that their followers are released early, then the cache-free tasks
    in the order of ``names``."""
    builders, free, waiting, builder_of = [], [], {}, {}
    for name in names:
        cache = pipeline.cache_of(name)
        if cache is None:
            free.append(name)
        elif cache not in builder_of:
            builder_of[cache] = name
            builders.append(name)
            waiting[name] = []
        else:
            waiting[builder_of[cache]].append(name)
    return builders + free, waiting


def run_tasks(pipeline: DemoPipeline, names: list[str]) -> None:
    """Every task of ``names`` via ``pipeline.run_task``, in-process (``jobs == 1``) or in a process pool."""
    if pipeline.jobs == 1:
        for name in names:
            pipeline.run_task(name)
        return
    import multiprocessing

    try:
        with ProcessPoolExecutor(max_workers=pipeline.jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(pipeline.threads,)) as pool:
            _schedule(pipeline, pool, *task_order(pipeline, names))
    except BrokenProcessPool as exc:  # a worker was killed (out of memory?) or exited without a Python error
        raise InsightFaceLRError(
            f"demo: a worker process died without an error message ({exc}); what finished is kept in "
            f"{pipeline.out}: re-run the same command to continue, or use --jobs 1 to run in one process") from exc


def _schedule(pipeline: DemoPipeline, pool: ProcessPoolExecutor, ready: list[str],
              waiting: dict[str, list[str]]) -> None:
    """Submit ``ready``; as each task ends merge its timings and submit the tasks it released. The first
    failure cancels what has not started and is raised."""
    submit = lambda name: pool.submit(_run_in_worker, _worker_args(pipeline), name)  # noqa: E731
    running = {submit(name): name for name in ready}
    while running:
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            name = running.pop(future)
            if future.exception() is not None:
                pool.shutdown(wait=True, cancel_futures=True)
                raise future.exception()
            timings, ran = future.result()
            pipeline.add_timings(timings, ran)
            for stage in ran:
                pipeline.say(f"[demo] {stage}: {timings[stage]:.1f} s")
            running.update({submit(follower): follower for follower in waiting.get(name, [])})


def _worker_args(pipeline: DemoPipeline) -> dict[str, Any]:
    return {"out": pipeline.out, "settings": pipeline.settings, "device": pipeline.device,
            "recipes": pipeline.recipes, "threads": pipeline.threads}


def _init_worker(threads: int) -> None:
    from ..runtime import die_with_parent, tune_malloc

    die_with_parent()  # first: importing torch can take a minute on a loaded box, and the parent may die meanwhile
    import torch

    torch.set_num_threads(threads)
    tune_malloc()


def _run_in_worker(args: dict[str, Any], name: str) -> tuple[dict[str, float], list[str]]:
    from . import nets  # noqa: F401  registers demo_hr_net in this fresh interpreter
    from .pipeline import DemoPipeline

    pipeline = DemoPipeline(progress=False, record=False, **args)
    pipeline.run_task(name)
    return pipeline.timings, pipeline.ran
