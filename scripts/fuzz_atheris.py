"""Coverage-guided fuzzing of the file readers with atheris (optional: ``pip install atheris``).

    python scripts/fuzz_atheris.py --target image|rec|bin|pt|onnx [libFuzzer flags, e.g. -runs=100000]

Each input is handed to a public reader; our documented errors (InsightFaceLRError) are the expected way
to refuse a file, anything else propagates and atheris reports it with the input that caused it. Without
atheris installed the script says so and exits 0, so it can sit in optional CI lanes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path


def _in_file(suffix: str, read: Callable[[Path], object]) -> Callable[[bytes], object]:
    """Readers that take a path get the input through a reused temporary file."""
    folder = Path(tempfile.mkdtemp(prefix="iflr_atheris_"))

    def run(data: bytes) -> object:
        path = folder / f"input{suffix}"
        path.write_bytes(data)
        return read(path)

    return run


def build_target(name: str) -> Callable[[bytes], object]:
    from insightface_lr.data.image_codec import decode_image

    if name == "image":
        return decode_image
    if name == "rec":
        from insightface_lr.data.recordio import RecordReader, unpack

        def read_rec(path: Path) -> None:  # no .idx next to it: exercises the scanning index builder
            reader = RecordReader(path)
            for key in reader.keys:
                unpack(reader.read_idx(key))

        return _in_file(".rec", read_rec)
    if name == "bin":
        from insightface_lr.data.verification_bin import load_bin_images

        return _in_file(".bin", lambda p: load_bin_images(p, 16))
    if name == "pt":
        from insightface_lr.models.teacher import load_teacher

        return _in_file(".pt", load_teacher)
    if name == "onnx":
        from insightface_lr.models.teacher import load_teacher

        return _in_file(".onnx", load_teacher)
    raise SystemExit(f"unknown --target {name!r}")


def main(argv: list[str]) -> int:
    try:
        import atheris
    except ImportError:
        print("fuzz_atheris: atheris is not installed (pip install atheris); nothing to do")
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, choices=("image", "rec", "bin", "pt", "onnx"))
    args, libfuzzer_args = parser.parse_known_args(argv[1:])
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with atheris.instrument_imports():
        from insightface_lr.errors import InsightFaceLRError

        target = build_target(args.target)

    def test_one_input(data: bytes) -> None:
        try:
            target(data)
        except InsightFaceLRError:
            pass  # a documented refusal

    atheris.Setup([argv[0], *libfuzzer_args], test_one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
