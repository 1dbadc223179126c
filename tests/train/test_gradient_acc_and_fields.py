"""``gradient_acc`` accumulates micro-batches into one optimiser step (as arcface_torch does), and the
arcface_torch fields we cannot honour are refused instead of silently ignored."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from insightface_lr.errors import ConfigError
from insightface_lr.train.config import build_config
from insightface_lr.train.trainer import Trainer


def tiny_fields(data: Path, out: Path, **extra) -> dict:
    return {"rec": str(data), "output": str(out), "network": "tiny_mlp_test", "embedding_size": 16,
            "student_input_size": 16, "lr_sizes": [16], "num_workers": 0, "verbose": 0, "frequent": 1,
            "plugins": ["tiny_plugin_backbone"], "margin_list": (1.0, 0.3, 0.0), "lr": 0.5, "device": "cpu",
            **extra}


@pytest.fixture
def on_path(plugin_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))


def trained(fields: dict) -> Trainer:
    trainer = Trainer(build_config(fields), progress=False)
    trainer.fit()
    return trainer


@pytest.mark.parametrize("distill", ["none", "feat"])
def test_gradient_acc_4_equals_one_step_with_4x_batch(tiny_data, tiny_teacher, tmp_path, on_path, distill):
    teacher = {"teacher": str(tiny_teacher)} if distill != "none" else {}
    common = {"distill": distill, "max_steps": 2, **teacher}
    big = trained(tiny_fields(tiny_data, tmp_path / "big", batch_size=8, **common))
    acc = trained(tiny_fields(tiny_data, tmp_path / "acc", batch_size=2, gradient_acc=4, **common))
    assert big.step == acc.step == 2 and acc.scheduler.last_epoch == 2  # optimiser steps
    assert acc.steps_per_epoch == big.steps_per_epoch
    initial = Trainer(build_config(tiny_fields(tiny_data, tmp_path / "init", batch_size=8, **common)),
                      progress=False).student.state_dict()
    for key, value in big.student.state_dict().items():
        assert not torch.allclose(value, initial[key]), f"{key} did not train"
        assert torch.allclose(value, acc.student.state_dict()[key], atol=1e-6, rtol=0), key
    # the head uses the centres' directions (cosine logits); their norms grow to ~1e2 from 0.01 in two steps
    # (the gradient scales with s / |w|), so the raw values agree to float32 precision relative to 1e2
    centres = [torch.nn.functional.normalize(t.classifier.weight.detach(), dim=1) for t in (big, acc)]
    assert torch.allclose(*centres, atol=1e-6, rtol=0)


def test_gradient_acc_larger_than_an_epoch_is_refused(tiny_data, tmp_path, on_path) -> None:
    with pytest.raises(ConfigError, match="field `gradient_acc`"):
        Trainer(build_config(tiny_fields(tiny_data, tmp_path / "x", batch_size=8, gradient_acc=50)), progress=False)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("max_steps", -1, "field `max_steps`: expected 0"),
    ("dali", True, "field `dali`: NVIDIA DALI"),
    ("interclass_filtering_threshold", 0.2, "field `interclass_filtering_threshold`"),
])
def test_fields_we_cannot_honour_are_refused(field, value, message) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config({field: value})
    build_config({field: type(value)(0)})  # the default is accepted (an unmodified arcface_torch config)


def test_num_image_must_match_the_data(tiny_data, tmp_path, on_path) -> None:
    with pytest.raises(ConfigError, match="field `num_image`: config says 5179510 but .* holds 36 images"):
        Trainer(build_config(tiny_fields(tiny_data, tmp_path / "x", batch_size=8, num_image=5179510)),
                progress=False)


def test_fp16_on_cpu_is_a_one_line_warning(tiny_data, tmp_path, on_path, capsys) -> None:
    Trainer(build_config(tiny_fields(tiny_data, tmp_path / "x", batch_size=8, fp16=True)), progress=False)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "field `fp16`" in lines[0] and "float32" in lines[0]
