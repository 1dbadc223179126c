"""What the demo runs: data size, training budgets and which (method, LR size, seed) cells are trained.

Every model (the teacher and every student of every seed) is evaluated on both sets at every probe size with
FaceBN off, and with the headline FaceBN mode where the tables and plots show it (the main job: the headline size
only, ``facebn_sizes``; ``demo --full-sweep``: every mode, the batch one too, at every size), so every table
reports mean ± std over seeds. The main job's measured time is the README's (rendered from
docs/demo/summary.json, CPU model included); the cost is the evaluation's volume (faces x sizes x FaceBN modes x
2 flips, each repeated face once) and the students' steps, not a per-call overhead. Every number is a field, so a
user with more time (or a GPU) scales the demo up (more seeds, ``lr_sizes``, steps) without touching the code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..errors import ConfigError
from ..eval.facebn_modes import DEFAULT_FACEBN
from .grids import GRIDS

# bridge2 (issue 32, with a pretrained --teacher): the tiny native-16-px student distilled from the `none` student of
# its seed (the two-step bridge); it comes after none, whose students it needs
# bank (issue 30, beyond the papers: a relation over a memory of cached teacher embeddings) is opt-in (--methods)
METHODS = ("none", "kd", "feat", "rkd", "aird", "ccface", "bank", "bridge", "bridge2")
DEFAULT_METHODS = ("none", "kd", "feat", "rkd", "aird", "ccface", "bridge")  # the papers' methods and baselines
EVAL_SIZES = (112, 32, 24, 16, 12, 8)
# (a) "same": teacher and students train on the same identities; (b) "subset": the teacher knows more (it saw
# every training identity, the students a seeded `student_fraction` of them: the bridge paper's cross-dataset
# setting, and the user holding a pretrained teacher)
REGIMES = ("same", "subset")
# the search every distilling method gets on the validation split: its term's weight in the sum (the margin loss
# keeps weight 1). One grid for all, so no method is tuned harder than another.
TUNE_WEIGHTS = (1.0, 4.0, 16.0)


@dataclass(frozen=True)
class DemoSettings:
    """One demo configuration. Students of ``headline_size`` are trained for every seed (the issue's claims
    are checked there, over seeds); the other LR sizes only for ``seeds[0]``."""

    preset: str = "full"
    train_ids: int = 150
    test_ids: int = 60
    images_per_identity: int = 16
    pairs: int = 800
    data_seed: int = 0
    # the faces (SyntheticFaceConfig). Measured (80 ids, teacher 20 epochs): with the library's 8 prototypes
    # (jitter 0.04) or 3 (jitter 0.01) people differ mostly in which prototype they are near, a cue that survives
    # 8 px (teacher 88 % at 112 px, 86 % at 8 px), and the fine texture alone (1 prototype, jitter 0.02) was not
    # learnt at all (teacher ~45 %). One prototype with jitter 0.3: people differ in face geometry (sub-pixel
    # to 2 px at 112) and colour; the teacher reached 92 % at 112 px, a 16-px student trained alone 79 %.
    coarse_clusters: int = 1
    coarse_jitter: float = 0.3
    fine_detail: float = 1.0
    teacher_epochs: int = 10
    bridge_epochs: int = 3  # bridge step 1 (the bridge network g on HR faces), shared by every seed
    student_steps: int = 120
    batch_size: int = 64
    lr_sizes: tuple[int, ...] = (16, 12)  # 12-px students: seeds[0] only
    headline_size: int = 16
    methods: tuple[str, ...] = DEFAULT_METHODS
    seeds: tuple[int, ...] = (0, 1, 2)
    same_seeds: tuple[int, ...] = ()  # seeds of regime "same" when it should get fewer (empty: ``seeds``)
    eval_sizes: tuple[int, ...] = EVAL_SIZES
    facebn_mode: str = DEFAULT_FACEBN  # FaceBN "on": eval's default (eval/facebn_modes.py, docs/real_faces.md)
    facebn_extra: tuple[str, ...] = ("batch",)  # more FaceBN modes in every sweep (reported, never the headline)
    facebn_sizes: tuple[int, ...] = ()  # probe sizes the adapting FaceBN modes are evaluated at (empty: every size)
    eval_batch_size: int = 64
    teacher_seed: int = 0
    regimes: tuple[str, ...] = REGIMES
    student_fraction: float = 0.4  # regime "subset": fraction of the training identities the students see
    # real-data mode (``demo --faces``); empty: the embedded synthetic faces
    faces: str = ""  # image folder (FOLDER/<identity>/<image>) or train.rec of the user's faces
    test_bins: tuple[str, ...] = ()  # the .bin sets reported on (never used to choose anything)
    teacher_model: str = ""  # a given teacher (backbone.pth, student.pt, .onnx); empty: train demo_hr_net
    val_fraction: float = 0.0  # identities carved from the training faces into val.bin (tuning, budgets)
    val_pairs_per_fold: int = 60
    student_epochs: int = 0  # > 0: students train this many epochs of their data instead of student_steps
    tune_weights: tuple[float, ...] = ()  # the tuning grid (empty: no tuning, the recipe's values)
    tune_grid: str = ""  # a named grid of demo/tuning.py GRIDS (the term's weight and own fields); "": tune_weights
    tune_epochs: int = 0  # > 0: tuning candidates train this many epochs (0: the students' budget)
    budget_epochs: tuple[int, ...] = ()  # extra budgets for none and aird, to show none converged
    budget_seeds: tuple[int, ...] = ()  # seeds of the budget-curve runs (empty: the first seed only)
    # "teacher": the students of every method but bridge are fine-tunes of the given (pretrained) teacher, trained
    # on faces shrunk to ``finetune_lr_sizes`` and enlarged back to its input (recipe demo_finetune.py); "" trains
    # bridge_students from scratch at their native LR size
    student_init: str = ""
    finetune_lr_sizes: tuple[int, ...] = (12, 14, 16, 18, 20)
    aird_margin: float = 3.0  # the claim "aird beats none by >= aird_margin points"
    student_facebn_extra: bool = True  # False: students are swept with FaceBN off and facebn_mode only
    student_eval_sizes: tuple[int, ...] = ()  # probe sizes of the students (empty: eval_sizes, as the teacher)
    students_on_val: bool = True  # False: reported students are evaluated on the test sets only (val: tuning)
    # the methods whose students are also evaluated with facebn_mode (the AIRD paper's second step as a row of
    # its own); None: every method
    student_facebn_methods: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ConfigError(f"demo methods: expected some of {METHODS}, got {self.methods}")
        for name in ("seeds", "same_seeds"):
            seeds = getattr(self, name)
            if (name == "seeds" and not seeds) or len(set(seeds)) != len(seeds):
                raise ConfigError(f"demo --{name.replace('_', '-')}: expected distinct integers, got {seeds}")
        if self.headline_size not in self.lr_sizes:
            raise ConfigError(f"demo headline size {self.headline_size} must be one of lr_sizes {self.lr_sizes}")
        from ..eval.facebn_modes import facebn_spec

        for mode in (self.facebn_mode, *self.facebn_extra):
            if mode == "off":
                raise ConfigError("demo facebn modes: 'off' is always evaluated; name adapting modes only")
            facebn_spec(mode)
        for name in ("train_ids", "test_ids", "teacher_epochs", "bridge_epochs", "student_steps", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"demo setting {name}: expected a positive integer")
        if not self.regimes or any(r not in REGIMES for r in self.regimes):
            raise ConfigError(f"demo regimes: expected some of {REGIMES}, got {self.regimes}")
        for name in ("student_fraction", "val_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0 or (name == "student_fraction" and value == 0.0):
                raise ConfigError(f"demo --{name.replace('_', '-')}: expected a fraction in (0, 1), got {value}")
        if self.faces and not self.test_bins:
            raise ConfigError("demo --faces: also give --test-bin a.bin[,b.bin] (the sets the report is made on)")
        if "bridge2" in self.methods and (self.student_init != "teacher" or "none" not in self.methods):
            raise ConfigError("demo method bridge2 distils the `none` fine-tune of a pretrained --teacher: it needs "
                              "student_init 'teacher' and method none")
        if self.student_init not in ("", "teacher") or (self.student_init and self.faces and not self.teacher_model):
            raise ConfigError(f"demo student_init: expected '' or 'teacher' (with a given --teacher), "
                              f"got {self.student_init!r}")
        if self.tune_grid and self.tune_grid not in GRIDS:
            raise ConfigError(f"demo tune_grid: expected one of {sorted(GRIDS)}, got {self.tune_grid!r}")
        untuned = [m for m in self.methods if self.tune_grid and m != "none" and m not in GRIDS[self.tune_grid]]
        if untuned:  # every distilling method gets the grid's search, or the comparison is not even
            raise ConfigError(f"demo tune_grid {self.tune_grid!r} has no candidates for {untuned}")
        if (self.tune_weights or self.tune_grid or self.budget_epochs) and not self.val_fraction:
            raise ConfigError("demo: tuning and budget curves need a validation split (val_fraction > 0)")

    @property
    def facebn_modes(self) -> tuple[str, ...]:
        """Every FaceBN mode of the sweeps: off, the headline mode, then the extra ones."""
        return tuple(dict.fromkeys(("off", self.facebn_mode, *self.facebn_extra)))

    def regime_seeds(self, regime: str) -> tuple[int, ...]:
        """The seeds whose students are reported in ``regime``."""
        return (self.same_seeds or self.seeds) if regime == "same" else self.seeds

    @property
    def curve_seeds(self) -> tuple[int, ...]:
        """The seeds of the budget-curve runs."""
        return self.budget_seeds or self.seeds[:1]

    @property
    def tune_regime(self) -> str:
        """Where the weights are chosen (then used in every regime): the regime the claims are about."""
        return "subset" if "subset" in self.regimes else self.regimes[0]

    @property
    def real(self) -> bool:
        """The user's faces (``--faces``) rather than the embedded synthetic set."""
        return bool(self.faces)

    def student_cells(self) -> list[tuple[str, int, int, str]]:
        """``(method, lr_size, seed, regime)`` of every reported student: headline size first, every regime and
        seed there; other LR sizes for ``seeds[0]`` in the first regime only."""
        sizes = [self.headline_size] + [s for s in self.lr_sizes if s != self.headline_size]
        cells = []
        for size in sizes:
            for regime in self.regimes if size == self.headline_size else self.regimes[:1]:
                seeds = self.regime_seeds(regime)
                cells += [(m, size, seed, regime) for seed in (seeds if size == self.headline_size else seeds[:1])
                          for m in self.methods]
        return cells

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, fields: dict[str, Any], source: str = "settings") -> DemoSettings:
        """Settings from :meth:`to_dict`'s JSON (lists back to tuples); a field it lacks (a folder made before the
        field existed) takes its default, an unknown field is refused."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - set(known))
        if unknown:
            raise ConfigError(f"{source}: unknown demo setting(s) {unknown}; expected some of {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})

    def student_facebn(self, method: str) -> bool:
        """Whether ``method``'s students are evaluated with ``facebn_mode`` too (FaceBN off always is)."""
        return self.student_facebn_methods is None or method in self.student_facebn_methods


