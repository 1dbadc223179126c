"""Students that start from the teacher (``student_init``): a trainable copy, sized as the teacher, whose margin
head starts from the teacher's class centres; recorded in student.pt; resumed exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from insightface_lr.errors import ConfigError
from insightface_lr.models.student_file import load_student
from insightface_lr.models.teacher import FrozenModel, load_teacher
from insightface_lr.train.config import build_config
from insightface_lr.train.student_init import trainable_copy
from insightface_lr.train.trainer import Trainer


def fields(data: Path, out: Path, teacher: Path | None, **extra) -> dict:
    """A run whose config names another network and sizes than the teacher's: student_init must replace them."""
    return {"rec": str(data), "output": str(out), "network": "r18", "embedding_size": 512,
            "student_input_size": 16, "lr_sizes": [16], "num_workers": 0, "verbose": 0, "frequent": 1,
            "plugins": ["tiny_plugin_backbone"], "margin_list": (1.0, 0.3, 0.0), "lr": 0.05, "device": "cpu",
            "teacher": str(teacher) if teacher else None, "student_init": "teacher", "batch_size": 8, "seed": 3,
            "teacher_cache_dir": str(out.parent / "cache"), "teacher_cache_dtype": "float32", **extra}


@pytest.fixture
def on_path(plugin_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))


def reference_centres(data: Path, teacher: nn.Module) -> torch.Tensor:
    """Independent of the cache: each face's unit (original + mirrored) teacher embedding, summed per identity,
    normalised."""
    from insightface_lr.data.datasets import RecordDataset
    from insightface_lr.data.pixels import normalize_uint8

    dataset = RecordDataset(data / "train.rec")
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    labels = torch.tensor([dataset[i][1] for i in range(len(dataset))])
    x = normalize_uint8(images)
    fused = teacher(x) + teacher(torch.flip(x, dims=[3]))
    sums = torch.zeros(int(labels.max()) + 1, fused.shape[1]).index_add_(0, labels, nn.functional.normalize(fused))
    return nn.functional.normalize(sums, dim=1)


def test_student_starts_as_the_teacher_with_its_sizes_and_centres(tiny_data, tiny_teacher, tmp_path, on_path):
    trainer = Trainer(build_config(fields(tiny_data, tmp_path / "run", tiny_teacher, max_steps=2)), progress=False)
    teacher = load_teacher(tiny_teacher)
    assert (trainer.cfg.network, trainer.cfg.embedding_size, trainer.cfg.student_input_size) == ("tiny_mlp_test",
                                                                                                    16, 112)
    for key, value in teacher.model.state_dict().items():
        assert torch.equal(trainer.student.state_dict()[key], value), key
    assert all(p.requires_grad for p in trainer.student.parameters())
    centres = reference_centres(tiny_data, teacher)
    torch.testing.assert_close(trainer.classifier.weight.detach(), centres, atol=1e-5, rtol=0)
    path = trainer.fit()
    header = json.loads((tmp_path / "run" / "training.log").read_text().split("; config ", 1)[1].splitlines()[0])
    assert (header["network"], header["embedding_size"], header["student_input_size"]) == ("tiny_mlp_test", 16, 112)
    student, meta = load_student(path)
    assert (student.input_size, student.embedding_size) == (112, 16)
    assert meta["started_from"]["student_init"] == "teacher"
    assert meta["started_from"]["sha256"] == teacher.checksum and meta["started_from"]["source"] == str(tiny_teacher)
    moved = [k for k, v in student.state_dict().items() if not torch.equal(v, teacher.model.state_dict()[k])]
    assert moved, "the copy did not train"


def test_the_trainers_teacher_is_unchanged_by_training_its_copy(tiny_data, tiny_teacher, tmp_path, on_path) -> None:
    """The live teacher the trainer distils from (no cache) keeps its weights while the copy trains: a copy that
    shared tensors with it would move both, which comparing two fresh loads of the file cannot see."""
    cfg = fields(tiny_data, tmp_path / "run", tiny_teacher, max_steps=3, distill="kd", teacher_cache=False)
    trainer = Trainer(build_config(cfg), progress=False)
    teacher = trainer.step_fn.teacher.teacher
    assert teacher is not None and teacher.checksum == load_teacher(tiny_teacher).checksum
    before = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    student = trainer.student.state_dict()
    assert before.keys() == student.keys()
    assert all(torch.equal(student[k], v) for k, v in before.items()), "the student does not start as the teacher"
    trainer.fit()
    moved = [k for k, v in trainer.student.state_dict().items() if not torch.equal(v, before[k])]
    assert moved, "the copy did not train"
    assert all(torch.equal(teacher.model.state_dict()[k], v) for k, v in before.items()), "the teacher moved"


def test_a_plain_fine_tune_reads_no_teacher_embeddings(tiny_data, tiny_teacher, tmp_path, on_path) -> None:
    trainer = Trainer(build_config(fields(tiny_data, tmp_path / "run", tiny_teacher, max_steps=1)), progress=False)
    assert trainer.step_fn.teacher.teacher is None and trainer.step_fn.teacher.cache is None
    random_head = Trainer(build_config(fields(tiny_data, tmp_path / "r", tiny_teacher, max_steps=1,
                                              head_init="random")), progress=False)
    assert not torch.allclose(random_head.classifier.weight, trainer.classifier.weight)
    assert float(random_head.classifier.weight.detach().abs().max()) < 0.1  # the usual N(0, 0.01) draw


