"""``insightface-lr export --model student.pt --out student.onnx [--package DIR] [--facebn-calibrate SET]
[--int8 --calibrate FACES]``.

Writes an ONNX file that ``insightface.model_zoo.get_model`` loads as a recognition model (a low-resolution
student gets a 112 -> native resize stem inside the graph), optionally an insightface model package
(manifest v2), with FaceBN statistics calibrated on unlabeled target faces baked into the BN layers, and
(``--int8``) statically quantised to int8 with activation ranges calibrated on faces (``models/quantize.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..eval.facebn_modes import DEFAULT_FACEBN, facebn_for_mode, facebn_spec
from .arguments import name_list_argument

EXAMPLE = "insightface-lr export --model work_dirs/aird/student.pt --out student16.onnx --package student16_pkg"
OPSETS = range(7, 21)  # what torch's TorchScript ONNX exporter writes (torch.onnx._constants: 7..20)
# export --int8-max-drop's default: models.quantize.MAX_ACCURACY_DROP, spelled here because importing anything under
# insightface_lr.models imports torch, and a bad flag must be refused before that (test_quantize checks they agree)
MAX_ACCURACY_DROP = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="student .pt (save_student), or an arcface_torch backbone.pth / checkpoint")
    parser.add_argument("--plugins", type=name_list_argument, default=(), metavar="MODULE[,...]",
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
    parser.add_argument("--facebn-mode", default=DEFAULT_FACEBN, metavar="calibrate[:N][@D]",
                        help="with --facebn-calibrate: which statistics are baked (:N mixes N source faces in, @D "
                             "adapts the first fraction D of the BN layers; see docs/real_faces.md)")
    parser.add_argument("--int8", action="store_true",
                        help="static int8 quantisation (ONNX Runtime QDQ, per-channel weights); needs --calibrate")
    parser.add_argument("--calibrate", metavar="FACES",
                        help="with --int8: faces whose activation ranges the int8 graph is calibrated on: an image "
                             "folder, a train.rec (or its folder) or a verification .bin")
    parser.add_argument("--calibrate-limit", type=int, default=2000, help="at most this many calibration faces")
    parser.add_argument("--int8-max-drop", type=float, default=MAX_ACCURACY_DROP, metavar="POINTS",
                        help="with --int8: refuse the int8 graph (nothing written) when its verification accuracy "
                             "on the held-out part of --calibrate's faces (every 5th identity, or the last fifth of "
                             "a .bin's pairs, never calibrated on; probes at the student's native size) is more than "
                             "POINTS below the float graph's by more than the check's own standard error (paired: "
                             "both graphs are scored on the same pairs); inf: only report the change")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="calibration batch size (FaceBN; int8: a shorter last batch is left out)")
    parser.add_argument("--input-size", type=int, default=112, help="graph input size (insightface: 112)")
    parser.add_argument("--kernel", default="bicubic", help="resize-stem kernel: bicubic, bilinear, area, nearest")
    parser.add_argument("--opset", type=int, default=17,
                        help=f"ONNX opset version written into the graph, {OPSETS[0]}..{OPSETS[-1]}; the default "
                             "is read by onnxruntime and insightface's model_zoo (tests/models/test_export.py); lower "
                             "it only for an older runtime")
    parser.add_argument("--no-fold-bn", action="store_true", help="keep BatchNorm nodes in the graph")


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..outputs import check_output_dir, check_output_file

    if not args.out and not args.package:
        raise ConfigError("export: give --out FILE.onnx and/or --package DIR")
    if bool(args.int8) != bool(args.calibrate):
        raise ConfigError("export: --int8 and --calibrate FACES go together (int8 ranges come from those faces)")
    if facebn_spec(args.facebn_mode)[0] != "calibrate":
        raise ConfigError(f"--facebn-mode {args.facebn_mode!r}: expected calibrate[:N][@D] (only calibrated "
                          "statistics are fixed, so only they can be baked into the graph)")
    if args.opset not in OPSETS:
        raise ConfigError(f"--opset {args.opset}: expected an ONNX opset in {OPSETS[0]}..{OPSETS[-1]} "
                          "(what torch's exporter writes)")
    if args.out:
        check_output_file(args.out, "--out")
    if args.package:
        check_output_dir(args.package, "--package")
    from ..registry import import_plugins

    import_plugins(args.plugins)
    from ..models.export import export_model_package, export_onnx  # torch: only once the flags are known good
    from ..models.teacher import load_model_file
    model, meta = load_model_file(args.model, args.network)
    facebn = None
    if args.facebn_calibrate:
        facebn = calibrate_facebn(model, Path(args.facebn_calibrate), args.input_size, args.kernel,
                                  args.calibrate_limit, args.batch_size, args.facebn_mode)
        meta["facebn_calibration"] = str(args.facebn_calibrate)
        meta["facebn_mode"] = args.facebn_mode
    options = {"fold_bn": not args.no_fold_bn, "facebn": facebn, "opset": args.opset, "kernel": args.kernel}
    if args.int8:
        options["int8_calibration"] = calibration = int8_calibration(
            model, Path(args.calibrate), args.calibrate_limit, args.input_size, args.int8_max_drop, args.batch_size)
        meta.update(int8_calibration=str(args.calibrate), int8_calibration_faces=len(calibration.inputs))
    if args.out:
        export_onnx(model, args.out, input_size=args.input_size, **options)
        print(f"wrote {args.out}")
    if args.package:
        model_id = args.model_id or Path(args.model).stem
        export_model_package(model, args.package, model_id, license=args.license,
                             input_size=args.input_size, meta=_plain(meta), **options)
        print(f"wrote model package {args.package} (load: get_model({args.package!r}, model_task='recognition'))")
    if args.int8:
        print(int8_summary(options["int8_calibration"]))
    return 0


def int8_calibration(model, source: Path, limit: int, input_size: int = 112, max_drop: float = MAX_ACCURACY_DROP,
                     batch_size: int = 64):
    """At most ``limit`` faces of ``source`` split into calibration inputs and held-out pairs
    (:func:`~insightface_lr.models.quantize.heldout_pairs`), both as the graph of ``input_size`` sees them: probes
    at the model's native size, enlarged; the held-out check is the evaluation's (:mod:`..eval.int8_check`)."""
    from ..eval.int8_check import calibration_inputs, check_heldout
    from ..models.quantize import Int8Calibration, heldout_pairs

    faces, labels, issame = read_labelled_faces(source, limit)
    calibrate, held, held_same = heldout_pairs(faces, labels, issame)
    native = int(getattr(model, "input_size", input_size))
    probe = native if native < input_size else None
    return Int8Calibration(calibration_inputs(calibrate, input_size, probe),
                           None if held is None or not len(held) else calibration_inputs(held, input_size, probe),
                           held_same, max_drop=max_drop, batch_size=batch_size, check=check_heldout)


def int8_summary(calibration) -> str:
    """One line: the int8 graph's accuracy change on the held-out calibration faces (or why there is none)."""
    report = calibration.report
    if "change" not in report:
        return (f"int8: no accuracy check ({report.get('pairs', 0)} held-out pairs in --calibrate's faces; give "
                "labelled faces: a folder of identities, a train.rec or a .bin)")
    return (f"int8: accuracy on {report['pairs']} held-out pairs of the calibration faces: float32 "
            f"{report['float32']:.2f} %, int8 {report['int8']:.2f} %, change {report['change']:+.2f} points, standard "
            f"error {report['standard_error']:.2f} (refused below -{calibration.max_drop:g} - "
            f"{report['standard_error']:.2f}: --int8-max-drop plus the standard error)")


