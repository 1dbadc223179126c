"""``insightface-lr demo [--out demo_out] [--quick] [--seeds 0,1,2] [--jobs N]``: the main job.

Synthetic data -> HR teacher -> LR students (every method, same budget and seeds) -> verification sweep at
112..8 px, FaceBN off/on, in-distribution and shifted test sets -> report.md, results.json, plots. Nothing
is downloaded; a killed run re-run with the same flags continues where it stopped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .arguments import comma_list, int_list_argument, name_list_argument

EXAMPLE = "insightface-lr demo --quick --out demo_out"


def default_jobs(device: str) -> int:
    """One job per CPU core (at most 8) on the CPU; one on a GPU, which the jobs would only share."""
    import os

    from ..devices import resolve_device

    if resolve_device(device).type == "cuda":
        return 1
    return max(1, min(os.cpu_count() or 1, 8))


def _preset(args: argparse.Namespace) -> str:
    from ..errors import ConfigError

    if args.faces and args.quick:
        raise ConfigError("demo: --quick is the synthetic preset; with --faces set --seeds to shorten the run")
    if args.faces and args.teacher and args.student_init != "scratch":
        return "pretrained"  # students start from the given (pretrained) teacher
    if args.student_init == "teacher":
        raise ConfigError("demo --student-init teacher: give the pretrained model with --faces ... --teacher MODEL")
    return "real" if args.faces else ("quick" if args.quick else "full")


def _real_fields(args: argparse.Namespace) -> dict:
    from ..errors import ConfigError

    fields = {"student_fraction": args.student_fraction, "same_seeds": args.same_seeds or (),
              "budget_seeds": args.budget_seeds or (), **({"regimes": args.regimes} if args.regimes else {}),
              **({"methods": tuple(args.methods)} if args.methods else {})}
    if getattr(args, "full_sweep", False):
        fields.update(facebn_extra=("batch",), facebn_sizes=())
    if not args.faces:
        if args.test_bin or args.teacher:
            raise ConfigError("demo: --test-bin and --teacher go with --faces (your own faces)")
        return fields
    bins = tuple(str(Path(b).resolve()) for b in comma_list(args.test_bin or ""))
    teacher = str(Path(args.teacher).resolve()) if args.teacher else ""
    if teacher:
        _check_teacher(args, teacher)
    return {**fields, "faces": str(Path(args.faces).resolve()), "test_bins": bins, "teacher_model": teacher}


def _check_teacher(args: argparse.Namespace, teacher: str) -> None:
    """Refuse, before any work, a ``--teacher`` that is no model, or an ONNX graph the students would start from
    (onnxruntime has no torch layers to fine-tune: every fine-tune would fail after the teacher's sweep)."""
    from ..errors import ConfigError
    from ..models.model_path import check_model_path

    kind = check_model_path(teacher, f"demo --teacher {args.teacher}")
    if kind in ("onnx", "onnx_package") and args.student_init != "scratch":
        raise ConfigError(f"demo --teacher {args.teacher}: an ONNX graph runs in onnxruntime and has no torch layers "
                          "to fine-tune, but the students start from the teacher; give a torch or MXNet checkpoint "
                          "of the same model, or add --student-init scratch")


def _extension(args: argparse.Namespace):
    """``--extend``: the folder's recorded settings with the seed/regime flags given on this command line."""
    import json
    from dataclasses import replace

    from ..demo.settings import DemoSettings
    from ..errors import ConfigError

    path = Path(args.out) / "settings.json"
    if not path.is_file():
        raise ConfigError(f"demo --extend: {path} not found; --extend adds to a demo already run in --out")
    recorded = DemoSettings.from_dict(json.loads(path.read_text(encoding="utf-8")), source=str(path))
    given = {"seeds": args.seeds, "same_seeds": args.same_seeds, "budget_seeds": args.budget_seeds,
             "regimes": args.regimes, "methods": args.methods}
    return replace(recorded, **{k: tuple(v) for k, v in given.items() if v is not None})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out",
                        help="output folder (a killed run re-run with the same --out continues)")
    parser.add_argument("--quick", action="store_true", help="the smoke run: less data, one seed, regime subset")
    parser.add_argument("--seeds", type=int_list_argument, help="student seeds (default: 0,1,2; --quick: 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--jobs", type=int,
                        help="models trained/evaluated at once, each in its own process (default: the CPU count, "
                             "at most 8; 1 on a GPU); changes the wall time, never a number")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per job (1: the same numbers on any number of cores; "
                             "another value changes float reduction order and so the last digits)")
    parser.add_argument("--recipes", help="folder with the demo_*.py recipes (default: the ones shipped in the "
                                          "package, insightface_lr/demo/recipes/)")
    real = parser.add_argument_group("your own faces (instead of the synthetic set)")
    real.add_argument("--faces", metavar="FOLDER_OR_REC",
                      help="aligned 112x112 faces: FOLDER/<identity>/<image> or a train.rec; identities are split "
                           "into val.bin (tuning) and training faces")
    real.add_argument("--test-bin", metavar="A.bin[,B.bin]",
                      help="with --faces: InsightFace verification .bin sets the report is made on")
    real.add_argument("--teacher", metavar="MODEL",
                      help="with --faces: your HR teacher (backbone.pth, student.pt, .onnx or an MXNet model-zoo "
                           "checkpoint prefix) instead of training one; the students then start from it (an "
                           ".onnx teacher only with --student-init scratch: it cannot be fine-tuned)")
    real.add_argument("--student-init", choices=("teacher", "scratch"),
                      help="with --teacher: 'teacher' (default) fine-tunes a copy of it for every method but bridge; "
                           "'scratch' trains bridge_students from scratch")
    parser.add_argument("--methods", type=name_list_argument,
                        help="the methods to compare (default: the preset's; with --extend: the recorded ones "
                             "first, then the ones to add)")
    parser.add_argument("--regimes", type=name_list_argument,
                        help="same: students train on the teacher's identities; subset: on a seeded "
                             "--student-fraction of them (the teacher knows more). Default: subset (synthetic), "
                             "same,subset (--faces)")
    real.add_argument("--same-seeds", type=int_list_argument,
                      help="seeds of regime 'same' (default: --seeds); its students train on every identity, "
                           "so each costs 1/student-fraction times a 'subset' student")
    real.add_argument("--student-fraction", type=float, default=0.4,
                      help="regime 'subset': fraction of the training identities the students see (default 0.4)")
    parser.add_argument("--budget-seeds", type=int_list_argument,
                        help="seeds of the budget-curve runs of none and aird (real preset; default: the first seed)")
    parser.add_argument("--extend", action="store_true",
                        help="add to a finished --out: more seeds, --same-seeds, --regimes or --budget-seeds (the "
                             "recorded values first); every other setting stays as the folder recorded it")
    parser.add_argument("--full-sweep", action="store_true",
                        help="every FaceBN mode (batch too) at every probe size for every model; by default the "
                             "synthetic demo evaluates what its tables and plots show (adapting modes at the "
                             "headline size)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from ..demo.pipeline import DemoPipeline
    from ..demo.settings import make_settings
    from ..demo.summary import claim_text, headline_table
    from ..errors import ConfigError
    from ..outputs import check_output_dir

    check_output_dir(args.out, "--out")
    if args.jobs is None:
        args.jobs = default_jobs(args.device)
    if args.threads < 1 or args.jobs < 1:
        raise ConfigError(f"demo --jobs/--threads: expected positive integers, got {args.jobs}/{args.threads}")
    settings = _extension(args) if args.extend else make_settings(_preset(args), seeds=args.seeds, **_real_fields(args))
    pipeline = DemoPipeline(args.out, settings, device=args.device, progress=not args.no_progress,
                            recipes=args.recipes, jobs=args.jobs, threads=args.threads, extend=args.extend)
    summary = pipeline.run()
    for regime in summary["settings"]["regimes"]:
        print(headline_table(summary, regime=regime))
    for claim in summary["claims"]:
        print(f"{'OK ' if claim['holds'] else 'NO '} {claim_text(claim)}".replace("**", ""))
    print(f"report: {pipeline.out / 'report.md'} (stage time {summary['run']['total_stage_seconds']:.0f} s)")
    return 0


def interrupted_hint(args: argparse.Namespace) -> str:
    return f"finished stages are kept in {args.out}; re-run the same command to continue"
