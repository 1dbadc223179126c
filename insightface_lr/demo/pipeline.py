"""The demo's stages: data -> HR teacher -> bridge networks -> tuning -> LR students -> evaluation -> report.

Every stage writes its outputs atomically and is skipped when they exist, so a killed demo re-run
continues where it stopped (a half-trained model also resumes from its last epoch checkpoint). The
output folder records the settings it was made with; re-running with other settings is refused rather
than silently mixing numbers. Two regimes (settings.REGIMES): "same" students train on the teacher's
identities (``data/train.rec``), "subset" students on a seeded fraction of them (``data/subset/``).
Layout of ``out``::

    settings.json  data/{train.rec,train.idx,property,subset/,complete.json, test.bin,shifted.bin | val.bin}
    teacher/student.pt  bridge_g[_subset]/student.pt  tune/<candidate>/  tune/choices.json
    students/<method>_<size>px_s<seed>[_subset][_e<epochs>]/student.pt
    cache/<teacher>[_subset]/...  (teacher embeddings: the `teacher_cache_dir` of every run on that teacher and data)
    eval/<model>.json  timings.json  report.md  results.json  *.png
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes
from ..errors import ConfigError
from .cells import StudentCell, parse_cell
from .settings import DemoSettings
from .wall import WallClock

RECIPES = Path(__file__).resolve().parent / "recipes"  # shipped in the wheel (setup.py package_data)


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n").encode())


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


class DemoPipeline:
    """Runs (or resumes) the demo in ``out`` with ``settings``; ``run()`` returns the summary dict."""

    def __init__(self, out: str | os.PathLike, settings: DemoSettings, device: str = "auto",
                 progress: bool = True, recipes: str | os.PathLike | None = None, jobs: int = 1,
                 threads: int = 1, record: bool = True, extend: bool = False) -> None:
        """``jobs``: stages run at once (processes) once the teacher is trained; ``threads``: torch threads of
        every stage. The numbers depend on ``threads`` (float reduction order), never on ``jobs``: the
        default 1 gives the same results on any number of cores. ``record=False`` (a worker) leaves
        ``timings.json`` to the parent process. ``extend``: a used folder may get more seeds, methods, regimes
        or budget runs (:func:`~insightface_lr.demo.settings.extended`); its other settings stay as recorded."""
        from ..devices import resolve_device

        if jobs < 1 or threads < 1:
            raise ConfigError(f"demo: expected jobs >= 1 and threads >= 1, got jobs={jobs}, threads={threads}")
        self.out, self.settings, self.progress = Path(out), settings, progress
        self.device = str(resolve_device(device))
        self.recipes = Path(recipes) if recipes is not None else RECIPES
        self.jobs, self.threads, self.record, self.extend = jobs, threads, record, extend
        self.data = self.out / "data"
        self.timings: dict[str, float] = {}
        self.wall = WallClock(self.out / "wall.json", record=record)
        self.ran: list[str] = []  # stages executed by this invocation (the others were complete already)

    # ----- bookkeeping -----
    def _check_settings(self) -> None:
        """Record the settings in a new folder; in a used one they must match (``extend``: may add cells)."""
        from .settings import DemoSettings, extended

        path = self.out / "settings.json"
        if path.is_file():
            recorded = DemoSettings.from_dict(_read_json(path), source=str(path))
            if recorded != self.settings and not self.extend:
                raise ConfigError(f"{path}: this folder holds a demo made with other settings "
                                  f"(e.g. another --quick/--seeds); use another --out, delete it, or --extend it")
            if recorded != self.settings:
                self.settings = extended(recorded, self.settings)
        if not path.is_file() or _read_json(path) != json.loads(json.dumps(self.settings.to_dict())):
            _write_json(path, self.settings.to_dict())
        timing_file = self.out / "timings.json"
        self.timings = _read_json(timing_file) if timing_file.is_file() else {}
        self.wall.load()

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
        self.wall.save()  # as each stage ends, besides the heartbeat

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

        start = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        self._check_settings()
        with self.wall.beating():  # a killed invocation (a session that ends) loses at most one beat of its time
            choices, names = self._stages()
        # the heartbeat has stopped: the summary's wall record and wall.json are the same numbers
        return self._summarise(start, choices, names)

    def _stages(self) -> tuple[dict[str, Any], list[str]]:
        """Every stage (each skipped when done); returns the tuning choices and the names of every model."""
        from .parallel import run_tasks
        from .tuning import choose_weights, tuning_cells

        self._stage("data", (self.data / "complete.json").is_file(), self.make_data)
        if not self.settings.teacher_model:
            self._stage("teacher", self.teacher.is_file(), lambda: self.train(
                "demo_teacher.py", self.out / "teacher", self.data,
                {"num_epoch": self.settings.teacher_epochs, "seed": self.settings.teacher_seed}))
        if "bridge" in self.settings.methods:
            for regime in self.settings.regimes:
                self._stage(f"bridge_g{_suffix(regime)}", self.bridge(regime).is_file(), lambda r=regime: self.train(
                    "demo_bridge_step1.py", self.bridge(r).parent, self.rec(r), {
                        "num_epoch": self.settings.bridge_epochs, "seed": self.settings.teacher_seed,
                        "teacher": str(self.teacher)}, cache=f"teacher{_suffix(r)}"))
        tuning = [c.name for c in tuning_cells(self.settings)]
        run_tasks(self, self.prerequisites() + tuning)
        choices = choose_weights(self.settings, self.out, tuning)
        run_tasks(self, self.model_names())  # train (students) and evaluate every model
        return choices, ["teacher"] + [c.name for c in self.cells()] + tuning

    def _summarise(self, start: float, choices: dict[str, Any], names: list[str]) -> dict[str, Any]:
        from .summary import build_summary, write_outputs

        records = [r for name in names for r in _read_json(self.out / "eval" / f"{name}.json")["records"]]
        summary = build_summary(records, self.settings, self.timings, time.perf_counter() - start, self.device,
                                ran=self.ran)
        self.add_timings({}, [])  # the invocation's seconds into wall.json, even when no stage was left to run
        summary["run"].update(jobs=self.jobs, threads_per_job=self.threads, **self.wall.record())
        summary.update(tuning=choices, data=_read_json(self.data / "complete.json"))
        write_outputs(summary, self.out)
        return summary

    @property
    def teacher(self) -> Path:
        given = self.settings.teacher_model
        return Path(given) if given else self.out / "teacher" / "student.pt"

    def bridge(self, regime: str = "same") -> Path:
        return self.out / f"bridge_g{_suffix(regime)}" / "student.pt"

    def rec(self, regime: str) -> Path:
        """The folder whose train.rec the students of ``regime`` train on."""
        return self.data / "subset" if regime == "subset" else self.data

    def cells(self) -> list[StudentCell]:
        """The reported students, then the budget-curve runs (none and aird, ``curve_seeds``, every regime)."""
        s = self.settings
        cells = [StudentCell(*cell) for cell in s.student_cells()]
        cells += [StudentCell(m, s.headline_size, seed, regime, epochs) for regime in s.regimes
                  for seed in s.curve_seeds for epochs in s.budget_epochs for m in ("none", "aird") if m in s.methods]
        return cells

    def model_names(self) -> list[str]:
        return ["teacher"] + [cell.name for cell in self.cells()]

    def run_task(self, name: str) -> None:
        """Train student ``name`` (unless it is the teacher) and evaluate it; each part is skipped when done."""
        path = self.teacher
        target = self.out / "eval" / f"{name}.json"
        if name != "teacher":
            cell = parse_cell(name)
            path = self.out / ("tune" if cell.is_tuning else "students") / cell.name / "student.pt"
            # an evaluated student is finished even without its weights (a folder restored from its records);
            # a bridge that another task needs is always kept
            done = path.is_file() or (target.is_file() and not self._needed_by_others(cell.name))
            self._stage(f"student {cell.name}", done, lambda: self.train_student(cell, path.parent))
        self._stage(f"eval {name}", target.is_file(), lambda: self.evaluate(name, path, target))

    def fine_tunes(self, cell: StudentCell) -> bool:
        """The student starts from the given teacher (every method with no recipe of its own in
        :data:`OWN_RECIPES`, when ``student_init``)."""
        return self.settings.student_init == "teacher" and cell.method not in OWN_RECIPES

    def cache_of(self, name: str) -> str | None:
        """The shared teacher cache a task builds or reads (None: no cache); a fine-tune reads it for the class
        centres its margin head starts from, even without distillation."""
        if name == "teacher":
            return None
        cell = parse_cell(name)
        if cell.method == "none" and not self.fine_tunes(cell):
            return None
        if cell.method == "bridge2":  # one cache per bridge: the bridge's embeddings of the LR view
            return f"bridge2_s{self.bridge2_seed(cell)}{_suffix(cell.regime)}"
        return ("bridge_g" if cell.method == "bridge" else "teacher") + _suffix(cell.regime)

    def needs(self, name: str) -> str | None:
        """The task that must have finished before ``name`` starts (bridge2: its bridge, a ``none`` fine-tune)."""
        if name == "teacher" or parse_cell(name).method != "bridge2":
            return None
        cell = parse_cell(name)
        return StudentCell("none", self.settings.headline_size, self.bridge2_seed(cell), cell.regime).name

    def _needed_by_others(self, name: str) -> bool:
        return "bridge2" in self.settings.methods and parse_cell(name).method == "none"

    def bridge2_seed(self, cell: StudentCell) -> int:
        """The seed of bridge2's bridge: the student's own seed; tuning candidates (which see val.bin only) share
        the first seed's bridge rather than training one more fine-tune at the tuning seed."""
        return self.settings.seeds[0] if cell.is_tuning else cell.seed

    def teacher_of(self, cell: StudentCell) -> Path:
        """The model a student distils from: the given teacher, the bridge network (bridge) or the plain
        low-resolution fine-tune of the same seed (bridge2, step 2 of the two-step bridge)."""
        if cell.method == "bridge":
            return self.bridge(cell.regime)
        if cell.method == "bridge2":
            bridge = self.out / "students" / self.needs(cell.name) / "student.pt"
            if not bridge.is_file():
                raise ConfigError(f"demo bridge2 {cell.name}: its bridge {bridge} is missing (train `none` first)")
            return bridge
        return self.teacher

    def prerequisites(self) -> list[str]:
        """Reported students that tuning candidates need (bridge2's bridge of the first seed), trained first."""
        return list(dict.fromkeys(self.needs(c.name) for c in self.tuning() if self.needs(c.name)))

    def tuning(self) -> list[StudentCell]:
        from .tuning import tuning_cells

        return tuning_cells(self.settings)

    def make_data(self) -> None:
        from .data import make_real, make_synthetic

        self.data.mkdir(parents=True, exist_ok=True)
        info = (make_real if self.settings.real else make_synthetic)(self.data, self.settings)
        _write_json(self.data / "complete.json", info)

    def train(self, recipe: str, output: Path, rec: Path, fields: dict[str, Any], cache: str | None = None) -> Path:
        """Train one model from ``recipes/<recipe>`` on ``rec`` with ``fields`` on top; resumes from its
        checkpoints."""
        from ..train.config import load_config
        from ..train.run_record import holds_a_run  # resume a killed run; a fresh one has nothing to resume
        from ..train.trainer import Trainer

        recipe_path = self.recipes / recipe
        if not recipe_path.is_file():
            raise ConfigError(f"demo recipe {recipe_path} not found (pass --recipes DIR with the demo_*.py files)")
        output.mkdir(parents=True, exist_ok=True)
        if cache is not None:  # the runs on one teacher and data share its cache instead of each computing one
            fields = {**fields, "teacher_cache_dir": str(self.out / "cache" / cache)}
        cfg = load_config(recipe_path, {"rec": str(rec), "output": str(output), "resume": holds_a_run(output),
                                        "device": self.device, "batch_size": self.settings.batch_size, **fields})
        return Trainer(cfg, progress=self.progress).fit()

    def train_student(self, cell: StudentCell, output: Path) -> Path:
        from .tuning import candidate_of, chosen

        s = self.settings
        own = OWN_RECIPES.get(cell.method)
        epochs = cell.epochs or (s.tune_epochs if cell.is_tuning and not own else 0) or s.student_epochs
        fields: dict[str, Any] = {"seed": cell.seed, "teacher": str(self.teacher_of(cell))}
        if own is None or own.budget:  # a recipe of its own may set its own budget (a tiny student's epochs)
            fields.update({"num_epoch": epochs, "max_steps": 0} if epochs else {"max_steps": s.student_steps})
        else:  # ... and batch size: its recipe's (a tiny student takes twice the demo's), at most twice the demo's
            from ..train.config import read_config_file

            written = read_config_file(self.recipes / own.recipe).get("batch_size", s.batch_size)
            fields["batch_size"] = min(int(written), 2 * s.batch_size)
        if own is None or own.term is None:
            fields["distill"] = cell.method
        if self.fine_tunes(cell):  # the teacher's own network, input and embedding size (student_init)
            fields["lr_sizes"], recipe = s.finetune_lr_sizes, "demo_finetune.py"
        elif own is not None and own.recipe:
            recipe = own.recipe
        else:
            fields.update(network="bridge_student", student_input_size=cell.lr_size, lr_sizes=(cell.lr_size,))
            recipe = "demo_student.py"
        candidate = candidate_of(s, cell) if cell.is_tuning else chosen(self.out, cell.method)
        if candidate is not None and cell.method != "none":
            fields.update(self.term_fields(recipe, (own and own.term) or cell.method, candidate))
        return self.train(recipe, output, self.rec(cell.regime), fields, cache=self.cache_of(cell.name))

    def term_fields(self, recipe: str, method: str, candidate: dict[str, Any]) -> dict[str, Any]:
        """Trainer fields of a tuning candidate: the weight of term ``method``, and its own fields merged into the
        recipe's per-term config (a recipe sets every term's config in one dict: the others stay as written)."""
        from ..train.config import read_config_file

        fields: dict[str, Any] = {"distill_weights": {method: candidate["weight"]}}
        fields.update({k: candidate[k] for k in TRAINER_FIELDS if k in candidate})
        own = {k: v for k, v in candidate.items() if k != "weight" and k not in TRAINER_FIELDS}
        if own:
            written = read_config_file(self.recipes / recipe)
            key = "loss" if "loss" in written else "distill_config"
            config = dict(written.get(key) or {})
            fields[key] = {**config, method: {**dict(config.get(method, {})), **own}}
        return fields

    def evaluate(self, name: str, path: Path, target: Path) -> None:
        """Every set, every probe size, every FaceBN mode (each set decoded once per model); tuning and
        budget runs only at the headline size (tuning runs only on val.bin, FaceBN off)."""
        from ..eval.report import SweepConfig, run_sweep, unique_names
        from .data import bins

        s = self.settings
        cell = parse_cell(name) if name != "teacher" else None
        sets = bins(self.data, s)
        modes = s.facebn_modes if cell is None or s.student_facebn_extra else ("off", s.facebn_mode)
        if cell is not None and not s.student_facebn(cell.method):
            modes = ("off",)
        sizes = s.student_eval_sizes if cell is not None and s.student_eval_sizes else s.eval_sizes
        facebn_sizes = tuple(z for z in s.facebn_sizes if z in sizes)
        if s.facebn_sizes and not facebn_sizes:  # none of this model's probe sizes gets an adapting mode
            modes = ("off",)
        config = SweepConfig(sizes=sizes, facebn_modes=modes, batch_size=s.eval_batch_size, facebn_sizes=facebn_sizes)
        if cell is not None and not cell.is_extra and not s.students_on_val:
            sets.pop("val", None)
        if cell is not None and cell.is_extra:
            config = replace(config, sizes=(s.headline_size,))
        if cell is not None and cell.is_tuning:
            sets, config = {"val": sets["val"]}, replace(config, facebn_modes=("off",))
        result = run_sweep({name: path}, list(sets.values()), device=self.device, progress=self.progress,
                           config=config)
        records = result["records"]
        names = dict(zip(unique_names([Path(p).stem for p in sets.values()]), sets, strict=True))
        for record in records:  # the set's demo name, not a path stem that a user could rename
            record.update(_cell_fields(name), bin=names[record["bin"]])
        _write_json(target, {"records": records, "model": result["models"][name], "hardware": result["hardware"]})


