"""``insightface-lr demo [--out demo_out] [--quick] [--seeds 0,1,2] [--jobs N]``: the main job.

Synthetic data -> HR teacher -> LR students (every method, same budget and seeds) -> verification sweep at
112..8 px, FaceBN off/on, in-distribution and shifted test sets -> report.md, results.json, plots. Nothing
is downloaded; a killed run re-run with the same flags continues where it stopped.
"""

from __future__ import annotations

import argparse

EXAMPLE = "insightface-lr demo --quick --out demo_out"


def default_jobs(device: str) -> int:
    """One job per CPU core (at most 8) on the CPU; one on a GPU, which the jobs would only share."""
    import os

    from ..eval.model_loading import resolve_device

    if resolve_device(device).type == "cuda":
        return 1
    return max(1, min(os.cpu_count() or 1, 8))


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out",
                        help="output folder (a killed run re-run with the same --out continues)")
    parser.add_argument("--quick", action="store_true", help="~3 min on 2 CPU cores: less data, one seed, 16 px only")
    parser.add_argument("--seeds", type=_seeds, help="student seeds (default: 0,1,2; --quick: 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--jobs", type=int,
                        help="models trained/evaluated at once, each in its own process (default: the CPU count, "
                             "at most 8; 1 on a GPU); changes the wall time, never a number")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per job (1: the same numbers on any number of cores; "
                             "another value changes float reduction order and so the last digits)")
    parser.add_argument("--recipes", help="folder with the demo_*.py recipes (default: the repository's recipes/)")
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
    settings = make_settings("quick" if args.quick else "full", seeds=args.seeds)
    pipeline = DemoPipeline(args.out, settings, device=args.device, progress=not args.no_progress,
                            recipes=args.recipes, jobs=args.jobs, threads=args.threads)
    summary = pipeline.run()
    print(headline_table(summary))
    for claim in summary["claims"]:
        print(f"{'OK ' if claim['holds'] else 'NO '} {claim_text(claim)}".replace("**", ""))
    print(f"report: {pipeline.out / 'report.md'} (stage time {summary['run']['total_stage_seconds']:.0f} s)")
    return 0


def interrupted_hint(args: argparse.Namespace) -> str:
    return f"finished stages are kept in {args.out}; re-run the same command to continue"
