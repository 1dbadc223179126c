"""Config adapter: arcface_torch files load unchanged; overrides; clear errors for bad fields."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from insightface_lr.errors import ConfigError
from insightface_lr.train.config import TrainConfig, build_config, load_config, parse_override

# arcface_torch's configs/base.py and configs/ms1mv3_r50.py, as a user has them
ARCFACE_CONFIGS = Path(__file__).parents[1] / "fixtures" / "arcface_torch_configs"
ARCFACE_JOB = (ARCFACE_CONFIGS / "ms1mv3_r50.py").read_text()


@pytest.fixture
def arcface_configs(tmp_path):
    for name in ("base.py", "ms1mv3_r50.py"):
        shutil.copy(ARCFACE_CONFIGS / name, tmp_path / name)
    return tmp_path / "ms1mv3_r50.py"


def test_unmodified_arcface_config_loads_over_base(arcface_configs) -> None:
    cfg = load_config(arcface_configs)
    assert isinstance(cfg, TrainConfig)
    assert cfg.network == "r50" and cfg.num_classes == 93431 and cfg.lr == 0.2 and cfg.fp16 is True
    assert cfg.val_targets == ("lfw", "cfp_fp", "agedb_30")
    assert cfg.seed == 2048 and cfg.optimizer == "sgd"  # from base.py
    assert cfg.output == "work_dirs/ms1mv3_r50"  # output None -> work_dirs/<name>, as arcface_torch does
    assert cfg.sample_rate == 1.0 and isinstance(cfg.sample_rate, float)


def test_command_line_overrides(arcface_configs) -> None:
    cfg = load_config(arcface_configs, {"distill": "aird", "teacher": "t.pth", "lr_sizes": [16, 12]})
    assert cfg.distill == "aird" and cfg.teacher == "t.pth" and cfg.lr_sizes == (16, 12)
    assert parse_override("lr=0.05") == ("lr", 0.05)
    assert parse_override("network=mbf") == ("network", "mbf")


def test_unknown_field_names_file_and_suggests(arcface_configs) -> None:
    arcface_configs.write_text(ARCFACE_JOB + "config.distil = 'aird'\n")
    expected = r"ms1mv3_r50.py: unknown field `distil` \(did you mean `distill`\?\)"
    with pytest.raises(ConfigError, match=expected):
        load_config(arcface_configs)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"batch_size": "big"}, r"field `batch_size`: expected int, got 'big'"),
        ({"lr": True}, r"field `lr`: expected float"),
        ({"margin_list": (1.0, 0.5)}, r"field `margin_list`: expected 3 values"),
        ({"lr_sizes": [200]}, r"LR size 200"),
        ({"margin_mode": "fast"}, r"margin_mode"),
        ({"batch_size": 0}, r"batch_size"),
    ],
)
def test_ill_typed_fields_are_clear_errors(fields, message) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config(fields, source="job.py")


def test_missing_file_and_broken_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.py")
    broken = tmp_path / "broken.py"
    broken.write_text("config = dict(\n")
    with pytest.raises(ConfigError, match="broken.py: failed to execute"):
        load_config(broken)
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(ConfigError, match="module-level `config`"):
        load_config(empty)


# a value of the right type but out of range: each would otherwise reach torch (a ValueError traceback from
# the optimizer or DataLoader) or train silently wrong (a negative clip norm flips every gradient)
OUT_OF_RANGE = {
    "lr": [-1.0, 0.0, float("nan")], "momentum": [-0.5, 1.5], "weight_decay": [-1e-4],
    "embedding_size": [0], "sample_rate": [0.0, 1.5], "warmup_epoch": [-1], "num_workers": [-1],
    "verbose": [-1], "frequent": [-1], "checkpoint_every": [-1], "max_steps": [-1], "num_classes": [-1],
    "num_image": [-5], "margin_weight": [-1.0], "clip_grad_norm": [0.0, -1.0], "gradient_acc": [0],
}


@pytest.mark.parametrize(("name", "value"), [(n, v) for n, vs in OUT_OF_RANGE.items() for v in vs])
def test_out_of_range_values_are_refused_naming_the_field(name: str, value) -> None:
    with pytest.raises(ConfigError, match=rf"field `{name}`: expected .*, got {value!r}"):
        build_config({name: value}, source="job.py")


def test_in_range_edge_values_are_accepted() -> None:
    cfg = build_config({"momentum": 0.0, "weight_decay": 0.0, "sample_rate": 1.0, "max_steps": 0,
                        "margin_weight": 0.0, "checkpoint_every": 0, "facebn": "calibrate",
                        "distill_weights": {"kd": 0.5, "aird": 2}})
    assert cfg.sample_rate == 1.0 and cfg.facebn == "calibrate"


@pytest.mark.parametrize(("fields", "message"), [
    ({"facebn": "bogus"}, r"field `facebn`: expected None or one of \('batch', 'online', 'calibrate'\)"),
    ({"distill_weights": {"kd": "x"}}, r"field `distill_weights`: weight of 'kd': expected a number >= 0"),
    ({"distill_weights": {"kd": -1.0}}, r"weight of 'kd': expected a number >= 0, got -1.0"),
])
def test_bad_facebn_and_weights(fields, message) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config(fields, source="job.py")


def test_no_config_file_gets_the_default_output() -> None:
    from insightface_lr.train.config import DEFAULT_OUTPUT

    assert load_config(None).output == DEFAULT_OUTPUT
