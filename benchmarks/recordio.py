"""Data path: reading ``.rec`` sequentially and randomly, and decoded faces/s, ours against mxnet.

    python -m benchmarks.recordio --out runs/bench/recordio.json [--mxnet-python /work/mxvenv/bin/python]

A ``train.rec`` of synthetic 112-px JPEG faces (a few hundred rendered faces repeated to ``--records``) is
written into ``--data`` and reused. Measured with our reader: records/s and MB/s of a sequential scan
and of ``read_idx`` in a random order; decoded faces/s of ``RecordDataset`` in one process and through
``DataLoader(num_workers=2)``. With ``--mxnet-python`` (an interpreter where ``import mxnet`` works; mxnet
1.9 needs numpy < 1.24, so it lives in its own venv) the same file is read in that interpreter by
``mx.recordio`` (``MXRecordIO.read``, ``MXIndexedRecordIO.read_idx``, and ``unpack`` + ``mx.image.imdecode``
as arcface_torch's ``MXFaceDataset`` does), in the same run, and the ratios ours / mxnet are printed. That
worker also re-times our (standard-library) reader inside the mxnet interpreter, a like-for-like check.

This module must import without torch: the mxnet worker runs it (``--mxnet-worker``) with no torch.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from .common import base_parser, describe, format_table, machine_info, measure, set_threads, write_json

ROOT = Path(__file__).resolve().parents[1]


# --- data ------------------------------------------------------------------------------------------------
def ensure_rec(folder: Path, records: int, unique: int, per_identity: int = 10) -> Path:
    """``folder/train.rec`` holding ``records`` JPEG faces (``unique`` rendered ones, repeated)."""
    from insightface_lr.data.image_codec import encode_jpeg
    from insightface_lr.data.recordio import write_rec_dataset
    from insightface_lr.data.synthetic import SyntheticFaceConfig, generate_faces

    rec = folder / "train.rec"
    if rec.is_file():
        return rec
    ids = max(1, unique // per_identity)
    faces, _ = generate_faces(SyntheticFaceConfig(num_identities=ids, images_per_identity=per_identity))
    encoded = [encode_jpeg(face) for face in faces]
    labels = [i // per_identity for i in range(records)]
    return write_rec_dataset(folder, (encoded[i % len(encoded)] for i in range(records)), labels, (112, 112))


def image_keys(rec: Path) -> list[int]:
    """Keys of the image records (1 .. header label - 1, as InsightFace's header announces)."""
    from insightface_lr.data.recordio import RecordReader, unpack

    with RecordReader(rec) as reader:
        header, _ = unpack(reader.read_idx(0))
    return list(range(1, int(header.label[0])))


# --- lanes (each returns {figure: value}); the standard-library ones also run in the mxnet worker --------
def ours_raw(rec: Path, keys: list[int], repeats: int) -> dict[str, float]:
    from insightface_lr.data.recordio import RecordReader

    size = rec.stat().st_size
    reader = RecordReader(rec)
    count = sum(1 for _ in reader.scan())
    order = random.Random(0).sample(keys, len(keys))
    seq = measure(lambda: sum(1 for _ in reader.scan()), repeats=repeats, warmup=1)
    rnd = measure(lambda: [reader.read_idx(k) for k in order], repeats=repeats, warmup=1)
    payload = sum(len(reader.read_idx(k)) for k in order)
    reader.close()
    return {"seq_records_per_s": seq.rate(count), "seq_mb_per_s": seq.rate(size / 1e6),
            "random_records_per_s": rnd.rate(len(order)), "random_mb_per_s": rnd.rate(payload / 1e6)}


def mxnet_lanes(rec: Path, keys: list[int], repeats: int) -> dict[str, float]:
    import mxnet as mx

    size = rec.stat().st_size
    idx = str(rec.with_suffix(".idx"))

    def scan() -> int:
        reader, n = mx.recordio.MXRecordIO(str(rec), "r"), 0
        while reader.read() is not None:
            n += 1
        reader.close()
        return n

    count = scan()
    indexed = mx.recordio.MXIndexedRecordIO(idx, str(rec), "r")
    order = random.Random(0).sample(keys, len(keys))
    seq = measure(scan, repeats=repeats, warmup=1)
    rnd = measure(lambda: [indexed.read_idx(k) for k in order], repeats=repeats, warmup=1)
    payload = sum(len(indexed.read_idx(k)) for k in order)

    def decode() -> None:  # arcface_torch MXFaceDataset.__getitem__, minus the torch transforms
        for k in keys:
            header, img = mx.recordio.unpack(indexed.read_idx(k))
            mx.image.imdecode(img).asnumpy()

    dec = measure(decode, repeats=repeats, warmup=1)
    return {"seq_records_per_s": seq.rate(count), "seq_mb_per_s": seq.rate(size / 1e6),
            "random_records_per_s": rnd.rate(len(order)), "random_mb_per_s": rnd.rate(payload / 1e6),
            "decode_1proc_per_s": dec.rate(len(keys)), "mxnet": mx.__version__}


def ours_decode(rec: Path, repeats: int, workers: int, batch_size: int) -> dict[str, float]:
    """Decoded faces/s of RecordDataset: one process, and a DataLoader with ``workers`` workers."""
    from torch.utils.data import DataLoader

    from insightface_lr.data.datasets import RecordDataset

    dataset = RecordDataset(rec)
    n = len(dataset)
    one = measure(lambda: [dataset[i] for i in range(n)], repeats=repeats, warmup=1)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0)  # training keeps its workers: time the steady state
    many = measure(lambda: sum(len(labels) for _, labels in loader), repeats=repeats, warmup=1)
    return {"decode_1proc_per_s": one.rate(n), f"decode_loader_{workers}w_per_s": many.rate(n)}


