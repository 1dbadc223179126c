"""demo.comparisons: paired comparisons read off hand-made records (pair bits set by hand), and render_tables'
issue-30 renderers on a made-up summary whose differences are known by hand."""

from __future__ import annotations

import numpy as np

from insightface_lr.demo.comparisons import build_comparisons, find, interval_text
from insightface_lr.demo.summary import aggregate
from insightface_lr.eval.paired import pack_bits

PAIRS = 20  # 10 folds of 2 pairs: pair 2f genuine, 2f + 1 impostor
SAME = np.tile([True, False], 10)


def record(method: str, seed: int | None, size: int, correct: np.ndarray, facebn: str = "off") -> dict:
    accept = np.where(SAME, correct, ~correct)  # a genuine pair judged right is accepted
    return {"method": method, "seed": seed, "size": size, "facebn": facebn, "bin": "dev", "regime": "same",
            "status": "ok", "epochs": 0, "weight": None, "candidate": None, "lr_size": 16 if seed is not None else 112,
            "pairs": PAIRS, "pair_same": pack_bits(SAME), "pair_correct": pack_bits(correct),
            "pair_accept": pack_bits(accept), "accuracy_mean": float(correct.mean())}


def right_first(k: int) -> np.ndarray:
    """The first ``k`` pairs judged right, the rest wrong."""
    return np.arange(PAIRS) < k


SETTINGS = {"headline_size": 16, "facebn_mode": "calibrate@0.25", "student_eval_sizes": (112, 16),
            "eval_sizes": (112, 16), "methods": ("none", "kd", "aird"), "regimes": ("same",)}


def make_records() -> list[dict]:
    records = [record("teacher", None, z, right_first(20)) for z in (112, 16)]
    for seed in (0, 1):
        records += [record("none", seed, 16, right_first(10)), record("none", seed, 112, right_first(16))]
        records += [record("aird", seed, 16, right_first(20)), record("aird", seed, 112, right_first(18))]
        records += [record("kd", seed, 16, right_first(10)), record("kd", seed, 112, right_first(16))]
    return records


def test_differences_are_the_hand_computed_ones() -> None:
    comps = build_comparisons(make_records(), SETTINGS, "dev")
    # aird right on all 20 at 16 px, none on the first 10: +50 points, the same on both seeds
    at16 = find(comps, "aird", "none", "16 px")
    assert at16["difference"] == 50.0 and at16["per_seed"] == [50.0, 50.0] and at16["seeds"] == 2
    assert at16["verdict"] == "better" and at16["low"] > 0
    # over sizes: (16 px +50, 112 px: 18 vs 16 right = +10) / 2 = +30
    assert find(comps, "aird", "none", "over sizes")["difference"] == 30.0
    # VAL: genuine pairs only; aird accepts all 10, none the genuine among its first 10 right = 5 -> +50
    assert find(comps, "aird", "none", "16 px", "val")["difference"] == 50.0
    # kd is none's copy: exactly 0, a tie with a point interval
    tie = find(comps, "kd", "none", "16 px")
    assert (tie["difference"], tie["low"], tie["high"], tie["verdict"]) == (0.0, 0.0, 0.0, "tie")
    assert interval_text(tie) == "+0.0 [+0.0, +0.0] tie"
    # the teacher's one run pairs with every seed: none at 112 px is 16/20 vs 20/20 -> -20 points, shown worse
    hr = find(comps, "none", "teacher", "112 px")
    assert hr["difference"] == -20.0 and hr["seeds"] == 2 and hr["verdict"] == "worse"
    assert find(comps, "aird", "kd", "16 px")["difference"] == 50.0


def test_facebn_row_only_where_evaluated() -> None:
    records = make_records() + [record("aird", s, z, right_first(19), "calibrate@0.25") for s in (0, 1)
                                for z in (112, 16)]
    comps = build_comparisons(records, SETTINGS, "dev")
    assert find(comps, "aird + FaceBN", "none", "16 px")["difference"] == 45.0
    assert find(comps, "kd + FaceBN", "none", "16 px") is None


def test_records_without_pair_outcomes_give_no_comparison() -> None:
    old = [{k: v for k, v in r.items() if not k.startswith("pair")} for r in make_records()]
    assert build_comparisons(old, SETTINGS, "dev") == []


def summary_of(records: list[dict], margin: float) -> dict:
    settings = {**SETTINGS, "aird_margin": margin, "faces": "x", "test_bins": ("dev.bin",), "val_fraction": 0.2}
    return {"settings": settings, "aggregate": aggregate(records),
            "comparisons": build_comparisons(records, settings, "dev")}


