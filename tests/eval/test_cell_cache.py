"""An interrupted evaluation keeps its finished cells and a re-run continues from them, with the numbers of an
uninterrupted run; any change of weights, faces or settings recomputes."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_report import make_pair_bin, make_student

from insightface_lr import cli
from insightface_lr.eval import report
from insightface_lr.eval.cell_cache import CellCache, array_digest
from insightface_lr.eval.model_loading import load_eval_model
from insightface_lr.eval.report import run_sweep

SIZES = (112, 12, 8)  # three distinct model inputs for a 16-px student (no "same input" copies)


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cache_assets")
    bin_path = make_pair_bin(root / "tiny.bin", identities=10)
    return {"bin": bin_path, "other_bin": make_pair_bin(root / "other.bin", identities=10, seed=5),
            "student": make_student(root / "tiny_student.pt", bin_path)}


class Interrupting:
    """The model function, raising KeyboardInterrupt (what Ctrl-C raises) at its ``at``-th call."""

    def __init__(self, fn, at: int) -> None:
        self.fn, self.at, self.calls, self.checksum = fn, at, 0, fn.checksum

    def __call__(self, x):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.fn(x)


def _numbers(results: dict) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in results["records"]]


def test_interrupted_sweep_continues_from_its_finished_cells(assets, tmp_path) -> None:
    model = load_eval_model(assets["student"], name="tiny")
    reference = run_sweep({"tiny": model}, [assets["bin"]], sizes=SIZES, facebn_modes=("off",), batch_size=16)
    counting = Interrupting(model.fn, at=10**9)
    run_sweep({"tiny": replace(model, fn=counting)}, [assets["bin"]], sizes=SIZES, facebn_modes=("off",),
              batch_size=16)
    per_cell = counting.calls // len(SIZES)
    cache = CellCache(tmp_path / "cells")
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C during the third cell
        run_sweep({"tiny": replace(model, fn=Interrupting(model.fn, at=2 * per_cell + 1))}, [assets["bin"]],
                  sizes=SIZES, facebn_modes=("off",), batch_size=16, cache=cache)
    assert len(list((tmp_path / "cells").glob("*.json"))) == 2
    again = CellCache(tmp_path / "cells")
    rerun = Interrupting(model.fn, at=10**9)
    results = run_sweep({"tiny": replace(model, fn=rerun)}, [assets["bin"]], sizes=SIZES, facebn_modes=("off",),
                        batch_size=16, cache=again)
    assert again.hits == 2 and rerun.calls == per_cell  # only the unfinished cell was computed
    assert _numbers(results) == _numbers(reference)


def test_other_faces_weights_or_settings_miss(assets, tmp_path) -> None:
    model = load_eval_model(assets["student"], name="tiny")
    run_sweep({"tiny": model}, [assets["bin"]], sizes=(8,), facebn_modes=("off",), batch_size=16,
              cache=CellCache(tmp_path / "cells"))
    for bins, batch_size, checksum in (([assets["other_bin"]], 16, None), ([assets["bin"]], 8, None),
                                       ([assets["bin"]], 16, "other weights")):
        cache = CellCache(tmp_path / "cells")
        changed = model if checksum is None else replace(model, fn=Interrupting(model.fn, at=10**9))
        if checksum is not None:
            changed.fn.checksum = checksum
        run_sweep({"tiny": changed}, bins, sizes=(8,), facebn_modes=("off",), batch_size=batch_size, cache=cache)
        assert cache.hits == 0, (bins, batch_size, checksum)
    same = CellCache(tmp_path / "cells")
    run_sweep({"renamed": model}, [assets["bin"]], sizes=(8,), facebn_modes=("off",), batch_size=16, cache=same)
    assert same.hits == 1  # the report name is not part of the numbers


def test_array_digest_sees_content_dtype_and_shape() -> None:
    a = np.arange(12, dtype=np.uint8)
    assert array_digest(a) == array_digest(a.copy())
    assert array_digest(a) != array_digest(a.reshape(3, 4))
    assert array_digest(a) != array_digest(a.astype(np.int16))
    b = a.copy()
    b[5] += 1
    assert array_digest(a) != array_digest(b)


def _eval(argv: list[str], capsys) -> tuple[int, str, str]:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = cli.main(argv)
    return rc, stdout.getvalue(), capsys.readouterr().err


def test_cli_interrupt_keeps_cells_and_rerun_reuses_then_removes_them(assets, tmp_path, monkeypatch,
                                                                      capsys) -> None:
    def argv(out: Path) -> list[str]:
        return ["eval", "--model", f"tiny={assets['student']}", "--bins", str(assets["bin"]), "--sizes", "112,12,8",
                "--facebn", "--out", str(out), "--batch-size", "16", "--device", "cpu", "--quiet", "--no-plots"]

    assert _eval(argv(tmp_path / "ref"), capsys)[0] == 0
    real, calls = report.evaluate_cell, []

    def interrupted_at_fourth(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(report, "evaluate_cell", interrupted_at_fourth)
    rc, _, err = _eval(argv(tmp_path / "out"), capsys)
    cells = tmp_path / "out" / "eval_cells"
    assert rc == 130 and err.count("\n") == 1 and "interrupted; finished cells are kept in" in err
    assert str(cells) in err and len(list(cells.glob("*.json"))) == 3
    assert not (tmp_path / "out" / "results.json").exists()
    monkeypatch.setattr(report, "evaluate_cell", real)
    rc, out, _ = _eval(argv(tmp_path / "out"), capsys)
    assert rc == 0 and "reused 3 finished cell(s)" in out and not cells.exists()
    done = json.loads((tmp_path / "out" / "results.json").read_text())
    assert _numbers(done) == _numbers(json.loads((tmp_path / "ref" / "results.json").read_text()))