# --- the mxnet side ----------------------------------------------------------------------------------------
def run_mxnet_worker(python: str, rec: Path, repeats: int) -> dict[str, Any]:
    """Run this module in the mxnet interpreter; its JSON line comes back on stdout."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [python, "-m", "benchmarks.recordio", "--mxnet-worker", str(rec), "--repeats", str(repeats)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"rc {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def worker_main(rec: Path, repeats: int) -> int:
    keys = image_keys(rec)
    try:
        result = {"mxnet": mxnet_lanes(rec, keys, repeats)}
    except ImportError as exc:
        result = {"error": f"mxnet not importable: {exc}"}
    result["ours_same_interpreter"] = ours_raw(rec, keys, repeats)
    result["python"] = sys.version.split()[0]
    print(json.dumps(result))
    return 0


# --- main ----------------------------------------------------------------------------------------------------
def ratios(ours: dict[str, float], theirs: dict[str, Any]) -> dict[str, float]:
    return {k: ours[k] / theirs[k] for k in ours if isinstance(theirs.get(k), float) and theirs[k] > 0}


def print_summary(result: dict[str, Any]) -> None:
    ours, mx = result["ours"], result.get("mxnet_worker", {})
    theirs, same = mx.get("mxnet", {}), mx.get("ours_same_interpreter", {})
    rows = [{"figure": k, "ours": v, "ours_in_mx_python": same.get(k), "mxnet": theirs.get(k),
             "ours/mxnet": result["ratio_ours_to_mxnet"].get(k)} for k, v in ours.items()]
    print(format_table(rows, ["figure", "ours", "ours_in_mx_python", "mxnet", "ours/mxnet"]))
    if "error" in mx:
        print(f"mxnet side: {mx['error']}")
    elif not mx:
        print("mxnet side: not run (give --mxnet-python PATH)")


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], "runs/bench/recordio.json")
    parser.add_argument("--data", default="runs/bench/data", help="folder for the generated .rec (reused)")
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--unique", type=int, default=300, help="distinct faces rendered (then repeated)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--mxnet-python", default=None, help="interpreter with mxnet (e.g. /work/mxvenv/bin/python)")
    parser.add_argument("--mxnet-worker", default=None, help=argparse_hidden())
    args = parser.parse_args(argv)
    if args.mxnet_worker:
        return worker_main(Path(args.mxnet_worker), args.repeats)
    if args.tiny:
        args.records, args.unique, args.repeats, args.batch_size = 64, 10, 1, 16
        args.data = str(Path(args.out).with_suffix("")) + "_data"
    set_threads(args.threads)
    info = machine_info()
    print(describe(info))
    rec = ensure_rec(Path(args.data) / f"rec_{args.records}_{args.unique}", args.records, args.unique)
    keys = image_keys(rec)
    ours = {**ours_raw(rec, keys, args.repeats), **ours_decode(rec, args.repeats, args.workers, args.batch_size)}
    result: dict[str, Any] = {"rec": str(rec), "records": len(keys), "file_mb": rec.stat().st_size / 1e6,
                              "ours": ours}
    if args.mxnet_python:
        result["mxnet_worker"] = run_mxnet_worker(args.mxnet_python, rec, args.repeats)
    result["ratio_ours_to_mxnet"] = ratios(ours, result.get("mxnet_worker", {}).get("mxnet", {}))
    print(f"{len(keys)} JPEG records, {result['file_mb']:.1f} MB")
    print_summary(result)
    write_json(args.out, {"benchmark": "recordio", "machine": info, **result})
    print(f"wrote {args.out}")
    return 0


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    raise SystemExit(main())
