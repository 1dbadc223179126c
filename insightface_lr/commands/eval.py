"""``insightface-lr eval --model a.pt[,b.onnx] --bins lfw.bin,cfp_fp.bin --sizes 112,32,16,8 --facebn --out DIR``
and/or ``--identification FACES [--distractors DIR] [--gallery-per-id 1]``.

Verification of each model on each set at each probe resolution, with FaceBN off and (``--facebn``) on;
writes ``report.md``, ``results.json`` and PNG plots into ``--out`` and prints the markdown tables.
Identification (HR gallery, LR probes, CMC rank-1/5/20) writes ``identification.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_SIZES = "112,32,24,20,16,12,8"
FACEBN_CHOICES = ("batch", "online", "calibrate[:N]", "prior[:N]")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="[NAME=]PATH[,...]",
                        help="comma-separated student .pt, arcface_torch backbone.pth or .onnx files; "
                             "report names are the file stems unless given as NAME=PATH")
    parser.add_argument("--bins", metavar="PATH[,...]",
                        help="comma-separated InsightFace verification sets (lfw.bin, cfp_fp.bin, ...)")
    parser.add_argument("--identification", metavar="FACES",
                        help="1:N identification on an image folder (one sub-folder per identity) or a train.rec: "
                             "the first --gallery-per-id images of each identity are the HR gallery, the rest "
                             "LR probes; reports CMC rank-1/5/20 (closed set)")
    parser.add_argument("--distractors", metavar="DIR",
                        help="with --identification: a folder of face images (or a .rec) added to the gallery")
    parser.add_argument("--gallery-per-id", type=int, default=1, help="HR gallery images per identity (default 1)")
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help=f"probe sizes in px (default {DEFAULT_SIZES})")
    parser.add_argument("--facebn", nargs="?", const="batch", default=None, metavar="MODE[,MODE]",
                        help=f"also evaluate with FaceBN: {', '.join(FACEBN_CHOICES)} (default batch when the "
                             "flag is given alone); calibrate uses each set's own degraded faces, unlabeled")
    parser.add_argument("--pair-mode", default="lr-lr", choices=("lr-lr", "hr-lr"),
                        help="lr-lr: both faces at the probe size; hr-lr: first face of each pair stays HR")
    parser.add_argument("--out", default="eval_report", help="output folder (default: eval_report)")
    parser.add_argument("--batch-size", type=int, default=64, help="inference batch (also FaceBN's statistics)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (CUDA when present)")
    parser.add_argument("--plugins", type=_modules, default=(), metavar="MODULE[,...]",
                        help="modules to import first, so that they register their backbones (a student.pt "
                             "records its own and imports them when its network is unknown)")
    parser.add_argument("--network", help="backbone name for a backbone.pth whose network cannot be inferred")
    parser.add_argument("--roc-size", type=int, help="probe size of the ROC plot (default: the smallest size)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_models(text: str) -> dict[str, str]:
    """``"a.pt,teacher=b.onnx"`` -> ``{"a": "a.pt", "teacher": "b.onnx"}`` (stems made unique)."""
    from ..errors import ConfigError
    from ..eval.report import unique_names

    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ConfigError("--model: expected at least one model path")
    pairs = [item.split("=", 1) if "=" in item else (Path(item).stem, item) for item in items]
    names = [name.strip() for name, _ in pairs]
    if any(not name or not path.strip() for name, (_, path) in zip(names, pairs, strict=True)):
        raise ConfigError(f"--model: expected [NAME=]PATH items, got {text!r}")
    return dict(zip(unique_names(names), (path.strip() for _, path in pairs), strict=True))


def parse_sizes(text: str) -> tuple[int, ...]:
    from ..errors import ConfigError

    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"--sizes: expected comma-separated integers like {DEFAULT_SIZES}, got {text!r}") from None
    if not sizes or min(sizes) < 1 or len(set(sizes)) != len(sizes):
        raise ConfigError(f"--sizes: expected distinct positive integers, got {text!r}")
    return sizes


def parse_facebn(value: str | None) -> tuple[str, ...]:
    """``None`` -> ``("off",)``; ``"batch,calibrate"`` -> ``("off", "batch", "calibrate")``."""
    from ..errors import ConfigError

    if value is None:
        return ("off",)
    from ..eval.report import facebn_spec

    modes = tuple(m.strip() for m in value.split(",") if m.strip())
    try:
        for mode in modes:
            facebn_spec(mode)
    except ConfigError as exc:
        raise ConfigError(f"--facebn {value!r}: {exc}") from None
    if not modes or "off" in modes:
        raise ConfigError(f"--facebn: expected modes from {FACEBN_CHOICES}, got {value!r}")
    return ("off", *dict.fromkeys(modes))


def _modules(text: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in text.split(",") if m.strip())


def run(args: argparse.Namespace) -> int:
    from ..registry import import_plugins

    import_plugins(args.plugins)
    from ..errors import ConfigError
    from ..eval.model_loading import load_eval_model, resolve_device

    if not args.bins and not args.identification:
        raise ConfigError("expected --bins (verification) and/or --identification (1:N identification), got neither")
    if args.distractors and not args.identification:
        raise ConfigError("--distractors: only used with --identification")
    sizes, modes = parse_sizes(args.sizes), parse_facebn(args.facebn)
    names = parse_models(args.model)
    # every user error is reported before the first model runs (a sweep can take hours)
    sweep = _sweep_config(args, sizes, modes) if args.bins else None
    ident = _identification_config(args, sizes, modes) if args.identification else None
    device = resolve_device(args.device)
    models = {name: load_eval_model(path, args.network, device, name) for name, path in names.items()}
    if sweep is not None:
        from ..eval.report import markdown_tables, run_sweep, write_report

        results = run_sweep(models, sweep[0], device=device, progress=not args.quiet, config=sweep[1])
        written = write_report(results, args.out, roc_size=args.roc_size, plots=not args.no_plots)
        _show(markdown_tables(results), written, results)
    if ident is not None:
        from ..eval import identification_report as report

        results = report.run_identification(models, args.identification, args.distractors, ident, device=device,
                                            progress=not args.quiet)
        _show(report.identification_markdown(results), report.write_identification_report(results, args.out),
              results)
    return 0


def _sweep_config(args: argparse.Namespace, sizes: tuple[int, ...], modes: tuple[str, ...]):
    from ..errors import ConfigError
    from ..eval.report import SweepConfig

    bins = [b.strip() for b in args.bins.split(",") if b.strip()]
    missing = [b for b in bins if not Path(b).is_file()]
    if not bins or missing:
        raise ConfigError(f"--bins: no such file(s): {missing}" if missing else "--bins: expected a .bin path")
    config = SweepConfig(sizes=sizes, facebn_modes=modes, pair_mode=args.pair_mode, batch_size=args.batch_size)
    if args.roc_size is not None and args.roc_size not in config.sizes:
        raise ConfigError(f"--roc-size {args.roc_size}: not one of --sizes {list(config.sizes)}")
    return bins, config


def _identification_config(args: argparse.Namespace, sizes: tuple[int, ...], modes: tuple[str, ...]):
    from ..eval.identification_report import IdentificationConfig, open_distractors, open_face_set

    open_face_set(args.identification)  # a missing or malformed set is reported before any model runs
    if args.distractors:
        open_distractors(args.distractors)
    return IdentificationConfig(sizes=sizes, facebn_modes=modes, gallery_per_id=args.gallery_per_id,
                                batch_size=args.batch_size)


def _show(table: str, written: dict, results: dict) -> None:
    print(table)
    print(f"wrote {', '.join(str(p) for p in written.values())} (wall time {results['wall_time_s']:.1f} s)")
