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
from typing import TextIO

import numpy as np
import torch

from ..atomic import atomic_write_bytes
from ..eval.lowres import lowres_verification

HR_SIZE = 112


class TrainLogger:
    """``training.log`` (config header, a line every ``frequent`` steps, validation), ``metrics.jsonl`` (one
    line per step, flushed as written), tensorboard scalars, and the terminal: a tqdm bar, or with
    ``progress=False`` the log lines on stdout. ``enabled`` is False on ranks other than 0 (nothing logged).

    On resume from ``start_step`` the logs are cut back to that step, so that every step appears once
    even when the previous process ran past its last checkpoint before it was killed.
    """

    def __init__(self, output: Path, total_steps: int, start_step: int, global_batch: int, enabled: bool,
                 progress: bool = True, header: Mapping[str, object] | None = None) -> None:
        self.enabled, self.global_batch = enabled, global_batch
        self._last_time, self._last_step = time.perf_counter(), start_step
        self.log = logging.getLogger(f"insightface_lr.train.{output}")
        self.bar = self.writer = self.curve = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        output.mkdir(parents=True, exist_ok=True)
        self.log.setLevel(logging.INFO)
        self.log.propagate = False
        for handler in list(self.log.handlers):  # a previous Trainer on the same folder in this process
            self.log.removeHandler(handler)
        handler = logging.FileHandler(output / "training.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        self.log.addHandler(handler)
        self.writer = SummaryWriter(str(output / "tensorboard"), purge_step=start_step + 1 if start_step else None)
        self.curve = open_metrics(output / "metrics.jsonl", start_step)
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)
        verb = f"resumed at step {start_step}" if start_step else "started"
        self.log.info("run %s (%d steps); config %s", verb, total_steps, json.dumps(header or {}, sort_keys=True))

    def step(self, step: int, parts: Mapping[str, float], lr: float, every: int) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
        self.curve.write(json.dumps({"step": step, "lr": lr, **parts}) + "\n")
        self.curve.flush()
        for name, value in parts.items():
            self.writer.add_scalar(f"loss/{name}", value, step)
        self.writer.add_scalar("lr", lr, step)
        if step % max(1, every) == 0:
            now = time.perf_counter()
            speed = (step - self._last_step) * self.global_batch / max(now - self._last_time, 1e-9)
            self._last_time, self._last_step = now, step
            self.writer.add_scalar("samples_per_s", speed, step)
            shown = {k: round(v, 4) for k, v in parts.items() if k == "loss" or k.count("/") == 1}
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{parts['loss']:.4f}", sps=f"{speed:.0f}")
                self.log.info("step %d lr %.6f samples/s %.1f %s", step, lr, speed, shown)
            else:
                self.info(f"step {step} lr {lr:.6f} samples/s {speed:.1f} {shown}")

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)
        self.info(f"step {step} {({k: round(v, 5) for k, v in values.items()})}")

    def info(self, message: str) -> None:
        """A line in ``training.log`` and on the terminal (above the bar)."""
        if self.enabled:
            self.log.info(message)
            if self.bar is not None:
                self.bar.write(message)
            else:
                print(message, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        for part in (self.bar, self.writer, self.curve):
            if part is not None:
                part.close()
        for handler in list(self.log.handlers):
            handler.close()
            self.log.removeHandler(handler)


def open_metrics(path: Path, start_step: int) -> TextIO:
    """``metrics.jsonl`` for appending, holding only the steps up to ``start_step`` (a torn last line from a
    killed process is dropped too); line-buffered, so every written step is on disk for a reader."""
    kept: list[str] = []
    if start_step and path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if int(json.loads(line)["step"]) <= start_step:
                    kept.append(line + "\n")
            except (ValueError, KeyError, TypeError):
                continue
    atomic_write_bytes(path, "".join(kept).encode())
    return open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 (closed by TrainLogger.close)


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
