"""``insightface-lr eval --model a.pt[,b.onnx] --bins lfw.bin,cfp_fp.bin --sizes 112,32,16,8 --facebn --out DIR``
and/or ``--identification FACES [--distractors DIR] [--gallery-per-id 1]``
and/or ``--protocol tinyface|scface|survface|xqlfw|ijbb|ijbc --root DIR [--sizes native,16]``.

Verification of each model on each set at each probe resolution, with FaceBN off and (``--facebn``) on;
writes ``report.md``, ``results.json`` and PNG plots into ``--out`` and prints the markdown tables.
Identification (HR gallery, LR probes, CMC rank-1/5/20) writes ``identification.md`` and ``.json``.
A protocol (:mod:`insightface_lr.eval.protocols`) writes ``<protocol>.md``, ``.json`` and PNG curves.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..eval.facebn_modes import DEFAULT_FACEBN
from ..runtime import positive_int
from .arguments import comma_ints, comma_list, name_list_argument

EXAMPLE = ("insightface-lr eval --model work_dirs/ms1mv3/aird/student.pt --bins lfw.bin,cfp_fp.bin "
           "--sizes 112,32,16,12,8 --facebn --out eval_aird")
DEFAULT_SIZES = "112,32,24,20,16,12,8"
FACEBN_CHOICES = ("batch", "online", "calibrate[:N]", "prior[:N]", "any of them @D")


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
    parser.add_argument("--gallery-per-id", type=int, default=1, help="HR gallery images per identity")
    parser.add_argument("--protocol", metavar="NAME",
                        help="a native benchmark read from its official layout under --root: tinyface, scface, "
                             "survface, xqlfw, ijbb or ijbc (see the README's protocol table)")
    parser.add_argument("--root", metavar="DIR", help="with --protocol: the benchmark's folder (e.g. tinyface/, IJBC/)")
    parser.add_argument("--workers", type=int, default=2, help="with --protocol: DataLoader workers decoding images")
    parser.add_argument("--cache", metavar="DIR", help="with --protocol: embeddings cache, reused and resumed across "
                                                       "runs (default: OUT/embeddings)")
    parser.add_argument("--sizes", default=None,
                        help=f"probe sizes in px, each at most the HR face (.bin faces: 112) (default: "
                             f"{DEFAULT_SIZES}, leaving out sizes above an --identification set's faces; with "
                             "--protocol: 'native' and/or sizes, default native)")
    parser.add_argument("--facebn", nargs="?", const=DEFAULT_FACEBN, default=None, metavar="MODE[,MODE]",
                        help=f"also evaluate with FaceBN: {', '.join(FACEBN_CHOICES)}; :N mixes N source faces into "
                             "the statistics (Schneider et al.), @D adapts the first fraction D of the BN layers "
                             f"only. The flag alone: {DEFAULT_FACEBN} (the set's own degraded faces, unlabeled, "
                             "in the first quarter of the layers; see docs/real_faces.md)")
    parser.add_argument("--pair-mode", default="lr-lr", choices=("lr-lr", "hr-lr"),
                        help="lr-lr: both faces at the probe size; hr-lr: first face of each pair stays HR")
    parser.add_argument("--out", default="eval_report",
                        help="output folder; finished cells are kept in OUT/eval_cells until the run ends, so an "
                             "interrupted run re-run with the same flags continues")
    parser.add_argument("--batch-size", type=int, default=64, help="inference batch (also FaceBN's statistics)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (CUDA when present)")
    parser.add_argument("--plugins", type=name_list_argument, default=(), metavar="MODULE[,...]",
                        help="modules to import first, so that they register their backbones (a student.pt "
                             "records its own and imports them when its network is unknown)")
    parser.add_argument("--network", help="backbone name for a backbone.pth whose network cannot be inferred")
    parser.add_argument("--roc-size", type=int, help="probe size of the ROC plot (default: the smallest size)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-progress", "--quiet", dest="no_progress", action="store_true",
                        help="no progress bars (as in train and demo; --quiet is the earlier spelling)")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="torch intra-op threads (default: the cores idle at start; a team larger than the "
                             "free cores is slower than one thread, see BENCHMARKS.md)")


def parse_models(text: str) -> dict[str, str]:
    """``"a.pt,teacher=b.onnx"`` -> ``{"a": "a.pt", "teacher": "b.onnx"}`` (stems made unique)."""
    from ..errors import ConfigError
    from ..eval.report import unique_names

    items = comma_list(text)
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
        sizes = comma_ints(text)
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
    from ..eval.facebn_modes import facebn_spec

    modes = tuple(comma_list(value))
    try:
        for mode in modes:
            facebn_spec(mode)
    except ConfigError as exc:
        raise ConfigError(f"--facebn {value!r}: {exc}") from None
    if not modes or "off" in modes:
        raise ConfigError(f"--facebn: expected modes from {FACEBN_CHOICES}, got {value!r}")
    return ("off", *dict.fromkeys(modes))


CELLS_FOLDER = "eval_cells"  # under --out: finished cells of an unfinished run


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..eval.probe_sizes import BIN_FACE_SIZE, check_probe_sizes
    from ..outputs import check_output_dir

    check_output_dir(args.out, "--out")  # these checks come before torch is imported: seconds, on a busy node
    if not args.bins and not args.identification and not args.protocol:
        raise ConfigError("expected --bins (verification) and/or --identification (1:N identification) "
                          "and/or --protocol NAME --root DIR, got neither")
    if args.distractors and not args.identification:
        raise ConfigError("--distractors: only used with --identification")
    if bool(args.protocol) != bool(args.root):
        raise ConfigError("--protocol NAME and --root DIR go together (the benchmark and its folder)")
    modes = parse_facebn(args.facebn)
    sizes = parse_sizes(args.sizes or DEFAULT_SIZES) if args.bins or args.identification else ()
    if args.bins:
        check_probe_sizes(sizes, BIN_FACE_SIZE)
    names = parse_models(args.model)
    from ..registry import import_plugins

    import_plugins(args.plugins)  # after the checks above, which run before torch is imported
    from ..devices import resolve_device
    from ..eval.cell_cache import CellCache
    from ..eval.model_loading import load_eval_model

    # every user error is reported before the first model runs (a sweep can take hours)
    sweep = _sweep_config(args, sizes, modes) if args.bins else None
    ident = _identification_config(args, sizes, modes) if args.identification else None
    protocol = _protocol_config(args, modes) if args.protocol else None
    device = resolve_device(args.device)
    models = {name: load_eval_model(path, args.network, device, name) for name, path in names.items()}
    cache = CellCache(Path(args.out) / CELLS_FOLDER, device)
    if sweep is not None:
        from ..eval.report import markdown_tables, run_sweep, write_report

        results = run_sweep(models, sweep[0], device=device, progress=not args.no_progress, config=sweep[1],
                            cache=cache)
        written = write_report(results, args.out, roc_size=args.roc_size, plots=not args.no_plots)
        _show(markdown_tables(results, ("accuracy_mean", "val")), written, results)
    if ident is not None:
        from ..eval import identification_report as report

        results = report.run_identification(models, args.identification, args.distractors, ident, device=device,
                                            progress=not args.no_progress, cache=cache)
        _show(report.identification_markdown(results), report.write_identification_report(results, args.out),
              results)
    if protocol is not None:
        from ..eval.protocols.report import protocol_markdown, write_protocol_report
        from ..eval.protocols.runner import run_protocol

        bench, config = protocol
        embeddings = args.cache or str(Path(args.out) / "embeddings")
        results = run_protocol(models, args.protocol, bench, embeddings, config, device=device,
                               progress=not args.no_progress)
        _show(protocol_markdown(results), write_protocol_report(results, args.out, plots=not args.no_plots), results)
    if cache.hits:
        print(f"reused {cache.hits} finished cell(s) of the interrupted run from {cache.folder}")
    cache.clear()  # every report is written: the cells of this run are in them
    return 0


def interrupted_hint(args: argparse.Namespace) -> str:
    return (f"finished cells are kept in {Path(args.out) / CELLS_FOLDER}; re-run the same command to continue "
            "from them")


def _protocol_config(args: argparse.Namespace, modes: tuple[str, ...]):
    """The benchmark read from --root (layout and label files checked) and the run's settings."""
    from ..eval.protocols import get_protocol
    from ..eval.protocols.runner import ProtocolConfig
    from ..eval.protocols.runner import parse_sizes as parse_protocol_sizes

    spec = get_protocol(args.protocol)
    config = ProtocolConfig(sizes=parse_protocol_sizes(args.sizes or "native"), facebn_modes=modes,
                            batch_size=args.batch_size, workers=args.workers)
    return spec.read(Path(args.root)), config