# The main command runs one regime, "subset" (the teacher knows more people than the students' data holds: a
# user with a pretrained teacher), at 16 px, 3 seeds; ``--regimes subset,same`` adds the other regime (doubles the
# students). 12-px students are a field away (lr_sizes=(16, 12)).
# What the main job evaluates is what its tables and plots show: every probe size with FaceBN off (accuracy vs
# resolution), the headline FaceBN mode at the headline size (the headline table, the FaceBN claims and plot);
# ``demo --full-sweep`` adds the batch mode and every mode at every size.
_SHOWN = {"facebn_extra": (), "facebn_sizes": (16,)}
QUICK = DemoSettings(preset="quick", train_ids=80, test_ids=40, images_per_identity=12, pairs=400,
                     teacher_epochs=10, bridge_epochs=2, student_steps=80, lr_sizes=(16,), seeds=(0,),
                     regimes=("subset",), **_SHOWN)
FULL = DemoSettings(lr_sizes=(16,), regimes=("subset",), **_SHOWN)
# for tests: seconds, not minutes; the numbers mean nothing
TINY = DemoSettings(preset="tiny", train_ids=6, test_ids=4, images_per_identity=3, pairs=20, teacher_epochs=1,
                    bridge_epochs=1, student_steps=2, batch_size=8, lr_sizes=(16, 12), seeds=(0,), student_fraction=0.5,
                    methods=("none", "aird", "bridge"), eval_sizes=(16, 8), eval_batch_size=8)
