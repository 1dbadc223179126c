"""Training logs (tqdm, tensorboard, a plain text log) and verification during training.

Only rank 0 logs. Verification follows arcface_torch: the ``val_targets`` are ``<rec>/<name>.bin`` files,
evaluated every ``verbose`` steps and at the end, here at HR and at every LR size of the run.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from ..eval.lowres import lowres_verification

HR_SIZE = 112


class TrainLogger:
    """Progress bar with samples/s, loss parts and ETA; tensorboard scalars; ``training.log``."""

    def __init__(self, output: Path, total_steps: int, start_step: int, global_batch: int, enabled: bool):
        self.enabled = enabled
        self.global_batch = global_batch
        self._last_time, self._last_step = time.perf_counter(), start_step
        self.log = logging.getLogger(f"insightface_lr.train.{output}")
        self.bar = self.writer = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        output.mkdir(parents=True, exist_ok=True)
        self.log.setLevel(logging.INFO)
        if not self.log.handlers:
            handler = logging.FileHandler(output / "training.log")
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            self.log.addHandler(handler)
        self.writer = SummaryWriter(str(output / "tensorboard"))
        # one JSON line per step: the loss curve in a form scripts and tests can read back
        self.curve = open(output / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self.bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)

    def step(self, step: int, parts: Mapping[str, float], lr: float, every: int) -> None:
        if not self.enabled:
            return
        self.bar.update(1)
        self.curve.write(json.dumps({"step": step, "lr": lr, **parts}) + "\n")
        for name, value in parts.items():
            self.writer.add_scalar(f"loss/{name}", value, step)
        self.writer.add_scalar("lr", lr, step)
        if step % max(1, every) == 0:
            now = time.perf_counter()
            speed = (step - self._last_step) * self.global_batch / max(now - self._last_time, 1e-9)
            self._last_time, self._last_step = now, step
            self.writer.add_scalar("samples_per_s", speed, step)
            shown = {k: round(v, 4) for k, v in parts.items() if k == "loss" or k.count("/") == 1}
            self.bar.set_postfix(loss=f"{parts['loss']:.4f}", sps=f"{speed:.0f}")
            self.log.info("step %d lr %.6f samples/s %.1f %s", step, lr, speed, shown)

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)
        self.log.info("step %d %s", step, {k: round(v, 5) for k, v in values.items()})

    def info(self, message: str) -> None:
        if self.enabled:
            self.log.info(message)
            self.bar.write(message)

    def close(self) -> None:
        if self.enabled:
            self.bar.close()
            self.writer.close()
            self.curve.close()
            for handler in list(self.log.handlers):
                handler.close()
                self.log.removeHandler(handler)


class VerificationCallback:
    """Loads the ``val_targets`` once and reports accuracy at HR and at each LR size."""

    def __init__(self, rec: str, targets: tuple[str, ...], sizes: tuple[int, ...], input_size: int):
        from ..data.verification_bin import load_bin_images

        root = Path(rec)
        self.sets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name in targets:
            path = root / f"{name}.bin"
            if path.is_file():  # arcface_torch also skips targets that are not there
                self.sets[name] = load_bin_images(path)
        self.sizes = (HR_SIZE,) + tuple(s for s in sizes if s != HR_SIZE)
        self.input_size = input_size

    def __call__(self, model_fn: Callable[[torch.Tensor], torch.Tensor], device: torch.device) -> dict:
        results: dict[str, float] = {}
        for name, (images, issame) in self.sets.items():
            for size in self.sizes:
                result = lowres_verification(model_fn, images, issame, size, self.input_size, device=device)
                results[f"val/{name}@{size}px"] = result.accuracy_mean
        return results

    def evaluate(self, student: torch.nn.Module, device: torch.device) -> dict:
        """:meth:`__call__` on ``student`` in eval mode (BatchNorm running statistics), back in train mode after."""
        if not self.sets:
            return {}
        student.eval()
        try:
            return self(student, device)
        finally:
            student.train()
