"""``insightface-lr train CONFIG [flags]`` and ``torchrun ... -m insightface_lr.train CONFIG [flags]``.

CONFIG is an arcface_torch config file, unchanged; flags override its fields (``--distill aird
--teacher backbone.pth --lr-size 16``); ``--set FIELD=VALUE`` overrides any other field.
"""

from __future__ import annotations

import argparse
import signal
import sys


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="arcface_torch-style config file (.py); defaults if omitted")
    parser.add_argument("--distill", help="distillation spec, e.g. aird, kd, aird+ccface, none")
    parser.add_argument("--teacher", help="teacher: arcface_torch backbone.pth, our .pt, or insightface .onnx")
    parser.add_argument("--teacher-network", help="teacher backbone name (inferred from its keys if omitted)")
    parser.add_argument("--lr-size", type=_sizes, help="LR training size(s), e.g. 16 or 12,16")
    parser.add_argument("--network", help="student backbone (r18, r50, mbf, bridge_student, ...)")
    parser.add_argument("--student-input-size", type=int, help="student's native input size (e.g. 16)")
    parser.add_argument("--rec", help="folder with train.rec/train.idx (and val .bin files)")
    parser.add_argument("--output", help="output folder (checkpoints, logs, student.pt)")
    parser.add_argument("--batch-size", type=int, help="per-process batch size")
    parser.add_argument("--lr", type=float, help="base learning rate")
    parser.add_argument("--num-epoch", type=int)
    parser.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--resume", action="store_true", default=None,
                        help="continue the run in --output from its last checkpoint (refused if the config "
                             "changes a training field)")
    parser.add_argument("--overwrite", action="store_true", default=None,
                        help="replace the run already in --output (a new run in a used folder is refused)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override any config field (Python literal values), repeatable")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (log lines on stdout instead; training.log etc. are still written)")


def overrides_from_args(args: argparse.Namespace) -> dict:
    from ..train.config import parse_override

    flags = {
        "distill": args.distill, "teacher": args.teacher, "teacher_network": args.teacher_network,
        "lr_sizes": args.lr_size, "network": args.network, "student_input_size": args.student_input_size,
        "rec": args.rec, "output": args.output, "batch_size": args.batch_size, "lr": args.lr,
        "num_epoch": args.num_epoch, "max_steps": args.max_steps, "device": args.device, "resume": args.resume,
        "overwrite": args.overwrite,
    }
    overrides = {k: v for k, v in flags.items() if v is not None}
    overrides.update(parse_override(item) for item in args.set)
    return overrides


def run(args: argparse.Namespace) -> int:
    from ..train.config import load_config
    from ..train.distributed import cleanup, init_distributed
    from ..train.trainer import Trainer

    cfg = load_config(args.config, overrides_from_args(args))
    ctx = init_distributed(cfg.device)
    interrupts = Interrupts()
    try:
        with interrupts:
            interrupts.trainer = Trainer(cfg, ctx, progress=not args.no_progress)
            path = interrupts.trainer.fit()
        if ctx.is_main:
            print(f"student saved to {path}")
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the checkpoints on disk are complete (atomic writes)
        if ctx.is_main:
            step = interrupts.trainer.step if interrupts.trainer is not None else 0
            print(f"insightface-lr train: interrupted at step {step}; continue with --resume", file=sys.stderr)
        return 130
    finally:
        cleanup()
    return 0


class Interrupts:
    """SIGINT/SIGTERM while training ask the trainer to stop after its current step (an exception raised
    inside a logger's or writer's lock could deadlock the shutdown); before training starts, or on a second
    signal, they stop at once."""

    def __init__(self) -> None:
        self.trainer = None
        self.previous: dict = {}

    def __enter__(self) -> Interrupts:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.previous[signum] = signal.signal(signum, self.handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def handle(self, signum, frame) -> None:
        if self.trainer is None or self.trainer.stop_requested:
            raise KeyboardInterrupt
        self.trainer.stop_requested = True
