"""``insightface-lr synth --out DIR``: write the embedded synthetic face set as ``train.rec/.idx`` + ``test.bin``.

No download: the faces are rendered by :mod:`insightface_lr.data.synthetic` (deterministic for a seed);
the test pairs come from identities disjoint from the training ones.
"""

from __future__ import annotations

import argparse

EXAMPLE = "insightface-lr synth --out synth_data --train-ids 50 --images-per-id 10 --pairs 400"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--train-ids", type=int, default=200, help="training identities (labels 0..N-1)")
    parser.add_argument("--test-ids", type=int, default=100, help="test identities, disjoint from training")
    parser.add_argument("--images-per-id", type=int, default=20, help="images per identity")
    parser.add_argument("--pairs", type=int, default=3000, help="verification pairs in test.bin (half positive)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the faces and pairs (same seed, same set)")


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..outputs import check_output_dir

    check_output_dir(args.out, "--out")
    for flag in ("train_ids", "test_ids", "images_per_id", "pairs"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"synth: --{flag.replace('_', '-')} must be a positive integer")
    from ..data.synthetic import write_synthetic_dataset

    paths = write_synthetic_dataset(args.out, train_ids=args.train_ids, test_ids=args.test_ids,
                                    images_per_identity=args.images_per_id, pairs=args.pairs, seed=args.seed)
    print(f"wrote {paths.rec} ({args.train_ids} identities x {args.images_per_id} images), "
          f"{paths.idx.name}, {paths.property.name} and {paths.test_bin} ({args.pairs} pairs)")
    return 0


def interrupted_hint(args: argparse.Namespace) -> str:
    return "every file is written whole or not at all; re-run to write the set"
