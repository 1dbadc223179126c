"""Training configuration: arcface_torch config files read as they are, plus our distillation fields.

An arcface_torch config is a Python module that builds ``config = EasyDict()`` and sets fields
(``network``, ``margin_list``, ``rec``, ``num_classes`` ...); its ``get_config`` first loads the sibling
``base.py`` and updates it with the job's fields. :func:`load_config` does the same, without requiring
``easydict`` to be installed, and turns the result into a typed, frozen :class:`TrainConfig`. Unknown or
ill-typed fields are a :class:`ConfigError` naming the file and field.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import runpy
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

# arcface_torch fields that only matter to its own loggers/loaders; accepted and ignored so that an
# unmodified config file loads.
IGNORED_ARCFACE_FIELDS = frozenset({
    "wandb_key", "suffix_run_name", "using_wandb", "wandb_entity", "wandb_project", "wandb_log_all",
    "save_artifacts", "wandb_resume", "dali_aug",
})
# arcface_torch fields we do not implement: refused unless left at their default (not silently ignored)
UNSUPPORTED_ARCFACE_FIELDS = {
    "dali": "NVIDIA DALI loading is not supported; the .rec is read by our own loader",
    "interclass_filtering_threshold": "inter-class filtering of the margin logits is not implemented",
}


@dataclass(frozen=True)
class TrainConfig:
    """Every field of an arcface_torch config we act on, plus ours (documented in the README)."""

    # --- arcface_torch fields (names and defaults as in its configs/base.py) ---
    network: str = "r50"
    embedding_size: int = 512
    margin_list: tuple[float, float, float] = (1.0, 0.5, 0.0)
    sample_rate: float = 1.0
    fp16: bool = False
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    num_epoch: int = 20
    warmup_epoch: int = 0
    rec: str = ""
    num_classes: int = 0
    num_image: int = 0
    val_targets: tuple[str, ...] = ()
    output: str | None = None
    seed: int = 2048
    num_workers: int = 2
    verbose: int = 2000
    frequent: int = 10
    gradient_acc: int = 1
    resume: bool = False
    save_all_states: bool = False              # honoured always: checkpoints hold every state (exact resume)
    dali: bool = False                         # refused when True (UNSUPPORTED_ARCFACE_FIELDS)
    interclass_filtering_threshold: float = 0.0  # refused when non-zero
    # --- insightface-lr fields ---
    distill: str = "none"                      # "--distill" spec, e.g. "aird" or "aird+ccface"
    teacher: str | None = None                 # backbone.pth / checkpoint / .onnx of the HR teacher
    teacher_network: str | None = None         # None: inferred from the checkpoint keys
    student_input_size: int = 112              # native input of the student (16 for a 16-px student)
    network_options: Mapping[str, Any] = field(default_factory=dict)  # more factory options, e.g. bridge_student widths
    # "" (a new network), "teacher" (a trainable copy of the teacher: its network, input and embedding size) or
    # a weights path (any model load_teacher reads); see train/student_init.py
    student_init: str = ""
    channels_last: bool = True                 # train in channels-last layout (faster on CPU and CUDA: train.parts)
    head_init: str = "auto"                    # "auto", "random" or "teacher_centres" (auto: centres with student_init)
    lr_sizes: tuple[int, ...] = (16,)          # training resolutions of the LR view (sampled per batch)
    degrade: Mapping[str, Any] = field(default_factory=dict)   # DegradeConfig fields
    # per-term config, e.g. {"aird": {"beta": 2.0}} (also read from `loss`, its earlier name)
    distill_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    distill_weights: Mapping[str, float] = field(default_factory=dict)   # per-term multiplier in the sum
    distill_normalise: bool = False            # each term in units of its first-step value (losses/scale.py)
    margin_mode: str = "insightface"           # "insightface" (straight-through, parity) or "exact"
    margin_weight: float = 1.0                 # weight of the student's own margin loss
    facebn: str | None = None                  # FaceBN mode used in verification during training
    plugins: tuple[str, ...] = ()              # modules imported so they can register their own parts
    teacher_cache: bool = True
    teacher_cache_dir: str | None = None       # shared cache folder (None: $XDG_CACHE_HOME/insightface_lr/...)
    teacher_cache_dtype: str = "float16"       # storage of the cached embeddings: "float16" or "float32"
    # what the frozen teacher embeds: "hr" (the HR face) or "lr" (the student's LR view, fixed per face and
    # enlarged to the teacher's input: a bridge that reads LR faces; train/teacher_view.py)
    teacher_view: str = "hr"
    checkpoint_every: int = 0                  # steps between checkpoints (0: end of each epoch only)
    max_steps: int = 0                         # stop after this many steps (0: num_epoch epochs)
    overwrite: bool = False                    # replace the run already in `output` (else refused)
    clip_grad_norm: float = 5.0
    val_sizes: tuple[int, ...] = ()            # LR sizes for verification during training (default lr_sizes)
    device: str = "auto"                       # "auto", "cpu", "cuda" or "cuda:N"
    max_num_classes: int = 10_000_000          # refuse more identities (a corrupt label); WebFace42M has 2M

    def __post_init__(self) -> None:
        _check_values(self)


_POSITIVE_INT = (lambda v: v >= 1, "a positive integer")
_AT_LEAST_ZERO = (lambda v: v >= 0, "a number >= 0")
# field -> (test, what is expected): the numeric fields a bad value of which would otherwise surface deep in
# torch (a ValueError traceback), or not at all (a negative clip norm flips every gradient)
_RANGES: dict[str, tuple[Any, str]] = {
    **dict.fromkeys(("batch_size", "num_epoch", "gradient_acc", "max_num_classes", "embedding_size"), _POSITIVE_INT),
    **dict.fromkeys(("weight_decay", "warmup_epoch", "num_workers", "verbose", "frequent", "checkpoint_every",
                     "num_classes", "num_image", "margin_weight"), _AT_LEAST_ZERO),
    "max_steps": (lambda v: v >= 0, "0 (train num_epoch epochs) or a positive integer"),
    "lr": (lambda v: v > 0, "a learning rate > 0"),
    "momentum": (lambda v: 0 <= v < 1, "a momentum in [0, 1)"),
    "sample_rate": (lambda v: 0 < v <= 1, "a partial-FC sample rate in (0, 1]"),
    "clip_grad_norm": (lambda v: v > 0, "a gradient-norm bound > 0"),
}
FACEBN_MODES = ("batch", "online", "calibrate")


def _check_values(cfg: TrainConfig) -> None:
    if cfg.margin_mode not in ("insightface", "exact"):
        raise ConfigError(f"field `margin_mode`: expected 'insightface' or 'exact', got {cfg.margin_mode!r}")
    if cfg.optimizer not in ("sgd", "adamw"):
        raise ConfigError(f"field `optimizer`: expected 'sgd' or 'adamw', got {cfg.optimizer!r}")
    for name, (holds, expected) in _RANGES.items():
        if not holds(getattr(cfg, name)):
            raise ConfigError(f"field `{name}`: expected {expected}, got {getattr(cfg, name)!r}")
    if cfg.facebn is not None and cfg.facebn not in FACEBN_MODES:
        raise ConfigError(f"field `facebn`: expected None or one of {FACEBN_MODES}, got {cfg.facebn!r}")
    for term, weight in cfg.distill_weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight >= 0:
            raise ConfigError(f"field `distill_weights`: weight of {term!r}: expected a number >= 0, got {weight!r}")
    for name, reason in UNSUPPORTED_ARCFACE_FIELDS.items():
        if getattr(cfg, name) != _FIELDS[name].default:
            raise ConfigError(f"field `{name}`: {reason}; expected {_FIELDS[name].default!r}, "
                              f"got {getattr(cfg, name)!r}")
    for size in cfg.lr_sizes + cfg.val_sizes:
        if not 4 <= size <= 112:
            raise ConfigError(f"field `lr_sizes`/`val_sizes`: LR size {size} must be in 4..112 (HR input)")
    if cfg.head_init not in ("auto", "random", "teacher_centres"):
        raise ConfigError(f"field `head_init`: expected 'auto', 'random' or 'teacher_centres', got {cfg.head_init!r}")
    if cfg.teacher_cache_dtype not in ("float16", "float32"):
        raise ConfigError(f"field `teacher_cache_dtype`: expected 'float16' or 'float32', "
                          f"got {cfg.teacher_cache_dtype!r}")
    if cfg.teacher_view not in ("hr", "lr"):
        raise ConfigError(f"field `teacher_view`: expected 'hr' or 'lr', got {cfg.teacher_view!r}")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", cfg.device):
        raise ConfigError(f"field `device`: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {cfg.device!r}")


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
FIELD_ALIASES = {"loss": "distill_config"}  # earlier field names, still read so that user configs keep working


class _EasyDict(dict):
    """Stand-in for ``easydict.EasyDict`` so arcface_torch configs load without that package."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


