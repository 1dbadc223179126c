"""Helpers for trainer tests (imported by name: pytest runs with --import-mode=importlib)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(args: list[str], plugin_dir: Path, module: tuple[str, ...] = ("-m", "insightface_lr"), **kwargs):
    """Run the command line in a fresh process, single-threaded so that runs are bit-reproducible."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(plugin_dir))
    return subprocess.run([sys.executable, *module, *args], env=env, capture_output=True, text=True, **kwargs)


def tiny_args(data: Path, output: Path, *extra: str) -> list[str]:
    return [
        "train", "--rec", str(data), "--output", str(output), "--network", "tiny_mlp_test",
        "--student-input-size", "16", "--lr-size", "16", "--batch-size", "8", "--lr", "0.05",
        "--set", "embedding_size=16", "--set", "num_workers=0", "--set", "plugins=['tiny_plugin_backbone']",
        "--set", "frequent=1", "--set", "verbose=0", "--set", "margin_list=(1.0, 0.3, 0.0)", *extra,
    ]