# ``demo --faces``: the user's faces. Budgets measured on 137 real identities (8.6k faces, see docs/real_faces.md).
REAL = DemoSettings(preset="real", teacher_epochs=15, bridge_epochs=5, student_epochs=10, lr_sizes=(16,),
                    val_fraction=0.2, val_pairs_per_fold=150, tune_weights=TUNE_WEIGHTS, budget_epochs=(20,),
                    eval_sizes=(112, 16), facebn_extra=("batch", "calibrate"), train_ids=1,
                    test_ids=1)
# ``demo --faces --teacher PRETRAINED``: every method fine-tunes the pretrained teacher (a 112-px MobileFaceNet
# trains at ~25-35 faces/s per 1-thread job here) for the recipe's 2 epochs, 3 seeds. What is cut to fit <= 4 h
# wall on 2 cores (issue 30): one regime (the teacher is pretrained elsewhere: "subset" has no meaning); the
# teacher swept once per set (FaceBN off and the headline mode, every size); students at every size on the test
# sets only (val is for tuning), FaceBN off, and aird once more with FaceBN (the AIRD paper's second step, its own
# row); tuning cells (demo/grids.py: four per distilling method, the term's weight and its own parts) train one
# epoch; no budget curves; each repeated face of a set is embedded once. The one-step bridge student is left out
# (its HR bridge network alone cost ~14 min): bridge2, the two-step student of issue 32, distils each seed's `none`.
PRETRAINED = replace(REAL, preset="pretrained", student_init="teacher", student_epochs=2, regimes=("same",),
                     budget_epochs=(), aird_margin=1.0, student_facebn_extra=False, facebn_extra=(),
                     eval_sizes=EVAL_SIZES, student_eval_sizes=EVAL_SIZES, students_on_val=False,
                     tune_grid="pretrained", tune_epochs=1, student_facebn_methods=("aird",),
                     methods=("none", "kd", "feat", "rkd", "aird", "ccface", "bridge2"))
