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
from insightface_lr.errors import ConfigError
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
    assert term.seen.student_logits is None and term.seen.student_hr is None and term.seen.teacher_memory is None
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


# --- the teacher memory (``uses_teacher_memory``): K cache rows per step, only for a term that asks ------------
N = 12  # faces in the fake training set of the cache below


def cached_outputs(tmp_path) -> TeacherOutputs:
    """A real cache folder ``[N, 2, D]`` whose row (i, flip) holds the values 100 i + 10 flip + d: a memory row
    says which face and mirror it is."""
    import numpy as np

    from insightface_lr.train.teacher_cache import TeacherCache

    values = np.arange(N)[:, None, None] * 100.0 + np.arange(2)[None, :, None] * 10 + np.arange(D)[None, None, :]
    np.save(tmp_path / "embeddings.npy", values.astype(np.float32))
    (tmp_path / "meta.json").write_text(json.dumps({"num_images": N, "dtype": "float32"}))
    return TeacherOutputs(FixedTeacher(), TeacherCache(tmp_path))


def memory_rows(memory: torch.Tensor) -> list[tuple[int, int]]:
    """Decode (face, flip) from each memory row of :func:`cached_outputs`, checking the row is a whole cache row."""
    face, flip = (memory[:, 0] // 100).long(), ((memory[:, 0] % 100) // 10).long()
    expected = face[:, None] * 100.0 + flip[:, None] * 10 + torch.arange(D)
    torch.testing.assert_close(memory, expected)
    return list(zip(face.tolist(), flip.tolist(), strict=True))


def memory_step(tmp_path, k: int) -> tuple[DistillStep, Recorder]:
    term = Recorder()
    term.uses_teacher_memory = k
    step, _, _ = make_step(term)
    step.teacher = cached_outputs(tmp_path)
    return step, term


def test_teacher_memory_is_k_distinct_cache_rows_only_for_a_term_that_asks(tmp_path) -> None:
    step, term = memory_step(tmp_path, 5)
    assert step.distiller.uses_teacher_memory == 5
    step(*batch(), epoch=0, step=0)
    rows = memory_rows(term.seen.teacher_memory)
    assert len(rows) == 5 and len({face for face, _ in rows}) == 5 and all(0 <= f < N for f, _ in rows)
    assert term.seen.teacher_memory.dtype == torch.float32 and not term.seen.teacher_memory.requires_grad
    plain, _ = memory_step(tmp_path, 0)
    plain(*batch(), epoch=0, step=0)
    assert plain.distiller.terms["rec"].seen.teacher_memory is None


def test_teacher_memory_is_a_function_of_seed_epoch_step_and_rank(tmp_path) -> None:
    step, term = memory_step(tmp_path, 6)

    def draw(epoch: int, at: int) -> list[tuple[int, int]]:
        step(*batch(), epoch=epoch, step=at)
        return memory_rows(term.seen.teacher_memory)

    first = draw(0, 3)
    assert draw(0, 0) != first and draw(1, 3) != first  # every step and epoch draws anew
    assert draw(0, 3) == first  # ... and the same (epoch, step) again draws the same rows: exact resume
    fresh, fresh_term = memory_step(tmp_path, 6)  # a new process state: nothing is carried between steps
    torch.manual_seed(123)  # nor read from the global RNG
    fresh(*batch(), epoch=0, step=3)
    assert memory_rows(fresh_term.seen.teacher_memory) == first
    step.seed = 2
    assert draw(0, 3) != first
    step.seed, step.ctx = 1, DistContext(rank=1, world_size=1)  # another rank's rows (DDP: each draws its own)
    assert draw(0, 3) != first


def test_teacher_memory_wider_than_the_set_is_the_whole_set(tmp_path) -> None:
    step, term = memory_step(tmp_path, 50)
    step(*batch(), epoch=0, step=0)
    assert sorted(face for face, _ in memory_rows(term.seen.teacher_memory)) == list(range(N))


def test_teacher_memory_without_a_cache_names_the_field() -> None:
    term = Recorder()
    term.uses_teacher_memory = 4
    step, _, _ = make_step(term)  # the live teacher, no cache
    with pytest.raises(ConfigError, match="field `teacher_cache`"):
        step(*batch(), epoch=0, step=0)
