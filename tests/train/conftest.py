"""Shared fixtures for trainer tests: a tiny synthetic .rec/.bin set and a BN-free plugin backbone.

The plugin backbone has no BatchNorm on purpose: BatchNorm statistics are per process under DDP (as in
arcface_torch, no SyncBN), so only a BN-free model can show that a 2-process run computes exactly the
same loss as a 1-process run with the same global batch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# make helpers_train importable from the tests of this folder
sys.path.insert(0, str(Path(__file__).parent))

PLUGIN_SOURCE = '''
import torch
from insightface_lr.registry import register_backbone


@register_backbone("tiny_mlp_test")
class TinyMLP(torch.nn.Module):
    def __init__(self, embedding_size=16, input_size=16, dropout=0.0, fp16=False):
        super().__init__()
        self.input_size, self.embedding_size = input_size, embedding_size
        self.net = torch.nn.Sequential(
            torch.nn.AvgPool2d(input_size // 8), torch.nn.Flatten(), torch.nn.Linear(3 * 64, 32),
            torch.nn.PReLU(), torch.nn.Linear(32, embedding_size),
        )

    def forward(self, x):
        return self.net(x)


@register_backbone("nan_after_3_test")
class NaNAfterThree(TinyMLP):
    """Diverges on its 4th training forward: the trainer must stop with the step and the loss parts."""

    def forward(self, x):
        self.calls = getattr(self, "calls", 0) + int(self.training)
        out = self.net(x)
        return out * float("nan") if self.calls > 3 else out
'''


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    from insightface_lr.data.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("tiny_data")
    write_synthetic_dataset(root, train_ids=6, test_ids=4, images_per_identity=6, pairs=20, seed=3)
    return root


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("plugin")
    (root / "tiny_plugin_backbone.py").write_text(PLUGIN_SOURCE)
    return root


@pytest.fixture(scope="session")
def tiny_teacher(plugin_dir, tmp_path_factory) -> Path:
    """A random, frozen 112-px teacher saved in our student format."""
    sys.path.insert(0, str(plugin_dir))
    try:
        import tiny_plugin_backbone  # noqa: F401  (registers tiny_mlp_test)
        import torch

        from insightface_lr.models.teacher import save_student
        from insightface_lr.registry import BACKBONES

        torch.manual_seed(5)
        model = BACKBONES.build("tiny_mlp_test", embedding_size=16, input_size=112)
        path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
        save_student(path, model, network="tiny_mlp_test")
        return path
    finally:
        sys.path.remove(str(plugin_dir))