PRESETS = {"full": FULL, "quick": QUICK, "tiny": TINY, "real": REAL, "pretrained": PRETRAINED}


def make_settings(preset: str = "full", seeds: tuple[int, ...] | None = None, **fields: Any) -> DemoSettings:
    """A preset with ``seeds`` (and any other field) replaced."""
    if preset not in PRESETS:
        raise ConfigError(f"demo preset: expected one of {sorted(PRESETS)}, got {preset!r}")
    if seeds is not None:
        fields["seeds"] = tuple(int(s) for s in seeds)
    return replace(PRESETS[preset], **fields)


# What ``demo --extend`` may change in a used folder: more of the same cells, the recorded values first. Any other
# field would change what the finished cells mean.
EXTENDABLE = ("seeds", "same_seeds", "methods", "regimes", "budget_epochs", "budget_seeds")


def extended(recorded: DemoSettings, wanted: DemoSettings) -> DemoSettings:
    """``wanted``, checked to only add cells to ``recorded``: every other field equal, each extendable one keeping
    the recorded values, in order, as its start (seeds 0,1 -> 0,1,2), the tuning regime unchanged (the finished
    students were trained with the weights chosen there)."""
    changed = [f"{f.name} ({getattr(recorded, f.name)!r} -> {getattr(wanted, f.name)!r})"
               for f in dataclasses.fields(DemoSettings)
               if f.name not in EXTENDABLE and getattr(recorded, f.name) != getattr(wanted, f.name)]
    if changed:
        raise ConfigError(f"demo --extend: {', '.join(changed)} cannot change in a used folder; only "
                          f"{', '.join(EXTENDABLE)} can grow")
    effective = {"same_seeds": lambda s: s.regime_seeds("same"), "budget_seeds": lambda s: s.curve_seeds}
    for name in EXTENDABLE:
        value = effective.get(name, lambda s, n=name: getattr(s, n))
        old, new = tuple(value(recorded)), tuple(value(wanted))
        if new[:len(old)] != old:
            raise ConfigError(f"demo --extend: {name} {list(old)} -> {list(new)}: only additions after the "
                              f"recorded values are allowed")
    if wanted.tune_regime != recorded.tune_regime:
        raise ConfigError(f"demo --extend: regimes {list(recorded.regimes)} -> {list(wanted.regimes)} would move the "
                          f"weight tuning from regime {recorded.tune_regime!r} to {wanted.tune_regime!r}")
    return wanted