def _run_config_module(path: Path) -> dict[str, Any]:
    """Execute one config file and return its ``config`` mapping."""
    shim = types.ModuleType("easydict")
    shim.EasyDict = _EasyDict  # type: ignore[attr-defined]
    saved = sys.modules.get("easydict")
    sys.modules["easydict"] = saved or shim
    try:
        namespace = runpy.run_path(str(path))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except Exception as exc:  # a config is user code: report where it failed
        raise ConfigError(f"config file {path}: failed to execute: {type(exc).__name__}: {exc}") from exc
    finally:
        if saved is None:
            sys.modules.pop("easydict", None)
    config = namespace.get("config")
    if not isinstance(config, Mapping):
        raise ConfigError(f"config file {path}: expected a module-level `config` (EasyDict/dict), found none")
    return dict(config)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Fields of an arcface_torch-style config, merged over its sibling ``base.py`` as arcface_torch does."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    fields: dict[str, Any] = {}
    base = path.with_name("base.py")
    if base.is_file() and base.resolve() != path.resolve():
        fields.update(_run_config_module(base))
    fields.update(_run_config_module(path))
    if fields.get("output") is None:
        fields["output"] = str(Path("work_dirs") / path.stem)
    return fields


def build_config(fields: Mapping[str, Any], source: str = "config") -> TrainConfig:
    """Validate and coerce a flat mapping of fields into a :class:`TrainConfig`."""
    hints = typing.get_type_hints(TrainConfig)
    values: dict[str, Any] = {}
    if "loss" in fields and "distill_config" in fields:
        raise ConfigError(f"{source}: fields `loss` and `distill_config` are the same field (`loss` is its "
                          "earlier name); set only `distill_config`")
    for name, value in fields.items():
        name = FIELD_ALIASES.get(name, name)
        if name in IGNORED_ARCFACE_FIELDS:
            continue
        if name not in _FIELDS:
            raise ConfigError(_unknown_field_message(name, source))
        values[name] = _coerce(value, hints[name], f"{source}: field `{name}`")
    return TrainConfig(**values)


