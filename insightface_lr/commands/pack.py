"""``insightface-lr pack FOLDER OUT_DIR``: image folder (one sub-folder per identity) -> train.rec/.idx.

Writes ``OUT_DIR/train.rec``, ``train.idx`` and ``property`` in InsightFace's layout, readable by
arcface_torch's ``MXFaceDataset`` (with mxnet) and by our ``RecordDataset`` (without).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="image folder: FOLDER/<identity>/<image> "
                        "(.jpg, .jpeg, .png, .bmp or .webp; sorted names -> labels)")
    parser.add_argument("out_dir", help="output folder for train.rec, train.idx and property")


def run(args: argparse.Namespace) -> int:
    from ..data.datasets import pack_image_folder, read_property
    from ..data.recordio import RecordReader, unpack

    rec = pack_image_folder(args.folder, args.out_dir)
    num_classes, height, width = read_property(rec.with_name("property"))
    images = int(unpack(RecordReader(rec).read_idx(0))[0].label[0]) - 1  # record 0: images are 1..label[0]-1
    print(f"wrote {rec} (+ train.idx, property): {images} images, {num_classes} identities, {height}x{width}")
    return 0
