"""Shared test settings: one torch thread per process (tests are tiny; thread oversubscription on a
2-core CI machine costs more than it gains) and a headless matplotlib backend."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_configure(config) -> None:
    import torch

    torch.set_num_threads(1)