def _unknown_field_message(name: str, source: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(_FIELDS), n=1)
    hint = f" (did you mean `{close[0]}`?)" if close else ""
    return f"{source}: unknown field `{name}`{hint}"


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Coerce ``value`` to the annotated type or raise a ConfigError saying what was expected."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is tuple:
        if not isinstance(value, Sequence) or isinstance(value, str | bytes):
            raise ConfigError(f"{where}: expected a list/tuple, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}: {value!r}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args, strict=True))
    if origin is not None and issubclass(origin, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a dict, got {value!r}")
        return dict(value)
    return _coerce_scalar(value, hint, where)


def _coerce_scalar(value: Any, hint: Any, where: str) -> Any:
    if hint is bool:
        if isinstance(value, bool) or value in (0, 1):
            return bool(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def parse_override(text: str) -> tuple[str, Any]:
    """``"lr=0.05"`` -> ``("lr", 0.05)``; values are Python literals, bare words are strings."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise ConfigError(f"--set {text!r}: expected FIELD=VALUE")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return name.strip(), value


DEFAULT_OUTPUT = "work_dirs/insightface_lr"  # output folder of a run without a config file or `output`


def load_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Read a config file (or none: defaults) and apply command-line overrides on top."""
    fields = read_config_file(path) if path is not None else {"output": DEFAULT_OUTPUT}
    source = str(path) if path is not None else "defaults"
    fields.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return build_config(fields, source=source)
