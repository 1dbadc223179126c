"""``insightface-lr`` command line: parse and dispatch only.

Each sub-command lives in ``insightface_lr/commands/<name>.py`` with two functions,
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported lazily so that ``--help``
and light commands (``info``, ``pack``) never pay for importing torch-heavy code they do not use.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from collections.abc import Sequence

from .errors import InsightFaceLRError

# name -> (module, one-line help). Add a line here when a command module lands.
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("insightface_lr.commands.info", "describe a .rec/.idx or .bin file (identities, images, sizes)"),
    "pack": ("insightface_lr.commands.pack", "pack an image folder (one sub-folder per identity) into train.rec/.idx"),
    "export": ("insightface_lr.commands.export", "export a student to ONNX (and an insightface model package)"),
    "train": ("insightface_lr.commands.train", "train a student (optionally distilled) from an arcface_torch config"),
    "eval": ("insightface_lr.commands.eval",
             "verification (.bin) and/or 1:N identification at several resolutions, FaceBN off/on"),
    "synth": ("insightface_lr.commands.synth", "write the embedded synthetic face set as .rec/.idx + .bin"),
    "demo": ("insightface_lr.commands.demo",
             "the main job: synthetic data -> HR teacher -> LR students (all methods) -> report"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="insightface-lr",
        description="Low-resolution face recognition by distillation for InsightFace's ArcFace pipeline.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        command_parser.set_defaults(_module=module_name)
        _module(module_name).add_arguments(command_parser)
    return parser


def _module(module_name: str):
    return importlib.import_module(module_name)


LONG_RUNNING = ("train", "eval", "demo")  # commands whose batches benefit from :func:`runtime.tune_malloc`


def main(argv: Sequence[str] | None = None) -> int:
    from .runtime import apply_thread_env, command_threads

    apply_thread_env()  # passive OpenMP waiting, before any command loads torch or onnxruntime
    parser = build_parser()
    args = parser.parse_args(argv)
    threads = contextlib.nullcontext()
    if args.command in LONG_RUNNING:
        from .runtime import tune_malloc

        tune_malloc()
        threads = command_threads(args.command, getattr(args, "threads", None))
    try:
        with threads:
            return int(_module(args._module).run(args) or 0)
    except InsightFaceLRError as exc:
        # A user-fixable problem: one line naming the file/field, exit code 2 (as argparse does).
        print(f"insightface-lr {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
