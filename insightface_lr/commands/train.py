"""``insightface-lr train CONFIG [flags]`` and ``torchrun ... -m insightface_lr.train CONFIG [flags]``.

CONFIG is an arcface_torch config file, unchanged; flags override its fields (``--distill aird
--teacher backbone.pth --lr-size 16``); ``--set FIELD=VALUE`` overrides any other field.
"""

from __future__ import annotations

import argparse
import re
import signal
from pathlib import Path

from ..runtime import positive_int
from .arguments import int_list_argument

EXAMPLE = ("insightface-lr train recipes/ms1mv3/aird.py --rec /data/ms1m-retinaface-t1 "
           "--teacher work_dirs/ms1mv3/teacher_r50/student.pt --lr-size 16")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="arcface_torch-style config file (.py); defaults if omitted")
    parser.add_argument("--distill", help="distillation spec, e.g. aird, kd, aird+ccface, none")
    parser.add_argument("--teacher", help="teacher: arcface_torch backbone.pth, our .pt, insightface .onnx, or an "
                        "MXNet model-zoo checkpoint (prefix, either file or their folder)")
    parser.add_argument("--teacher-network", help="teacher backbone name (inferred from its keys if omitted)")
    parser.add_argument("--student-init", help="'teacher': the student is a trainable copy of the teacher (its "
                        "network, input and embedding size; fine-tuning a pretrained model), or a model to start "
                        "from: backbone.pth, student.pt, an MXNet checkpoint (prefix, either file or their folder)")
    parser.add_argument("--lr-size", type=int_list_argument, help="LR training size(s), e.g. 16 or 12,16")
    parser.add_argument("--network", help="student backbone (r18, r50, mbf, bridge_student, ...)")
    parser.add_argument("--student-input-size", type=int, help="student's native input size (e.g. 16)")
    parser.add_argument("--rec", help="folder with train.rec/train.idx (and val .bin files)")
    parser.add_argument("--output", help="output folder (checkpoints, logs, student.pt)")
    parser.add_argument("--batch-size", type=int, help="per-process batch size")
    parser.add_argument("--lr", type=float, help="base learning rate")
    parser.add_argument("--num-epoch", type=int)
    parser.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
    parser.add_argument("--device", help="auto, cpu, cuda (the device of each torchrun process) or cuda:N")
    parser.add_argument("--resume", action="store_true", default=None,
                        help="continue the run in --output from its last checkpoint (refused if the config "
                             "changes a training field)")
    parser.add_argument("--overwrite", action="store_true", default=None,
                        help="replace the run already in --output (a new run in a used folder is refused)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override any config field (Python literal values), repeatable")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (log lines on stdout instead; training.log etc. are still written)")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="torch intra-op threads (default: the cores idle at start; a team larger than the "
                             "free cores is slower than one thread, see BENCHMARKS.md)")
    _document_field_defaults(parser)


# flag (argparse dest) -> the config field it overrides
FLAG_FIELDS = {
    "distill": "distill", "teacher": "teacher", "teacher_network": "teacher_network", "student_init": "student_init",
    "lr_size": "lr_sizes",
    "network": "network", "student_input_size": "student_input_size", "rec": "rec", "output": "output",
    "batch_size": "batch_size", "lr": "lr", "num_epoch": "num_epoch", "max_steps": "max_steps", "device": "device",
    "resume": "resume", "overwrite": "overwrite",
}


def _document_field_defaults(parser: argparse.ArgumentParser) -> None:
    """A flag's default is the config file's value; ``--help`` names the field and its built-in default."""
    import dataclasses

    from ..train.config import DEFAULT_OUTPUT, TrainConfig

    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    defaults["output"] = f"work_dirs/<config name>, or {DEFAULT_OUTPUT} without a config"
    for action in parser._actions:
        field = FLAG_FIELDS.get(action.dest)
        if field is not None:
            action.help = f"{action.help or field} (default: the config's `{field}`, else {defaults[field]!r})"


def overrides_from_args(args: argparse.Namespace) -> dict:
    from ..train.config import parse_override

    flags = {field: getattr(args, dest) for dest, field in FLAG_FIELDS.items()}
    overrides = {k: v for k, v in flags.items() if v is not None}
    overrides.update(parse_override(item) for item in args.set)
    return overrides


def run(args: argparse.Namespace) -> int:
    from ..outputs import check_output_dir
    from ..train.config import load_config

    cfg = load_config(args.config, overrides_from_args(args))
    args.resolved_output = cfg.output  # for interrupted_hint
    # before torch is even imported: an unusable output folder must not cost an epoch of training
    check_output_dir(cfg.output, "--output" if args.output else f"field `output` of {args.config or 'the defaults'}")
    from ..train.distributed import cleanup, init_distributed
    from ..train.trainer import Trainer

    ctx = init_distributed(cfg.device)
    interrupts = Interrupts()
    try:
        with interrupts:
            interrupts.trainer = Trainer(cfg, ctx, progress=not args.no_progress)
            path = interrupts.trainer.fit()
        if ctx.is_main:
            print(f"student saved to {path}")
    except KeyboardInterrupt:
        args.stopped_at = interrupts.trainer.step if interrupts.trainer is not None else None  # interrupted_hint
        raise
    finally:  # Ctrl-C / SIGTERM: KeyboardInterrupt reaches the cli, which prints interrupted_hint, exit 130
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


# the trainer's checkpoint names, ``checkpoints/step00000040_rank0.pt``
_RANK0_CHECKPOINT = re.compile(r"^step(\d+)_rank0\.pt$")


def interrupted_hint(args: argparse.Namespace) -> str:
    """Where an interrupted run stands: the newest checkpoint, and the command that continues from it."""
    output = getattr(args, "resolved_output", None)
    folder = Path(output) / "checkpoints" if output else None
    steps = [int(m[1]) for p in (folder.iterdir() if folder and folder.is_dir() else ())
             if (m := _RANK0_CHECKPOINT.match(p.name))]
    if not steps:
        return "no checkpoint was written yet; re-run with --resume (it starts from step 0)"
    stopped = getattr(args, "stopped_at", None)
    after = f" (stopped after step {stopped})" if stopped is not None else ""
    return f"last checkpoint: step {max(steps)} in {folder}{after}; continue with --resume"
