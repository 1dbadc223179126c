"""``insightface-lr pack FOLDER OUT_DIR [--skip-bad]``: image folder (one sub-folder per identity) -> train.rec/.idx.

Writes ``OUT_DIR/train.rec``, ``train.idx`` and ``property`` in InsightFace's layout, readable by
arcface_torch's ``MXFaceDataset`` (with mxnet) and by our ``RecordDataset`` (without). Every image is
checked first: all bad ones are named in one error, or left out (and listed) with ``--skip-bad``.
"""

from __future__ import annotations

import argparse

EXAMPLE = "insightface-lr pack my_faces/ my_faces_rec/ --skip-bad"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="image folder: FOLDER/<identity>/<image> "
                        "(.jpg, .jpeg, .png, .bmp or .webp; sorted names -> labels)")
    parser.add_argument("out_dir", help="output folder for train.rec, train.idx and property")
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave out undecodable images and images of another size than most, listing each "
                             "(without it, all of them are named in one error and nothing is written)")


def run(args: argparse.Namespace) -> int:
    from ..outputs import check_output_dir

    check_output_dir(args.out_dir, "OUT_DIR")
    from ..data.datasets import pack_image_folder, read_property
    from ..data.recordio import RecordReader, unpack
    skipped: list[str] = []

    def report(path, why: str) -> None:
        skipped.append(str(path))
        print(f"skipped {path}: {why}")

    rec = pack_image_folder(args.folder, args.out_dir, on_skip=report if args.skip_bad else None)
    num_classes, height, width = read_property(rec.with_name("property"))
    images = int(unpack(RecordReader(rec).read_idx(0))[0].label[0]) - 1  # record 0: images are 1..label[0]-1
    print(f"wrote {rec} (+ train.idx, property): {images} images, {num_classes} identities, {height}x{width}"
          + (f"; skipped {len(skipped)} (listed above)" if skipped else ""))
    return 0


def interrupted_hint(args: argparse.Namespace) -> str:
    return "train.rec, train.idx and property are each written whole or not at all; re-run to pack"