def interrupted_hint(args: argparse.Namespace) -> str:
    return "nothing half-written is left (files are replaced whole); re-run to export"


def calibrate_facebn(model, source: Path, input_size: int, kernel: str, limit: int, batch_size: int,
                     mode: str = DEFAULT_FACEBN):
    """FaceBN(model, ``mode``) calibrated exactly (as ``eval`` does) over ``source``'s faces, seen exactly as the
    exported graph sees them."""
    import torch

    from ..data.degrade import resize
    from ..data.pixels import normalize, to_unit
    from ..models.export import ExportGraph

    faces = read_faces(source, limit)  # uint8 [N,H,W,3] RGB
    x = to_unit(torch.from_numpy(faces).permute(0, 3, 1, 2))
    x = resize(x, input_size, "bicubic") if x.shape[-1] != input_size else x
    stem = ExportGraph(model, input_size, kernel).stem  # the in-graph down-sampling to the native size
    with torch.no_grad():
        native = stem(normalize(x))
    batches = [native[i : i + batch_size] for i in range(0, native.shape[0], batch_size)]
    return facebn_for_mode(model.eval(), mode).calibrate(batches, passes="exact")


def read_faces(source: Path, limit: int):
    """Aligned faces, uint8 ``[N,H,W,3]`` RGB, from a verification ``.bin``, a ``train.rec`` (or the folder
    holding one: ``limit`` faces evenly spread over the file, so every part of the set is seen) or a folder
    of images."""
    return read_labelled_faces(source, limit)[0]


def read_labelled_faces(source: Path, limit: int):
    """:func:`read_faces` with what is known of who is who: ``(faces, labels [N] or None, issame [N/2] or None)``;
    labels for a ``.rec`` or an identity folder (``FOLDER/<identity>/<image>``), issame for a ``.bin``'s pairs."""
    import numpy as np

    from ..data.image_codec import IMAGE_SUFFIXES, decode_image
    from ..errors import DataFormatError

    labels = issame = None
    if source.suffix == ".rec" or (source / "train.rec").is_file():
        return _rec_faces(source, limit)
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
        blobs = [(p.read_bytes(), str(p)) for p in files]
        labels = np.array([str(p.parent.relative_to(source)) for p in files])
    elif source.suffix == ".bin":
        from ..data.verification_bin import read_bin

        images, pairs = read_bin(source)
        count = min(limit, len(images)) // 2 * 2  # whole pairs
        blobs = [(b, f"{source}[{i}]") for i, b in enumerate(images[:count])]
        issame = np.asarray(pairs[: count // 2], dtype=bool)
    else:
        raise DataFormatError(f"{source}: expected a verification .bin file, a .rec or a folder of face images")
    if not blobs:
        raise DataFormatError(f"{source}: no face images found for FaceBN calibration")
    faces = [decode_image(data, name) for data, name in blobs]
    shapes = {f.shape for f in faces}
    if len(shapes) != 1:
        raise DataFormatError(f"{source}: calibration faces must be aligned crops of one size, got {sorted(shapes)}")
    return np.stack(faces), labels, issame


def _rec_faces(source: Path, limit: int):
    import numpy as np

    from ..data.datasets import RecordDataset
    from ..errors import DataFormatError

    if not source.exists():
        raise DataFormatError(f"{source}: no such .rec file")
    dataset = RecordDataset(source)
    if len(dataset) == 0:
        raise DataFormatError(f"{source}: no face images found")
    picks = np.unique(np.linspace(0, len(dataset) - 1, min(limit, len(dataset))).round().astype(np.int64))
    items = [dataset[int(i)] for i in picks]
    return np.stack([image.permute(1, 2, 0).numpy() for image, _ in items]), np.array([y for _, y in items]), None


def _plain(meta: dict) -> dict:
    # the manifest is JSON: keep only the plain values of the student's meta
    return {k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool, type(None), list, dict))}
