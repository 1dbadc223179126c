"""``insightface-lr`` command line: parse and dispatch only.

Each sub-command lives in ``insightface_lr/commands/<name>.py`` with ``add_arguments(parser)``,
``run(args) -> int`` and ``EXAMPLE`` (one command line, shown by ``--help``); it may define
``interrupted_hint(args) -> str``, what to tell the user after Ctrl-C / SIGTERM. Modules are imported lazily
so that ``--help`` and light commands (``info``, ``pack``) never pay for importing torch-heavy code they do
not use.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import signal
import sys
from collections.abc import Sequence

from . import __version__
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

EXIT_USER_ERROR = 2  # as argparse: the user can fix the input
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
# an OSError with one of these numbers names a path the user can fix (rights, a file in the way, a full disk)
_USER_FIXABLE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EEXIST,
                                  errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.ENOENT})


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default in ``--help`` (options without one, ``None``, say in words what happens when
    they are omitted), and the example epilog printed as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="insightface-lr", formatter_class=HelpFormatter,
        description="Low-resolution face recognition by distillation for InsightFace's ArcFace pipeline.",
        epilog="example:\n  insightface-lr demo --quick --out demo_out\n\n`insightface-lr COMMAND --help` "
               "describes each command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        module = _module(module_name)
        command_parser = sub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter,
                                        epilog=f"example:\n  {module.EXAMPLE}")
        command_parser.set_defaults(_module=module_name)
        module.add_arguments(command_parser)
    return parser


def _module(module_name: str):
    return importlib.import_module(module_name)


LONG_RUNNING = ("train", "eval", "demo")  # commands whose batches benefit from :func:`runtime.tune_malloc`


def _interrupt(signum: int, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM (a scheduler, `kill`) ends a command the way Ctrl-C does


# Installed for both signals whatever the disposition this process inherited. A command started with `&` from
# a non-interactive shell (a CI script, `nohup cmd &` in a job file) inherits SIGINT *ignored* (POSIX), and
# Python then never raises KeyboardInterrupt: `kill -INT`, `scancel --signal=INT` or a runner's SIGINT would
# be a silent no-op and the run would go on for hours. Every command here stops cleanly (outputs are written
# whole, runs resume exactly), so honouring a stop request costs nothing, while ignoring one costs the
# scheduler's SIGKILL later. (The inherited SIG_IGN protects background jobs from a terminal's Ctrl-C aimed
# at the script; a user who wants that for a long run can start it with `setsid`.)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _interrupted_line(args: argparse.Namespace) -> str:
    hint = getattr(_module(args._module), "interrupted_hint", None)
    return f"insightface-lr {args.command}: interrupted; {hint(args) if hint else 're-run to continue'}"


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
    previous = {signum: signal.signal(signum, _interrupt) for signum in STOP_SIGNALS} if _in_main_thread() else {}
    try:
        with threads:
            return int(_module(args._module).run(args) or 0)
    except InsightFaceLRError as exc:
        # A user-fixable problem: one line naming the file/field, exit code 2 (as argparse does).
        print(f"insightface-lr {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank is interrupted; one says so
            print(_interrupted_line(args), file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        if exc.errno not in _USER_FIXABLE_ERRNOS or exc.filename is None:
            raise  # not about a path the user named: a bug, keep the traceback
        print(f"insightface-lr {args.command}: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        for signum, handler in previous.items():
            if handler is not None:  # None: a handler not installed from Python, which cannot be put back
                signal.signal(signum, handler)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
