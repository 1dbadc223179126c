"""What every benchmark protocol shares: the face sets it embeds, the benchmark it reads, and the checks of
its official layout (folders, label files) that turn a wrong tree into one line naming the file.

A protocol module (``tinyface``, ``ijb``, ``scface``, ``survface``, ``xqlfw``) defines ``read(root) ->
Benchmark`` (layout and label files only; no pixel is decoded) and ``score(benchmark, embeddings) ->
Scores`` (the metrics from one embedding matrix per face set, flip-fused and unnormalised).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...data.image_codec import IMAGE_SUFFIXES
from ...errors import DataFormatError


@dataclass(frozen=True)
class FaceSet:
    """Images embedded together. ``probe_side`` sets see ``--sizes`` and FaceBN; the others (galleries,
    distractors) are embedded once, at their native resolution and without FaceBN, and shared by every cell.
    ``landmarks`` [N, 5, 2] (pixels of the stored image) align each face to 112 x 112 first."""

    name: str
    paths: tuple[str, ...]
    probe_side: bool
    landmarks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class Benchmark:
    """One benchmark read from its official layout: the face sets and the protocol's labels."""

    protocol: str
    root: Path
    sets: tuple[FaceSet, ...]
    labels: Mapping[str, Any]
    info: Mapping[str, Any] = field(default_factory=dict)

    def set(self, name: str) -> FaceSet:
        return next(s for s in self.sets if s.name == name)


@dataclass(frozen=True)
class Scores:
    """A cell's metrics (flat ``{name: float}``, in the table's column order) and its curves for the plots:
    ``{"cmc": {label: [rate at rank 1, 2, ...]}}`` and/or ``{"roc": {label: {"fpr": [...], "tpr": [...]}}}``."""

    metrics: dict[str, float]
    curves: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Protocol:
    """A registered benchmark: how to read it, how to score it, and what its table shows."""

    name: str
    title: str
    read: Callable[[Path], Benchmark]
    score: Callable[[Benchmark, Mapping[str, np.ndarray]], Scores]
    layout: str  # one line for the README/--help: the folders and label files expected under --root


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataFormatError(f"{path}: folder not found (expected {what})")
    return path


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found (expected {what})")
    return path


def list_images(folder: Path, what: str, recursive: bool = False) -> list[str]:
    """Sorted image file names (relative to ``folder``) of a folder that must hold at least one."""
    require_dir(folder, what)
    if recursive:
        names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                       if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file())
    else:
        names = sorted(e.name for e in os.scandir(folder)
                       if e.name.lower().endswith(IMAGE_SUFFIXES) and not e.name.startswith(".") and e.is_file())
    if not names:
        raise DataFormatError(f"{folder}: holds no image (expected {what})")
    return names


def read_mat(path: Path, keys: Sequence[str], what: str) -> dict[str, np.ndarray]:
    """The named variables of a MATLAB ``.mat`` file (scipy; v5 cell arrays and doubles, no pickle involved)."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    require_file(path, what)
    try:
        data = loadmat(str(path))
    except (MatReadError, ValueError, TypeError, OSError, NotImplementedError) as exc:
        raise DataFormatError(f"{path}: not a readable MATLAB .mat file ({exc}); expected {what}") from None
    missing = [k for k in keys if k not in data]
    if missing:
        found = sorted(k for k in data if not k.startswith("__"))
        raise DataFormatError(f"{path}: variable(s) {missing} missing (found {found}); expected {what}")
    return {k: data[k] for k in keys}


def mat_names(cells: np.ndarray, path: Path, key: str) -> list[str]:
    """File names of a MATLAB cell array of strings (any shape; each cell one char row)."""
    out = []
    for cell in np.asarray(cells, dtype=object).reshape(-1):
        value = np.asarray(cell).reshape(-1)
        if value.size != 1 or value.dtype.kind not in "US":
            raise DataFormatError(f"{path}: {key} must be a cell array of file names, found {value!r}")
        out.append(str(value[0]).strip())
    return out


def mat_name_ids(path: Path, names_key: str, ids_key: str, what: str) -> tuple[list[str], np.ndarray]:
    """TinyFace / QMUL-SurvFace ``*_img_ID_pairs.mat``: a cell array of names and a numeric id per name."""
    data = read_mat(path, (names_key, ids_key), what)
    names = mat_names(data[names_key], path, names_key)
    ids = np.asarray(data[ids_key], dtype=np.float64).reshape(-1)
    if ids.size != len(names) or not np.isfinite(ids).all() or (ids != np.round(ids)).any():
        raise DataFormatError(f"{path}: {ids_key} must hold one integer id per name of {names_key} "
                              f"({len(names)} names, {ids.size} ids)")
    return names, ids.astype(np.int64)


def check_same_names(listed: Sequence[str], found: Sequence[str], label_file: Path, folder: Path) -> None:
    """A label file must name exactly the images of its folder (no missing file, no unlisted image)."""
    listed_set, found_set = set(listed), set(found)
    if len(listed_set) != len(listed):
        raise DataFormatError(f"{label_file}: names an image twice (expected each image of {folder} once)")
    missing, extra = sorted(listed_set - found_set), sorted(found_set - listed_set)
    if missing:
        raise DataFormatError(f"{label_file}: names {len(missing)} image(s) not in {folder}, e.g. {missing[0]!r}")
    if extra:
        raise DataFormatError(f"{label_file}: does not list {len(extra)} image(s) of {folder}, e.g. {extra[0]!r}")


def joined(folder: Path, names: Sequence[str]) -> tuple[str, ...]:
    base = str(folder)
    return tuple(os.path.join(base, n) for n in names)
