"""Shared test settings: one torch thread per process (tests are tiny; thread oversubscription on a
2-core CI machine costs more than it gains), a headless matplotlib backend, and a user cache folder of
the test session's own (the default ``teacher_cache_dir`` lives there: tests never write the user's
``~/.cache``; each test gets a fresh one so that no test reuses another's teacher cache by accident)."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_configure(config) -> None:
    import torch

    torch.set_num_threads(1)
    # before any fixture: the session- and module-scoped ones (tiny trained runs) also stay out of ~/.cache
    config._iflr_cache_home = tempfile.mkdtemp(prefix="iflr_test_cache_")
    os.environ["XDG_CACHE_HOME"] = config._iflr_cache_home


@pytest.fixture(autouse=True)
def _own_user_cache(tmp_path_factory, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg_cache")))


def pytest_unconfigure(config) -> None:
    import shutil

    home = getattr(config, "_iflr_cache_home", None)
    if home:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def load_script():
    """``load_script("render_tables")``: a module of scripts/ (not a package), imported from its file."""
    import importlib.util
    import sys
    from pathlib import Path

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules.setdefault(name, module)
        spec.loader.exec_module(module)
        return module

    return load