TRAINER_FIELDS = ("margin_weight",)  # candidate keys that are trainer fields, not fields of the term


@dataclass(frozen=True)
class OwnRecipe:
    """A method whose students are not made by the shared recipes: its recipe (empty: demo_student.py with the
    bridge_student at the LR size), the distillation term it trains under another name (None: the method's
    name) and whether the demo's student budget applies (False: the recipe's own epochs)."""

    recipe: str = ""
    term: str | None = None
    budget: bool = True


# One entry per such method. bridge: the bridge paper's tiny student distilled from the HR bridge network
# (bridge_g); bridge2 (issue 32): the same tiny student at native 16 px distilled from the plain low-resolution
# fine-tune of the pretrained teacher (step 1, the `none` student of its seed) seeing the same LR face.
OWN_RECIPES: dict[str, OwnRecipe] = {
    "bridge": OwnRecipe(),
    "bridge2": OwnRecipe("demo_bridge2.py", term="feat", budget=False),
}


def _suffix(regime: str) -> str:
    return "" if regime == "same" else f"_{regime}"


def _cell_fields(name: str) -> dict[str, Any]:
    """The fields every record of model ``name`` is tagged with; the teacher is method "teacher"."""
    if name == "teacher":
        return {"method": "teacher", "lr_size": 112, "seed": None, "regime": "teacher", "epochs": 0,
                "weight": None, "candidate": None}
    return asdict(parse_cell(name))