def test_resume_is_exact(tiny_data, tiny_teacher, tmp_path, on_path) -> None:
    straight = Trainer(build_config(fields(tiny_data, tmp_path / "a", tiny_teacher, max_steps=4, distill="aird",
                                           checkpoint_every=2)), progress=False)
    straight.fit()
    first = Trainer(build_config(fields(tiny_data, tmp_path / "b", tiny_teacher, max_steps=4, distill="aird",
                                        checkpoint_every=2)), progress=False)
    first.total_steps = 2
    first.fit()
    resumed = Trainer(build_config(fields(tiny_data, tmp_path / "b", tiny_teacher, max_steps=4, distill="aird",
                                          checkpoint_every=2, resume=True)), progress=False)
    assert resumed.step == 2
    resumed.fit()
    for key, value in straight.student.state_dict().items():
        assert torch.equal(value, resumed.student.state_dict()[key]), key


def test_student_init_from_an_mxnet_prefix_trains(tiny_data, tmp_path, on_path, monkeypatch) -> None:
    """The prefix (``.../model`` for model-symbol.json + model-0000.params) names no file, and still starts a run."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "models" / "mxnet"))
    from mxnet_symbols import SymbolBuilder

    sb = SymbolBuilder(seed=1)
    x = sb.conv("conv0", 0, 3, 4, 3, stride=(8, 8), pad=(1, 1))
    head = sb.bn("fc1", sb.fc("pre_fc1", sb.bn("bn0", x, 4, fix_gamma=False), 4 * 14 * 14, 16), 16, fix_gamma=True)
    prefix = sb.save(tmp_path / "mx", head)
    assert not prefix.exists()
    cfg = fields(tiny_data, tmp_path / "run", None, max_steps=2, student_init=str(prefix), distill="none",
                 head_init="random", batch_size=4)
    trainer = Trainer(build_config(cfg), progress=False)
    assert (trainer.cfg.network, trainer.cfg.embedding_size, trainer.cfg.student_input_size) == ("mxnet_graph", 16,
                                                                                                    112)
    start = {k: v.clone() for k, v in trainer.student.state_dict().items()}
    for key, name, _kind in trainer.student.param_map:  # the starting weights are the checkpoint's
        assert torch.equal(start[key], sb.weight(name)) or key in trainer.student.fixed_params, key
    student, meta = load_student(trainer.fit())
    assert meta["started_from"]["student_init"] == str(prefix)
    assert any(not torch.equal(v, start[k]) for k, v in student.state_dict().items())


def test_student_init_from_a_weights_path(tiny_data, tiny_teacher, tmp_path, on_path) -> None:
    cfg = fields(tiny_data, tmp_path / "run", tiny_teacher, max_steps=1, student_init=str(tiny_teacher),
                 distill="none", head_init="random")
    trainer = Trainer(build_config({k: v for k, v in cfg.items() if k != "teacher"}), progress=False)
    assert trainer.cfg.student_input_size == 112 and trainer.start.meta["student_init"] == str(tiny_teacher)


@pytest.mark.parametrize(("extra", "message"), [
    ({"student_init": "/no/such/model.pth"}, r"field `student_init`: /no/such/model.pth does not exist"),
    ({"distill": "none", "no_teacher": True}, r"field `teacher`: --student-init teacher needs a teacher"),
    ({"head_init": "centres"}, r"field `head_init`: expected 'auto', 'random' or 'teacher_centres'"),
])
def test_bad_student_init_is_refused(tiny_data, tiny_teacher, tmp_path, on_path, extra, message) -> None:
    teacher = None if extra.pop("no_teacher", False) else tiny_teacher
    with pytest.raises(ConfigError, match=message):
        Trainer(build_config(fields(tiny_data, tmp_path / "x", teacher, **extra)), progress=False)


class _FixedGamma(nn.Module):
    network = "fixed_gamma_test"

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(4)

    def fixed_parameters(self) -> list[str]:
        return ["bn.weight"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.flatten(1)[:, :4])


def test_fixed_parameters_stay_frozen_and_the_teacher_is_untouched() -> None:
    frozen = FrozenModel(_FixedGamma(), embedding_size=4, input_size=2)
    start = trainable_copy(frozen, "mem", "teacher")
    assert {n: p.requires_grad for n, p in start.module.named_parameters()} == {"bn.weight": False, "bn.bias": True}
    assert start.module.training and not frozen.training
    assert not any(p.requires_grad for p in frozen.parameters())


def test_an_onnx_teacher_is_refused(tmp_path) -> None:
    from insightface_lr.models.onnx_teacher import OnnxTeacher

    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 112 * 112, 8)).eval()
    path = tmp_path / "m.onnx"
    from insightface_lr.models.export import export_onnx

    export_onnx(model, path, input_size=112)
    with pytest.raises(ConfigError, match=r"m.onnx is an ONNX graph"):
        trainable_copy(OnnxTeacher(path, device="cpu"), str(path), "teacher")
    assert np.isfinite(OnnxTeacher(path, device="cpu")(torch.zeros(1, 3, 112, 112)).numpy()).all()
