"""Test-only hook that holds a command inside a stage until the test has signalled it (installed as the
``sitecustomize`` of the interrupt tests' child processes, so every process of the command has it: the demo's
spawned workers too). Nothing of it is imported by the package.

``IFLR_PAUSE=module:Qualified.name:k[:worker|:main]`` and ``IFLR_PAUSE_FILE=path``: once ``module`` is imported,
its attribute ``Qualified.name`` (a function, or a method of a class there) is wrapped; its k-th call in a process
(``:worker``: only in a process with a multiprocessing parent, a demo worker; ``:main``: only in the command's
own process) creates ``path`` and waits,
sleeping, until the test removes it, then makes the real call. The test sends its signal while the file exists,
so the signal lands inside that stage whatever the machine's speed; it removes the file afterwards, so a
command that finishes its current step before stopping (the trainer) can do so.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import time


def _wrap(function, count: int, marker: str, where: str):
    calls = [0]

    def paused(*args, **kwargs):
        import multiprocessing

        role = "main" if multiprocessing.parent_process() is None else "worker"
        if where in ("", role):
            calls[0] += 1
            if calls[0] == count:
                with open(marker, "w") as handle:
                    handle.write(str(os.getpid()))
                while os.path.exists(marker):
                    time.sleep(0.01)
        return function(*args, **kwargs)

    return paused


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: it wraps the loader of ``module`` so that the attribute is patched once the
    module has run."""

    def __init__(self, module: str, qualname: str, count: int, marker: str, where: str) -> None:
        self.module, self.qualname, self.args = module, qualname, (count, marker, where)

    def find_spec(self, name, path, target=None):
        if name != self.module:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run_module, patch = spec.loader.exec_module, self.patch

        def exec_module(module):
            run_module(module)
            patch(module)

        spec.loader.exec_module = exec_module
        return spec

    def patch(self, module) -> None:
        *owners, name = self.qualname.split(".")
        owner = module
        for part in owners:
            owner = getattr(owner, part)
        setattr(owner, name, _wrap(getattr(owner, name), *self.args))


def install() -> None:
    spec, marker = os.environ.get("IFLR_PAUSE"), os.environ.get("IFLR_PAUSE_FILE")
    if not spec or not marker:
        return
    module, qualname, count, *where = spec.split(":")
    sys.meta_path.insert(0, _PatchOnImport(module, qualname, int(count), marker, "".join(where)))


install()
