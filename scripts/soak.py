"""Reliability soak: many killed-and-resumed training runs, then mutated-file fuzzing for N minutes.

    python scripts/soak.py --runs 5 --minutes 10 [--workdir DIR] [--seed 0]

Part 1 (kills): for each run, launch the tiny distillation job of tests/reliability with ``--resume`` and
kill it again and again, with a fault drawn per launch: SIGKILL at a random moment after training started,
a torn checkpoint write (the k-th checkpoint cut in half, then SIGKILL), or a torn teacher-cache build.
After every kill each file under a checkpoint name must load, and the finished run's student must equal an
uninterrupted run's bit for bit.

Part 2 (fuzz): random mutations (bit flips, byte overwrites with boundary integers, truncation, insertion,
chunk duplication) of a valid .rec/.idx, .bin, JPEG/PNG, teacher .pt and ONNX file, read through the public
readers. Anything but our documented errors (InsightFaceLRError), a case slower than --hang-s, or a
MemoryError under the address-space cap is a failure; the input is saved under ``WORKDIR/crashes``.

Prints a report (inputs tried per target, kills survived, failures) and exits 1 if anything failed.
The fixtures and the fault-switching plugin are those of tests/reliability/conftest.py (loaded by path).
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "mxnet"
BOUNDARY_INTS = [0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xCED7230A]


def _conftest():
    spec = importlib.util.spec_from_file_location("rel_conftest", REPO / "tests" / "reliability" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----- part 1: kills ----------------------------------------------------------------------------------
class KillSoak:
    def __init__(self, workdir: Path, rng: random.Random, steps: int = 150) -> None:
        self.c, self.rng, self.root = _conftest(), rng, workdir / "kills"
        self.plugin = self.root / "plugin"
        self.plugin.mkdir(parents=True, exist_ok=True)
        (self.plugin / f"{self.c.PLUGIN_MODULE}.py").write_text(self.c.PLUGIN_SOURCE)
        from insightface_lr.data.synthetic import write_synthetic_dataset

        self.data = self.root / "data"
        write_synthetic_dataset(self.data, train_ids=6, test_ids=4, images_per_identity=6, pairs=20, seed=3)
        self.teacher = self.c._save_teacher(self.plugin, self.root / "teacher.pt", 16)
        self.extra = ("--distill", "aird", "--teacher", str(self.teacher), "--max-steps", str(steps),
                      "--set", "checkpoint_every=1")
        self.stats: Counter = Counter()
        self.duration = 10.0  # of an uninterrupted run; measured in run()

    def _args(self, out: Path) -> list[str]:
        return [sys.executable, "-m", "insightface_lr", *self.c.tiny_args(self.data, out, *self.extra, "--resume")]

    def _launch(self, out: Path) -> int:
        """One launch with a random fault; returns the exit code (negative: killed by that signal)."""
        import subprocess

        fault = self.rng.choice(["random", "random", "tear", "cache"])
        faults = {"tear": {"IFLR_TEAR_CHECKPOINT": str(self.rng.randint(1, 6))},
                  "cache": {"IFLR_KILL_CACHE_RENAME": "1"}}.get(fault, {})
        proc = subprocess.Popen(self._args(out), env=self.c.child_env(self.plugin, **faults),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if fault == "random":  # anywhere in the run: start-up, cache build, steps, checkpoint writes
            time.sleep(self.rng.uniform(0.5, 0.9 * self.duration))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=600)
        if proc.returncode not in (0, -signal.SIGKILL):
            raise AssertionError(f"launch failed with {proc.returncode}: {err[-2000:]}")
        if proc.returncode == -signal.SIGKILL:
            self.stats[f"kills survived ({fault})"] += 1
        return proc.returncode

    def run_once(self, index: int, reference: Path) -> None:
        import torch

        out = self.root / f"run{index}"
        for _ in range(60):
            self._launch(out)
            self.c.checkpoint_report(out)  # every file under a checkpoint name loads
            if (out / "student.pt").exists():
                break
        else:
            raise AssertionError(f"run {index} did not finish in 60 launches")
        a = torch.load(reference / "student.pt", weights_only=True)["state_dict"]
        b = torch.load(out / "student.pt", weights_only=True)["state_dict"]
        if a.keys() != b.keys() or any(not torch.equal(a[k], b[k]) for k in a):
            raise AssertionError(f"run {index}: final weights differ from the uninterrupted run")
        self.stats["runs equal to uninterrupted"] += 1
        shutil.rmtree(out)

    def run(self, runs: int) -> None:
        import subprocess

        reference = self.root / "reference"
        cmd = [sys.executable, "-m", "insightface_lr", *self.c.tiny_args(self.data, reference, *self.extra)]
        started = time.monotonic()
        subprocess.run(cmd, env=self.c.child_env(self.plugin), check=True, capture_output=True)
        self.duration = time.monotonic() - started
        for index in range(runs):
            self.run_once(index, reference)


# ----- part 2: fuzz -------------------------------------------------------------------------------------
def mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(6)
        pos = rng.randrange(len(out)) if out else 0
        if op == 0 and out:
            out[pos] ^= 1 << rng.randrange(8)
        elif op == 1 and len(out) >= pos + 4:
            out[pos:pos + 4] = rng.choice(BOUNDARY_INTS).to_bytes(4, rng.choice(["little", "big"]))
        elif op == 2:
            del out[rng.randrange(len(out) + 1):]
        elif op == 3:
            out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 4 and out:
            end = min(len(out), pos + rng.randint(1, 64))
            out[pos:pos] = out[pos:end] * rng.randint(1, 4)
        elif out:
            out[pos] = rng.randrange(256)
    return bytes(out)


def fuzz_targets(workdir: Path) -> dict[str, tuple[dict[str, bytes], Callable[[Path], object]]]:
    """name -> (valid seed files by name, reader of a folder holding those names)."""
    import numpy as np
    import torch

    from insightface_lr.data.datasets import RecordDataset
    from insightface_lr.data.image_codec import decode_image, encode_jpeg, encode_png
    from insightface_lr.data.verification_bin import load_bin_images
    from insightface_lr.models.teacher import load_teacher

    face = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
    torch.save(model.state_dict(), workdir / "seed.pth")

    def read_rec(folder: Path):
        dataset = RecordDataset(folder / "train.rec")
        return [dataset[i] for i in range(len(dataset))], dataset.num_classes

    return {
        "rec+idx": ({n: (FIXTURES / n).read_bytes() for n in ("train.rec", "train.idx")}, read_rec),
        "bin": ({"pairs.bin": (FIXTURES / "pairs.bin").read_bytes()},
                lambda f: load_bin_images(f / "pairs.bin", 16)),
        "jpeg": ({"x.jpg": encode_jpeg(face)}, lambda f: decode_image((f / "x.jpg").read_bytes())),
        "png": ({"x.png": encode_png(face)}, lambda f: decode_image((f / "x.png").read_bytes())),
        "teacher.pth": ({"t.pth": (workdir / "seed.pth").read_bytes()},
                        lambda f: load_teacher(f / "t.pth", network="r18")),
        "onnx": ({"m.onnx": _tiny_onnx(workdir)}, lambda f: load_teacher(f / "m.onnx")),
    }


def _tiny_onnx(workdir: Path) -> bytes:
    import torch

    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 8))
    torch.onnx.export(model, torch.zeros(1, 3, 112, 112), str(workdir / "seed.onnx"), input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "n"}}, dynamo=False)
    return (workdir / "seed.onnx").read_bytes()


def fuzz(workdir: Path, minutes: float, rng: random.Random, hang_s: float) -> tuple[Counter, list[str]]:
    from insightface_lr.errors import InsightFaceLRError

    targets = fuzz_targets(workdir)
    tried, failures, crashes = Counter(), [], workdir / "crashes"
    _cap_address_space(2 << 30)
    end = time.monotonic() + 60 * minutes
    while time.monotonic() < end:
        name = rng.choice(sorted(targets))
        seeds, read = targets[name]
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            victim = rng.choice(sorted(seeds))
            for file, data in seeds.items():
                (Path(tmp) / file).write_bytes(mutate(data, rng) if file == victim else data)
            start = time.monotonic()
            try:
                read(Path(tmp))
                tried[f"{name} (read ok)"] += 1
            except InsightFaceLRError:
                tried[f"{name} (refused)"] += 1
            except BaseException as exc:  # noqa: BLE001 - anything else is the finding
                if isinstance(exc, KeyboardInterrupt):
                    raise
                failures.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
                _save(crashes, name, Path(tmp), len(failures))
            if time.monotonic() - start > hang_s:
                failures.append(f"{name}: one read took {time.monotonic() - start:.1f} s (hang?)")
                _save(crashes, name, Path(tmp), len(failures))
    return tried, failures


def _cap_address_space(extra: int) -> None:
    """Allow ``extra`` bytes above what the (torch-importing) process maps now: huge claims must be refused."""
    with open("/proc/self/status") as status:
        vm = int(next(line for line in status if line.startswith("VmSize")).split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + extra, resource.RLIM_INFINITY))


def _save(crashes: Path, name: str, folder: Path, index: int) -> None:
    shutil.copytree(folder, crashes / f"{index:04d}_{name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="killed-and-resumed training runs")
    parser.add_argument("--minutes", type=float, default=5.0, help="minutes of mutated-file fuzzing")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a new temp folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hang-s", type=float, default=10.0, help="a single read slower than this is a failure")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="iflr_soak_"))
    workdir.mkdir(parents=True, exist_ok=True)
    rng, started = random.Random(args.seed), time.monotonic()
    failures: list[str] = []
    kill_stats: Counter = Counter()
    if args.runs:
        kills = KillSoak(workdir, rng)
        try:
            kills.run(args.runs)
        except AssertionError as exc:
            failures.append(f"kills: {exc}")
        kill_stats = kills.stats
    tried, fuzz_failures = fuzz(workdir, args.minutes, rng, args.hang_s) if args.minutes > 0 else (Counter(), [])
    failures += fuzz_failures
    print(f"== insightface-lr soak report ({time.monotonic() - started:.0f} s, seed {args.seed}, {workdir}) ==")
    for key, count in sorted(kill_stats.items()):
        print(f"  {key}: {count}")
    for key, count in sorted(tried.items()):
        print(f"  fuzz {key}: {count}")
    print(f"  fuzz inputs total: {sum(tried.values()) + len(fuzz_failures)}")
    print(f"  failures: {len(failures)}")
    for line in failures[:50]:
        print(f"    {line}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