def test_verdict_sentence_flips_with_the_bar(load_script) -> None:
    tables = load_script("render_tables")
    records = make_records()  # aird - none = +50 at 16 px on both seeds
    assert "+50.0 [+" in tables.pretrained_verdict(summary_of(records, 1.0))
    assert "(the bar, >= +1 with the interval above 0, holds)" in tables.pretrained_verdict(summary_of(records, 1.0))
    assert "does NOT hold" in tables.pretrained_verdict(summary_of(records, 60.0))  # +50 < the margin 60
    # aird made equal to none: a tie, the bar does not hold, and aird is not among the shown methods
    tied = [r if r["method"] != "aird" else record("aird", r["seed"], r["size"], right_first(10 if r["size"] == 16
                                                                                            else 16))
            for r in records]
    text = tables.pretrained_verdict(summary_of(tied, 1.0))
    assert "`aird` - `none` +0.0 [+0.0, +0.0] tie" in text and "does NOT hold" in text
    assert "in accuracy at 16 px: none of them." in text
    # none right on 10 of 20 at 16 px, the teacher on all 20 at 112 px
    assert text.endswith("The plain fine-tune reaches 50.0 at 16 px, 50.0 points below the teacher's own 100.0 "
                         "at 112 px.\n")


def test_paired_and_sizes_tables(load_script) -> None:
    tables = load_script("render_tables")
    summary = summary_of(make_records(), 1.0)
    paired = tables.pretrained_paired(summary)
    assert "| aird - none | 2 | +50.0 [" in paired and "| kd - none | 2 | +0.0 [+0.0, +0.0] tie |" in paired
    sizes = tables.pretrained_sizes(summary)
    # none: 80 % at 112 px (16 of 20), 50 % at 16 px; mean 65; 112 px - teacher (100 %) = -20, shown worse
    assert "| none | 80.0 | 50.0 | 65.0 | -20.0 [" in sizes and "**worse** |" in sizes


def test_time_sentence_splits_idle_shared_and_unlogged(load_script) -> None:
    tables = load_script("render_tables")
    hardware = {"cpu_count": 2, "cpu": "Intel", "torch_threads": 1, "torch": "2.13.0"}
    invocations = [{"started": None, "seconds": 3600.0, "load_average_at_start": None},
                   {"started": "t", "seconds": 1800.0, "load_average_at_start": 0.1, "load_average_max": 5.0},
                   {"started": "t", "seconds": 7200.0, "load_average_at_start": 0.2, "load_average_max": 2.4}]
    run = {"wall_total_s": 12600.0, "wall_time_s": 7200.0, "jobs": 2, "hardware": hardware,
           "invocations": invocations}
    text = tables.pretrained_time({"run": run})
    assert "**3.50 h** wall (3 invocation(s)" in text
    assert "2.00 h of it alone on the box, 0.50 h beside other work (load average above 3), 1.00 h with the load" \
        in text
    invocations[0]["beside_other_work"] = True  # known from the session's log though its load was not recorded
    text = tables.pretrained_time({"run": run})
    assert "1.50 h beside other work (load average above 3), 0.00 h with the load" in text


def test_a_small_native_student_is_compared_with_the_teacher_as_it_is() -> None:
    """bridge2 (issue 32) against the teacher at 16 px: 15/20 vs the teacher's 20/20 = -25 points on each seed."""
    records = make_records() + [record("bridge2", seed, z, right_first(15)) for seed in (0, 1) for z in (112, 16)]
    comps = build_comparisons(records, {**SETTINGS, "methods": ("none", "kd", "aird", "bridge2")}, "dev")
    small = find(comps, "bridge2", "teacher", "16 px")
    assert small["difference"] == -25.0 and small["verdict"] == "worse" and small["seeds"] == 2
    assert find(comps, "bridge2", "none", "16 px")["difference"] == 25.0  # none is right on its first 10
    assert find(comps, "aird", "teacher", "16 px") is None  # copies of the teacher are compared with none


def test_small_student_sentence(load_script) -> None:
    tables = load_script("render_tables")
    records = make_records() + [record("bridge2", seed, z, right_first(15)) for seed in (0, 1) for z in (112, 16)]
    summary = summary_of(records, 1.0)
    assert tables.pretrained_small(summary).startswith("No two-step tiny student")  # not among the methods
    summary["settings"]["methods"] = ("none", "kd", "aird", "bridge2")
    summary["comparisons"] = build_comparisons(records, summary["settings"], "dev")
    text = tables.pretrained_small(summary)
    assert "over 2 seeds: 75.0 ± 0.0; minus the teacher as it is -25.0 [" in text and "] **worse**;" in text
    assert text.endswith("is not reached.\n")


def test_facebn_on_the_teacher_alone() -> None:
    """The teacher's one run with FaceBN against without: 16 px 20/20 vs 12/20 = +40 points, one 'seed'."""
    records = make_records()
    records = [r if r["method"] != "teacher" or r["size"] != 16 else record("teacher", None, 16, right_first(12))
               for r in records] + [record("teacher", None, z, right_first(20), "calibrate@0.25") for z in (112, 16)]
    found = find(build_comparisons(records, SETTINGS, "dev"), "teacher + FaceBN", "teacher", "16 px")
    assert found["difference"] == 40.0 and found["seeds"] == 1 and found["verdict"] == "better"
    assert find(build_comparisons(make_records(), SETTINGS, "dev"), "teacher + FaceBN", "teacher", "16 px") is None
