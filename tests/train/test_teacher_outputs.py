"""The teacher memory of ``bank``: distinct random rows per (seed, epoch, step, rank); a tiny training run with
``distill="bank"`` that draws from the cache, resumes bit-exactly, and refuses to run without the cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from insightface_lr.errors import ConfigError
from insightface_lr.train.config import build_config
from insightface_lr.train.teacher_outputs import draw_memory_rows, memory_generator
from insightface_lr.train.trainer import Trainer


@pytest.mark.parametrize(("n", "k"), [(10, 10), (10, 3), (1000, 7), (1000, 200), (5, 1), (1, 1)])
def test_draws_are_k_distinct_faces_in_range(n: int, k: int) -> None:
    """Both ways of drawing (a permutation when k is a large share of n, redrawn repeats when it is small)."""
    for step in range(20):
        indices, flipped = draw_memory_rows(n, k, memory_generator(0, 0, step, 0))
        assert indices.shape == flipped.shape == (k,) and flipped.dtype == torch.bool
        assert indices.dtype == torch.int64 and len(set(indices.tolist())) == k
        assert 0 <= int(indices.min()) and int(indices.max()) < n


def test_more_rows_than_faces_gives_every_face_once() -> None:
    indices, flipped = draw_memory_rows(6, 50, memory_generator(3, 1, 2, 0))
    assert sorted(indices.tolist()) == list(range(6)) and flipped.shape == (6,)


def test_draws_cover_the_set_uniformly_with_both_mirrors() -> None:
    counts, flips = torch.zeros(50), 0
    for step in range(400):  # 400 draws of 10 of 50 faces: each face ~80 times
        indices, flipped = draw_memory_rows(50, 10, memory_generator(7, 0, step, 0))
        counts[indices] += 1
        flips += int(flipped.sum())
    assert int(counts.min()) > 40 and int(counts.max()) < 130
    assert 1700 < flips < 2300  # of 4000 coins


def test_generator_depends_on_every_coordinate_only() -> None:
    def draw(*key: int) -> list[int]:
        return draw_memory_rows(10_000, 8, memory_generator(*key))[0].tolist()

    base = draw(1, 2, 3, 0)
    torch.manual_seed(99)  # the global RNG plays no part
    assert draw(1, 2, 3, 0) == base
    assert all(draw(*key) != base for key in [(2, 2, 3, 0), (1, 3, 3, 0), (1, 2, 4, 0), (1, 2, 3, 1)])


# --- a tiny training run ------------------------------------------------------------------------------------
def fields(data: Path, out: Path, teacher: Path, **extra) -> dict:
    return {"rec": str(data), "output": str(out), "network": "tiny_mlp_test", "embedding_size": 16,
            "student_input_size": 16, "lr_sizes": [16], "num_workers": 0, "verbose": 0, "frequent": 1,
            "plugins": ["tiny_plugin_backbone"], "margin_list": (1.0, 0.3, 0.0), "lr": 0.05, "device": "cpu",
            "teacher": str(teacher), "batch_size": 8, "seed": 3, "distill": "bank",
            "distill_config": {"bank": {"memory": 16}}, "teacher_cache_dir": str(out.parent / "cache"),
            "teacher_cache_dtype": "float32", **extra}


@pytest.fixture
def on_path(plugin_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))


def test_bank_trains_and_resumes_bit_exactly(tiny_data, tiny_teacher, tmp_path, on_path) -> None:
    straight = Trainer(build_config(fields(tiny_data, tmp_path / "a", tiny_teacher, max_steps=4,
                                           checkpoint_every=2)), progress=False)
    straight.fit()
    steps = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2, 3, 4]
    assert all(s["bank/memory"] == 16 and s["bank/relation"] > 0 and s["bank/instance"] > 0 for s in steps)
    assert steps[0]["loss"] == pytest.approx(steps[0]["margin"] + steps[0]["bank/loss"], rel=1e-5)
    first = Trainer(build_config(fields(tiny_data, tmp_path / "b", tiny_teacher, max_steps=4, checkpoint_every=2)),
                    progress=False)
    first.total_steps = 2
    first.fit()
    resumed = Trainer(build_config(fields(tiny_data, tmp_path / "b", tiny_teacher, max_steps=4, checkpoint_every=2,
                                          resume=True)), progress=False)
    assert resumed.step == 2
    resumed.fit()
    for key, value in straight.student.state_dict().items():
        assert torch.equal(value, resumed.student.state_dict()[key]), key
    for key, value in straight.distiller.state_dict().items():
        assert torch.equal(value, resumed.distiller.state_dict()[key]), key
    after = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [s["bank/relation"] for s in after] == [s["bank/relation"] for s in steps]  # the same memories


def test_default_memory_wider_than_the_set_uses_all_of_it(tiny_data, tiny_teacher, tmp_path, on_path,
                                                          capsys) -> None:
    cfg = fields(tiny_data, tmp_path / "run", tiny_teacher, max_steps=1, distill_config={})
    trainer = Trainer(build_config(cfg), progress=False)
    assert "teacher memory of 4096 rows is wider than the training set" in capsys.readouterr().err
    trainer.fit()
    (step,) = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert step["bank/memory"] == len(trainer.dataset) == 36


def test_bank_without_the_teacher_cache_is_a_config_error(tiny_data, tiny_teacher, tmp_path, on_path) -> None:
    cfg = fields(tiny_data, tmp_path / "run", tiny_teacher, max_steps=1, teacher_cache=False)
    with pytest.raises(ConfigError, match="field `teacher_cache`.*--distill bank.*16 cached teacher embeddings"):
        Trainer(build_config(cfg), progress=False)
