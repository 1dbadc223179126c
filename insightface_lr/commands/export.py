"""``insightface-lr export --model student.pt --out student.onnx [--package DIR] [--facebn-calibrate SET]``.

Writes an ONNX file that ``insightface.model_zoo.get_model`` loads as a recognition model (a low-resolution
student gets a 112 -> native resize stem inside the graph), optionally an insightface model package
(manifest v2), with FaceBN statistics calibrated on unlabeled target faces baked into the BN layers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="student .pt (save_student), or an arcface_torch backbone.pth / checkpoint")
    parser.add_argument("--plugins", type=_modules, default=(), metavar="MODULE[,...]",
                        help="modules to import first, so that they register their backbones (a student.pt "
                             "records its own and imports them when its network is unknown)")
    parser.add_argument("--network", help="backbone name for a backbone.pth (inferred from its keys if omitted)")
    parser.add_argument("--out", help="output .onnx file")
    parser.add_argument("--package", metavar="DIR", help="also write an insightface model package here")
    parser.add_argument("--model-id", help="package model_id (default: the --model file's stem)")
    parser.add_argument("--license", default="non-commercial research use only",
                        help="license terms written to the package's LICENSE.txt and manifest")
    parser.add_argument("--facebn-calibrate", metavar="SET",
                        help="bake FaceBN statistics of these target faces: a verification .bin or an image folder")
    parser.add_argument("--calibrate-limit", type=int, default=2000, help="at most this many calibration faces")
    parser.add_argument("--batch-size", type=int, default=64, help="calibration batch size")
    parser.add_argument("--input-size", type=int, default=112, help="graph input size (insightface: 112)")
    parser.add_argument("--kernel", default="bicubic", help="resize-stem kernel: bicubic, bilinear, area, nearest")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--no-fold-bn", action="store_true", help="keep BatchNorm nodes in the graph")


def _modules(text: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in text.split(",") if m.strip())


def run(args: argparse.Namespace) -> int:
    from ..registry import import_plugins

    import_plugins(args.plugins)
    from ..errors import ConfigError
    from ..models.export import export_model_package, export_onnx
    from ..models.teacher import load_model_file

    if not args.out and not args.package:
        raise ConfigError("export: give --out FILE.onnx and/or --package DIR")
    model, meta = load_model_file(args.model, args.network)
    facebn = None
    if args.facebn_calibrate:
        facebn = calibrate_facebn(model, Path(args.facebn_calibrate), args.input_size, args.kernel,
                                  args.calibrate_limit, args.batch_size)
        meta["facebn_calibration"] = str(args.facebn_calibrate)
    options = {"fold_bn": not args.no_fold_bn, "facebn": facebn, "opset": args.opset, "kernel": args.kernel}
    if args.out:
        export_onnx(model, args.out, input_size=args.input_size, **options)
        print(f"wrote {args.out}")
    if args.package:
        model_id = args.model_id or Path(args.model).stem
        export_model_package(model, args.package, model_id, license=args.license,
                             input_size=args.input_size, meta=_plain(meta), **options)
        print(f"wrote model package {args.package} (load: get_model({args.package!r}, model_task='recognition'))")
    return 0


def calibrate_facebn(model, source: Path, input_size: int, kernel: str, limit: int, batch_size: int):
    """FaceBN(model, "calibrate") over ``source``'s faces, seen exactly as the exported graph sees them."""
    import torch

    from ..data.degrade import resize
    from ..models.export import ExportGraph
    from ..models.facebn import FaceBN

    faces = read_faces(source, limit)  # uint8 [N,H,W,3] RGB
    x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255.0
    x = resize(x, input_size, "bicubic") if x.shape[-1] != input_size else x
    stem = ExportGraph(model, input_size, kernel).stem  # the in-graph down-sampling to the native size
    with torch.no_grad():
        native = stem((x - 0.5) / 0.5)
    facebn = FaceBN(model.eval(), mode="calibrate")
    return facebn.calibrate(native[i : i + batch_size] for i in range(0, native.shape[0], batch_size))


def read_faces(source: Path, limit: int):
    """Aligned faces, uint8 ``[N,H,W,3]`` RGB, from a verification ``.bin`` or a folder of images."""
    import numpy as np

    from ..data.image_codec import decode_image
    from ..errors import DataFormatError

    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)[:limit]
        blobs = [(p.read_bytes(), str(p)) for p in files]
    elif source.suffix == ".bin":
        from ..data.verification_bin import read_bin

        images, _issame = read_bin(source)
        blobs = [(b, f"{source}[{i}]") for i, b in enumerate(images[:limit])]
    else:
        raise DataFormatError(f"{source}: expected a verification .bin file or a folder of face images")
    if not blobs:
        raise DataFormatError(f"{source}: no face images found for FaceBN calibration")
    faces = [decode_image(data, name) for data, name in blobs]
    shapes = {f.shape for f in faces}
    if len(shapes) != 1:
        raise DataFormatError(f"{source}: calibration faces must be aligned crops of one size, got {sorted(shapes)}")
    return np.stack(faces)


def _plain(meta: dict) -> dict:
    # the manifest is JSON: keep only the plain values of the student's meta
    return {k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool, type(None), list, dict))}
