"""DistillStep: the one place that builds DistillInputs; optional inputs only for the terms that ask.

The end-to-end test adds a distillation term that needs the student's logits in a single plugin file and
trains it through the real command line, with no edit to the trainer or the step.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from helpers_train import run_cli, tiny_args
from torch import nn

from insightface_lr.data.degrade import DegradeConfig, degrade_to_size
from insightface_lr.losses.baselines import HintonKDLoss
from insightface_lr.losses.distiller import DistillDims, Distiller, DistillInputs, DistillTerm
from insightface_lr.losses.margin import build_head_from_margin_list
from insightface_lr.losses.partial_fc import ShardedMarginClassifier
from insightface_lr.train.distributed import DistContext
from insightface_lr.train.step import DistillStep
from insightface_lr.train.teacher_outputs import TeacherOutputs

# A whole new method in one file: registered from a plugin module, reads the student's logits.
LOGIT_TERM_SOURCE = '''
import torch
from dataclasses import dataclass
from insightface_lr.losses.distiller import DistillTerm
from insightface_lr.registry import register_distill_term


@dataclass(frozen=True)
class LogitKDConfig:
    tau: float = 2.0


@register_distill_term("logit_kd_test")
class LogitKD(DistillTerm):
    """KL(teacher-centre logits || the student's own classifier logits): needs both."""

    name = "logit_kd_test"
    config_class = LogitKDConfig
    requires_teacher_centres = True
    uses_student_logits = True

    def forward(self, inputs):
        logits = inputs.student_logits
        assert logits is not None and logits.shape == (inputs.labels.numel(), self.dims.num_classes)
        assert logits.requires_grad
        teacher = torch.nn.functional.normalize(inputs.teacher) @ self.centres(inputs).T
        tau = self.config.tau
        kl = torch.nn.functional.kl_div((logits * 16 / tau).log_softmax(1), (teacher * 16 / tau).log_softmax(1),
                                        log_target=True, reduction="batchmean")
        return {"loss": kl, "kl": kl.detach(), "classes": torch.tensor(float(logits.shape[1]))}
'''


def test_new_term_needing_student_logits_trains_from_a_plugin(tiny_data, plugin_dir, tiny_teacher,
                                                              tmp_path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "logit_term_plugin.py").write_text(LOGIT_TERM_SOURCE)
    (plugins / "tiny_plugin_backbone.py").write_text((plugin_dir / "tiny_plugin_backbone.py").read_text())
    out = tmp_path / "logit_kd"
    args = tiny_args(tiny_data, out, "--distill", "logit_kd_test", "--teacher", str(tiny_teacher),
                     "--max-steps", "3")
    args[args.index("plugins=['tiny_plugin_backbone']")] = "plugins=['tiny_plugin_backbone', 'logit_term_plugin']"
    result = run_cli(args, plugins)
    assert result.returncode == 0, result.stderr
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2, 3]
    assert all(s["logit_kd_test/classes"] == 6 for s in steps)  # tiny_data has 6 training identities
    assert all(s["logit_kd_test/kl"] > 0 for s in steps)
    assert steps[0]["loss"] == pytest.approx(steps[0]["margin"] + steps[0]["logit_kd_test/loss"], rel=1e-5)
    assert (out / "student.pt").is_file()


# --- the step in process, against an independent computation ------------------------------------------
D, C, B, S = 8, 5, 4, 16


class Recorder(nn.Module):
    """A term that keeps the inputs it was given; its class flags say which optional inputs it asks for."""

    uses_student_logits = False
    uses_student_hr = False

    def forward(self, inputs: DistillInputs) -> dict[str, torch.Tensor]:
        self.seen = inputs
        return {"loss": inputs.student.pow(2).mean()}


class CountingStudent(nn.Module):
    input_size, embedding_size = S, D

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * S * S, D)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.fc(x.flatten(1))


class FixedTeacher(nn.Module):
    embedding_size = D

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)).repeat(1, 3)[:, :D]


def make_step(term: nn.Module) -> tuple[DistillStep, CountingStudent, ShardedMarginClassifier]:
    torch.manual_seed(0)
    student = CountingStudent()
    head = build_head_from_margin_list((1.0, 0.3, 0.0))
    classifier = ShardedMarginClassifier(D, C, head, rank=0, world_size=1)
    step = DistillStep(student, student, classifier, Distiller({"rec": term}), TeacherOutputs(FixedTeacher()),
                       DegradeConfig(sizes=(8,), output_size=S, seed=0), DistContext(), seed=1)
    return step, student, classifier


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (B, 3, 112, 112), generator=gen, dtype=torch.uint8)
    return images, torch.tensor([0, 4, 2, 4]), torch.arange(B)


def test_optional_inputs_are_not_computed_unless_a_term_asks() -> None:
    term = Recorder()
    step, student, _ = make_step(term)
    out = step(*batch(), epoch=0, step=0)
    assert student.calls == 1  # no second forward on the HR view
    assert term.seen.student_logits is None and term.seen.student_hr is None
    assert set(out) == {"margin", "rec/loss", "loss"} and out["loss"].requires_grad


def test_student_logits_are_the_classifier_cosines_with_gradient() -> None:
    term = Recorder()
    term.uses_student_logits = True
    step, student, classifier = make_step(term)
    step(*batch(), epoch=0, step=0)
    seen = term.seen
    expected = F.normalize(seen.student.detach()) @ F.normalize(classifier.weight.detach()).T
    torch.testing.assert_close(seen.student_logits.detach(), expected)
    assert seen.student_logits.shape == (B, C) and student.calls == 1
    seen.student_logits.sum().backward()
    assert classifier.weight.grad is not None and student.fc.weight.grad is not None


def test_student_hr_is_the_student_on_the_resized_hr_view() -> None:
    term = Recorder()
    term.uses_student_hr = True
    step, student, _ = make_step(term)
    images, labels, indices = batch()
    step(images, labels, indices, epoch=0, step=0)
    assert student.calls == 2
    from insightface_lr.train.views import flip_mask

    flipped = flip_mask(indices, 1, 0)
    hr = torch.where(flipped[:, None, None, None], images.flip(-1), images)
    x = (degrade_to_size(hr, 112, output_size=S).float() / 255 - 0.5) / 0.5  # resized as in evaluation
    torch.testing.assert_close(term.seen.student_hr, student(x), atol=1e-5, rtol=1e-5)


def test_distiller_aggregates_the_term_flags() -> None:
    class AsksLogits(Recorder):
        uses_student_logits = True

    plain = Distiller({"a": Recorder(), "b": nn.Identity()})  # a term without the flags asks for nothing
    assert not plain.uses_student_logits and not plain.uses_student_hr
    asks = Distiller({"a": Recorder(), "b": AsksLogits()})
    assert asks.uses_student_logits and not asks.uses_student_hr
    assert not DistillTerm.uses_student_logits and not DistillTerm.uses_student_hr


def test_kd_on_the_students_own_logits_trains_through_the_trainer(tiny_data, plugin_dir, tiny_teacher,
                                                                   tmp_path) -> None:
    """``{"kd": {"logits": "student"}}`` asks the step for the student's classifier cosines (Hinton's form);
    the default kd does not, and the two train differently from the first step."""
    losses = {}
    for logits in ("student", "teacher"):
        out = tmp_path / f"kd_{logits}"
        args = tiny_args(tiny_data, out, "--distill", "kd", "--teacher", str(tiny_teacher), "--max-steps", "3",
                         "--set", f"loss={{'kd': {{'logits': '{logits}'}}}}")
        result = run_cli(args, plugin_dir)
        assert result.returncode == 0, result.stderr
        steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert [s["step"] for s in steps] == [1, 2, 3] and all(s["kd/kd"] > 0 for s in steps)
        losses[logits] = steps[0]["kd/kd"]
    assert losses["student"] != pytest.approx(losses["teacher"], rel=1e-6)
    assert make_step(HintonKDLoss(DistillDims(D, D, C), logits="student"))[0].distiller.uses_student_logits
    assert not make_step(HintonKDLoss(DistillDims(D, D, C)))[0].distiller.uses_student_logits
