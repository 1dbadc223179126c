"""``insightface-lr info PATH``: what is in a ``.rec``/``.idx`` training set or a verification ``.bin``.

Reports identities, images and image sizes (decoded from an evenly spaced sample), and for a ``.bin``
the pairs and positives. Reads headers and a few images only, so it is quick on MS1M-sized files.
Needs neither torch nor mxnet.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EXAMPLE = "insightface-lr info /data/faces_webface_112x112/train.rec"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a .rec (or its .idx), a folder holding train.rec, or a verification .bin")
    parser.add_argument("--sample", type=int, default=16, help="images decoded to report sizes")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _spread(n: int, k: int) -> list[int]:
    """At most ``k`` evenly spaced positions in ``range(n)``."""
    k = max(0, min(n, k))
    return sorted({i * n // k for i in range(k)}) if k else []


def _sizes(images, source: str) -> list[str]:
    """Distinct ``HxW`` of the decoded images; a payload that is no image counts as "not an image"."""
    from ..data.image_codec import decode_image
    from ..errors import DataFormatError

    sizes = set()
    for data in images:
        try:
            sizes.add("{}x{}".format(*decode_image(data, source=source).shape[:2]))
        except DataFormatError:
            sizes.add("not an image")
    return sorted(sizes)


def describe_rec(path: Path, sample: int) -> dict:
    from ..data.datasets import read_property
    from ..data.recordio import RecordReader, unpack

    rec = path / "train.rec" if path.is_dir() else path.with_suffix(".rec")
    reader = RecordReader(rec)
    info: dict = {"file": str(rec), "format": "mxnet recordio", "records": len(reader),
                  "index": (f"none: {reader.idx_path.name} is missing, records found by scanning the .rec "
                            "(training finds them the same way)") if reader.index_rebuilt else str(reader.idx_path)}
    header = unpack(reader.read_idx(0), f"{rec}[key 0]")[0] if 0 in reader else None
    if header is not None and header.flag > 0:  # InsightFace layout: images 1..label[0]-1
        first = int(header.label[0])
        keys = list(range(1, first))
        info["header"] = {"flag": header.flag, "label": list(header.label), "id": header.id, "id2": header.id2}
        if header.flag > 1 and header.label[1] > first:
            info["identities"] = int(header.label[1]) - first
    else:
        keys = reader.keys
        labels = {unpack(reader.read_idx(k), f"{rec}[key {k}]")[0].label for k in keys}
        info["identities"] = len({lab[0] if isinstance(lab, tuple) else lab for lab in labels})
    info["images"] = len(keys)
    if rec.name == "train.rec" and rec.with_name("property").is_file():  # property describes train.rec
        num_classes, height, width = read_property(rec.with_name("property"))
        info["property"] = {"num_classes": num_classes, "image_size": f"{height}x{width}"}
    payloads = (unpack(reader.read_idx(keys[i]), f"{rec}[key {keys[i]}]")[1] for i in _spread(len(keys), sample))
    info["image_sizes"] = _sizes(payloads, str(rec))
    return info


def describe_bin(path: Path, sample: int) -> dict:
    from ..data.verification_bin import read_bin

    bins, issame = read_bin(path)
    positives = sum(issame)
    return {"file": str(path), "format": "insightface verification .bin", "pairs": len(issame),
            "positives": positives, "negatives": len(issame) - positives, "images": len(bins),
            "image_sizes": _sizes((bins[i] for i in _spread(len(bins), sample)), str(path))}


def run(args: argparse.Namespace) -> int:
    from ..errors import DataFormatError

    path = Path(args.path)
    if path.suffix.lower() == ".bin":
        info = describe_bin(path, args.sample)
    elif path.is_dir() or path.suffix.lower() in (".rec", ".idx"):
        info = describe_rec(path, args.sample)
    else:
        raise DataFormatError(f"{path}: expected a .rec/.idx file, a folder holding train.rec, or a .bin")
    if args.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            shown = ", ".join(map(str, value)) if isinstance(value, list) else value
            print(f"{key}: {shown}")
    return 0