def _sweep_config(args: argparse.Namespace, sizes: tuple[int, ...], modes: tuple[str, ...]):
    from ..errors import ConfigError
    from ..eval.report import SweepConfig

    bins = comma_list(args.bins)
    missing = [b for b in bins if not Path(b).is_file()]
    if not bins or missing:
        raise ConfigError(f"--bins: no such file(s): {missing}" if missing else "--bins: expected a .bin path")
    config = SweepConfig(sizes=sizes, facebn_modes=modes, pair_mode=args.pair_mode, batch_size=args.batch_size)
    if args.roc_size is not None and args.roc_size not in config.sizes:
        raise ConfigError(f"--roc-size {args.roc_size}: not one of --sizes {list(config.sizes)}")
    return bins, config


def _identification_config(args: argparse.Namespace, sizes: tuple[int, ...], modes: tuple[str, ...]):
    from ..eval.identification_report import IdentificationConfig, open_distractors, open_face_set
    from ..eval.probe_sizes import check_probe_sizes

    faces = open_face_set(args.identification)  # a missing or malformed set is reported before any model runs
    if len(faces):
        hr = int(faces[0][0].shape[-1])  # the side of the set's HR faces
        if args.sizes is None:  # the default sizes, on a set of smaller faces: those that are probes of it
            sizes = tuple(s for s in sizes if s <= hr) or (hr,)
        check_probe_sizes(sizes, hr)
    if args.distractors:
        open_distractors(args.distractors)
    return IdentificationConfig(sizes=sizes, facebn_modes=modes, gallery_per_id=args.gallery_per_id,
                                batch_size=args.batch_size)


def _show(table: str, written: dict, results: dict) -> None:
    print(table)
    print(f"wrote {', '.join(str(p) for p in written.values())} (wall time {results['wall_time_s']:.1f} s)")
