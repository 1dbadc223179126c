"""XQLFW from its release layout (facts from the XQLFW download page and readers of it, no code copied):
``xqlfw_pairs.txt`` in LFW's ``pairs.txt`` format (header ``folds pairs``, then ``name n1 n2`` and
``name1 n1 name2 n2`` lines) next to ``xqlfw_aligned_112/<Name>/<Name>_<NNNN>.jpg``; 10-fold accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from trees import file_vector, stub_model, write_face

from insightface_lr.errors import DataFormatError
from insightface_lr.eval.protocols.runner import ProtocolConfig, run_protocol
from insightface_lr.eval.protocols.xqlfw import read


def make_xqlfw(root: Path, rng: np.random.Generator, folds: int = 10, per_fold: int = 2) -> Path:
    """``folds`` x (``per_fold`` matched + ``per_fold`` mismatched) pairs of random people."""
    people = {f"Person_{k}": rng.uniform(-0.9, 0.9, 3) for k in range(12)}
    lines = [f"{folds}\t{per_fold}"]
    names = list(people)
    for _ in range(folds):
        for _ in range(per_fold):
            name = names[rng.integers(len(names))]
            lines.append(f"{name}\t1\t2")
        for _ in range(per_fold):
            a, b = rng.choice(len(names), 2, replace=False)
            lines.append(f"{names[a]}\t{rng.integers(1, 3)}\t{names[b]}\t{rng.integers(1, 3)}")
    for name, vector in people.items():
        for n in (1, 2):  # two images per person, the second one noisier (cross quality)
            noisy = vector + rng.normal(0, 0.25 * n, 3)
            write_face(root / "xqlfw_aligned_112" / name / f"{name}_{n:04d}.jpg", noisy, size=(112, 112))
    (root / "xqlfw_pairs.txt").write_text("\n".join(lines) + "\n")
    return root


def plain_10_fold_accuracy(dist: list[float], same: list[bool], folds: int = 10) -> float:
    """Plain loop: per fold, the threshold of 0, 0.01, ..., 3.99 most accurate on the other folds (first one on
    ties, predicting 'same' when dist < threshold) applied to the fold; mean over folds."""
    size = len(dist) // folds
    fold_of = [i // size for i in range(len(dist))]
    accuracies = []
    for f in range(folds):
        train = [i for i in range(len(dist)) if fold_of[i] != f]
        test = [i for i in range(len(dist)) if fold_of[i] == f]
        best_t, best_acc = 0.0, -1.0
        for k in range(400):
            t = k * 0.01
            acc = sum((dist[i] < t) == same[i] for i in train) / len(train)
            if acc > best_acc:
                best_t, best_acc = t, acc
        accuracies.append(sum((dist[i] < best_t) == same[i] for i in test) / len(test))
    return sum(accuracies) / folds


def test_accuracy_equals_plain_loop(tmp_path: Path) -> None:
    root = make_xqlfw(tmp_path / "xqlfw", np.random.default_rng(7))
    (record,) = run_protocol({"stub": stub_model()}, "xqlfw", root, tmp_path / "cache",
                             ProtocolConfig(batch_size=8, workers=1))["records"]
    bench = read(root)
    lines = (root / "xqlfw_pairs.txt").read_text().split("\n")[1:-1]
    dist, same = [], []
    for line in lines:
        f = line.split("\t")
        first = (f[0], f[1])
        second = (f[0], f[2]) if len(f) == 3 else (f[2], f[3])
        va, vb = (file_vector(root / "xqlfw_aligned_112" / n / f"{n}_{int(k):04d}.jpg") for n, k in (first, second))
        va, vb = va / np.linalg.norm(va), vb / np.linalg.norm(vb)
        dist.append(float(np.sum((va - vb) ** 2)))
        same.append(len(f) == 3)
    assert bench.info["pairs"] == 40 and bench.info["genuine_pairs"] == 20
    expected = plain_10_fold_accuracy(dist, same)
    assert 0.5 < expected < 1.0  # a case where the threshold choice matters
    assert record["metrics"]["accuracy"] == pytest.approx(expected)


def test_pairs_file_errors(tmp_path: Path) -> None:
    root = make_xqlfw(tmp_path / "xqlfw", np.random.default_rng(0))
    text = (root / "xqlfw_pairs.txt").read_text()
    (root / "xqlfw_pairs.txt").write_text(text + "Person_1\t1\n")
    with pytest.raises(DataFormatError, match="xqlfw_pairs.txt: line 41: expected 'name n1 n2'"):
        read(root)
    (root / "xqlfw_pairs.txt").write_text(text + "Nobody\t1\t2\n")
    with pytest.raises(DataFormatError, match=r"names 2 image\(s\) not in .*aligned_112, e.g. 'Nobody/Nobody_0001"):
        read(root)
