"""Make the shared test helpers of this folder importable (pytest runs with --import-mode=importlib)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "mxnet"))  # mxnet_symbols: tiny MXNet checkpoints
