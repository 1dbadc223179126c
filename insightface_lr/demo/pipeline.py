"""The demo's stages: data -> HR teacher -> bridge network -> LR students -> evaluation -> report.

Every stage writes its outputs atomically and is skipped when they exist, so a killed demo re-run
continues where it stopped (a half-trained model also resumes from its last epoch checkpoint). The
output folder records the settings it was made with; re-running with other settings is refused rather
than silently mixing numbers. Layout of ``out``::

    settings.json  data/{train.rec,train.idx,property,test.bin,shifted.bin,complete.json}
    teacher/student.pt  bridge_g/student.pt  students/<method>_<size>px_s<seed>/student.pt
    cache/<teacher>/...  (teacher embeddings, linked into every run that uses that teacher)
    eval/<model>.json  timings.json  report.md  results.json  *.png
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes
from ..errors import ConfigError
from .settings import DemoSettings

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
BINS = ("test", "shifted")


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n").encode())


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class StudentCell:
    method: str
    lr_size: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.method}_{self.lr_size}px_s{self.seed}"


class DemoPipeline:
    """Runs (or resumes) the demo in ``out`` with ``settings``; ``run()`` returns the summary dict."""

    def __init__(self, out: str | os.PathLike, settings: DemoSettings, device: str = "auto",
                 progress: bool = True, recipes: str | os.PathLike | None = None, jobs: int = 1,
                 threads: int = 1, record: bool = True) -> None:
        """``jobs``: stages run at once (processes) once the teacher is trained; ``threads``: torch threads of
        every stage. The numbers depend on ``threads`` (float reduction order), never on ``jobs``: the
        default 1 gives the same results on any number of cores. ``record=False`` (a worker) leaves
        ``timings.json`` to the parent process."""
        from ..devices import resolve_device

        if jobs < 1 or threads < 1:
            raise ConfigError(f"demo: expected jobs >= 1 and threads >= 1, got jobs={jobs}, threads={threads}")
        self.out, self.settings, self.progress = Path(out), settings, progress
        self.device = str(resolve_device(device))
        self.recipes = Path(recipes) if recipes is not None else RECIPES
        self.jobs, self.threads, self.record = jobs, threads, record
        self.data = self.out / "data"
        self.timings: dict[str, float] = {}
        self.ran: list[str] = []  # stages executed by this invocation (the others were complete already)

    # ----- bookkeeping -----
    def _check_settings(self) -> None:
        path = self.out / "settings.json"
        wanted = self.settings.to_dict()
        if path.is_file():
            found = _read_json(path)
            if json.loads(json.dumps(wanted)) != found:
                raise ConfigError(f"{path}: this folder holds a demo made with other settings "
                                  f"(e.g. another --quick/--seeds); use another --out or delete it")
        else:
            _write_json(path, wanted)
        timing_file = self.out / "timings.json"
        self.timings = _read_json(timing_file) if timing_file.is_file() else {}

    def _stage(self, name: str, done: bool, work) -> None:
        """Run ``work()`` unless ``done``; record its wall time under ``name`` (kept across resumes)."""
        if done:
            return
        self.say(f"[demo] {name}")
        tic = time.perf_counter()
        work()
        self.add_timings({name: round(time.perf_counter() - tic, 2)}, [name])

    def add_timings(self, timings: dict[str, float], ran: list[str]) -> None:
        self.timings.update(timings)
        self.ran += ran
        if self.record:
            _write_json(self.out / "timings.json", self.timings)

    def say(self, text: str) -> None:
        if self.progress:
            print(text, flush=True)

    # ----- stages -----
    def run(self) -> dict[str, Any]:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return self._run()
        finally:
            torch.set_num_threads(before)

    def _run(self) -> dict[str, Any]:
        from . import nets  # noqa: F401  registers demo_hr_net before any model file is loaded
        from .parallel import run_tasks
        from .summary import build_summary, write_outputs

        start = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        self._check_settings()
        self._stage("data", (self.data / "complete.json").is_file(), self.make_data)
        self._stage("teacher", self.teacher.is_file(), lambda: self.train("demo_teacher.py", self.out / "teacher", {
            "num_epoch": self.settings.teacher_epochs, "seed": self.settings.teacher_seed}))
        if "bridge" in self.settings.methods:
            self._stage("bridge_g", self.bridge.is_file(), lambda: self.train(
                "demo_bridge_step1.py", self.out / "bridge_g", {
                    "num_epoch": self.settings.bridge_epochs, "seed": self.settings.teacher_seed,
                    "teacher": str(self.teacher)}, cache="teacher"))
        run_tasks(self, self.model_names())  # train (students) and evaluate every model
        records = [r for name in self.model_names() for r in _read_json(self.out / "eval" / f"{name}.json")["records"]]
        summary = build_summary(records, self.settings, self.timings, time.perf_counter() - start, self.device,
                                ran=self.ran)
        summary["run"].update(jobs=self.jobs, threads_per_job=self.threads)
        write_outputs(summary, self.out)
        return summary

    @property
    def teacher(self) -> Path:
        return self.out / "teacher" / "student.pt"

    @property
    def bridge(self) -> Path:
        return self.out / "bridge_g" / "student.pt"

    def cells(self) -> list[StudentCell]:
        return [StudentCell(*cell) for cell in self.settings.student_cells()]

    def model_names(self) -> list[str]:
        return ["teacher"] + [cell.name for cell in self.cells()]

    def run_task(self, name: str) -> None:
        """Train student ``name`` (unless it is the teacher) and evaluate it; each part is skipped when done."""
        path = self.teacher
        if name != "teacher":
            cell = StudentCell(**_cell_fields(name))
            path = self.out / "students" / cell.name / "student.pt"
            self._stage(f"student {cell.name}", path.is_file(), lambda: self.train_student(cell, self.teacher,
                                                                                            self.bridge))
        target = self.out / "eval" / f"{name}.json"
        self._stage(f"eval {name}", target.is_file(), lambda: self.evaluate(name, path, target))

    def cache_of(self, name: str) -> str | None:
        """The shared teacher cache a task builds or reads (None: no cache)."""
        method = _cell_fields(name)["method"]
        if method in ("teacher", "none"):
            return None
        return "bridge_g" if method == "bridge" else "teacher"

    def make_data(self) -> None:
        from ..data.synthetic import SyntheticFaceConfig, write_synthetic_dataset
        from .shifted import ShiftConfig, write_shifted_bin

        s = self.settings
        paths = write_synthetic_dataset(self.data, train_ids=s.train_ids, test_ids=s.test_ids,
                                        images_per_identity=s.images_per_identity, pairs=s.pairs, seed=s.data_seed,
                                        base=SyntheticFaceConfig(coarse_clusters=s.coarse_clusters,
                                                                 coarse_jitter=s.coarse_jitter,
                                                                 fine_detail=s.fine_detail))
        write_shifted_bin(paths.test_bin, self.data / "shifted.bin", ShiftConfig(seed=s.data_seed))
        _write_json(self.data / "complete.json", {"train_ids": s.train_ids, "test_ids": s.test_ids,
                                                  "images_per_identity": s.images_per_identity, "pairs": s.pairs})

    def train(self, recipe: str, output: Path, fields: dict[str, Any], cache: str | None = None) -> Path:
        """Train one model from ``recipes/<recipe>`` with ``fields`` on top; resumes from its checkpoints."""
        from ..train.config import load_config
        from ..train.trainer import Trainer

        recipe_path = self.recipes / recipe
        if not recipe_path.is_file():
            raise ConfigError(f"demo recipe {recipe_path} not found (pass --recipes DIR with the demo_*.py files)")
        output.mkdir(parents=True, exist_ok=True)
        if cache is not None:
            _link_cache(output, self.out / "cache" / cache)
        cfg = load_config(recipe_path, {"rec": str(self.data), "output": str(output), "resume": True,
                                        "device": self.device, "batch_size": self.settings.batch_size, **fields})
        return Trainer(cfg, progress=self.progress).fit()

    def train_student(self, cell: StudentCell, teacher: Path, bridge: Path) -> Path:
        fields: dict[str, Any] = {
            "distill": cell.method, "seed": cell.seed, "max_steps": self.settings.student_steps,
            "network": "bridge_student", "student_input_size": cell.lr_size, "lr_sizes": (cell.lr_size,),
            "teacher": str(bridge if cell.method == "bridge" else teacher)}
        return self.train("demo_student.py", self.out / "students" / cell.name, fields, cache=self.cache_of(cell.name))

    def evaluate(self, name: str, path: Path, target: Path) -> None:
        """Both sets, every probe size, FaceBN off and on (both sets decoded once per model)."""
        from ..eval.report import SweepConfig, run_sweep

        s = self.settings
        config = SweepConfig(sizes=s.eval_sizes, facebn_modes=("off", s.facebn_mode), batch_size=s.eval_batch_size)
        bins = [self.data / f"{b}.bin" for b in BINS]
        result = run_sweep({name: path}, bins, device=self.device, progress=self.progress, config=config)
        records = result["records"]
        for record in records:  # the bin's own name, not a path stem that a user could rename
            record.update(_cell_fields(name))
        _write_json(target, {"records": records, "model": result["models"][name], "hardware": result["hardware"]})


def _cell_fields(name: str) -> dict[str, Any]:
    """``aird_16px_s1`` -> method aird, lr_size 16, seed 1; the teacher -> method "teacher"."""
    if name == "teacher":
        return {"method": "teacher", "lr_size": 112, "seed": None}
    method, size, seed = name.rsplit("_", 2)
    return {"method": method, "lr_size": int(size.removesuffix("px")), "seed": int(seed.removeprefix("s"))}


def _link_cache(output: Path, shared: Path) -> None:
    """Point ``output/teacher_cache`` (where the trainer keeps its cache) at the shared cache folder."""
    link = output / "teacher_cache"
    shared.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        return
    try:
        link.symlink_to(os.path.relpath(shared, output), target_is_directory=True)
    except OSError:  # no symlinks (some Windows setups): each run keeps its own cache, only slower
        pass
