"""SCface (Grgic et al., 2011): high-quality mugshot gallery vs surveillance-camera probes at three distances.

Official layout of the SCface database (as distributed, and as e.g. bob.db.scface reads it):

* ``mugshot_frontal_cropped_all/<sid>_frontal.JPG``: one frontal mugshot per subject (``sid`` = 001..130);
* ``surveillance_cameras_distance_<d>/<camera folder>/<sid>_cam<c>_<d>.jpg`` for distance d = 1 (4.20 m,
  the smallest faces), 2 (2.60 m) and 3 (1.00 m) and cameras c; cameras 1-5 are the visible-light ones used
  by the usual protocol (the IR cameras 6-7 are left out unless ``cameras`` says otherwise).

The subject of every image is the number its file name starts with; a probe file whose name disagrees with its
distance folder, or whose subject has no mugshot, is refused. Metric: closed-set rank-1 (and rank-5) of the
probes of each distance against all mugshots. SCface ships no landmarks: images are used as found (e.g. the
face crops most papers make), resized to the model input; FaceBN and LR cells act on the surveillance probes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from ...errors import DataFormatError
from .base import Benchmark, FaceSet, Protocol, Scores, joined, list_images
from .ranking import probe_stats

DISTANCES = (1, 2, 3)
VISIBLE_CAMERAS = (1, 2, 3, 4, 5)
_MUGSHOT = re.compile(r"^(\d+)_frontal\.(jpe?g|png)$", re.IGNORECASE)
_PROBE = re.compile(r"^(\d+)_cam(\d+)_(\d+)\.(jpe?g|png)$", re.IGNORECASE)


def _parse(names: Sequence[str], pattern: re.Pattern, folder: Path, expected: str) -> list[re.Match]:
    matches = [pattern.match(Path(n).name) for n in names]
    bad = [n for n, m in zip(names, matches, strict=True) if m is None]
    if bad:
        raise DataFormatError(f"{folder / bad[0]}: file name is not {expected}")
    return matches  # type: ignore[return-value]


def read(root: Path, cameras: Sequence[int] = VISIBLE_CAMERAS) -> Benchmark:
    root = Path(root)
    mug_dir = root / "mugshot_frontal_cropped_all"
    mug_names = list_images(mug_dir, "SCface's frontal mugshots <sid>_frontal.JPG")
    mug_ids = np.array([int(m.group(1)) for m in _parse(mug_names, _MUGSHOT, mug_dir, "<sid>_frontal.JPG")])
    sets = [FaceSet("mugshot", joined(mug_dir, mug_names), probe_side=False)]
    labels: dict[str, np.ndarray] = {"mugshot": mug_ids}
    for d in DISTANCES:
        folder = root / f"surveillance_cameras_distance_{d}"
        names = list_images(folder, f"camera sub-folders of <sid>_cam<c>_{d}.jpg images", recursive=True)
        matches = _parse(names, _PROBE, folder, f"<sid>_cam<c>_{d}.jpg")
        wrong = [n for n, m in zip(names, matches, strict=True) if int(m.group(3)) != d]
        if wrong:
            raise DataFormatError(f"{folder / wrong[0]}: names distance {wrong[0].rsplit('_', 1)[-1][0]} but lies in "
                                  f"{folder.name} (expected <sid>_cam<c>_{d}.jpg)")
        keep = [i for i, m in enumerate(matches) if int(m.group(2)) in cameras]
        if not keep:
            raise DataFormatError(f"{folder}: holds no image of cameras {list(cameras)} "
                                  f"(expected <sid>_cam<c>_{d}.jpg)")
        ids = np.array([int(matches[i].group(1)) for i in keep], dtype=np.int64)
        orphan = sorted(set(ids.tolist()) - set(mug_ids.tolist()))
        if orphan:
            raise DataFormatError(f"{folder}: subject {orphan[0]:03d} has surveillance images but no mugshot "
                                  f"in {mug_dir}")
        sets.append(FaceSet(f"d{d}", joined(folder, [names[i] for i in keep]), probe_side=True))
        labels[f"d{d}"] = ids
    info = {"subjects": len(mug_ids), "cameras": list(cameras),
            **{f"d{d}_probes": len(labels[f"d{d}"]) for d in DISTANCES}}
    return Benchmark("scface", root, tuple(sets), labels, info)


def score(bench: Benchmark, emb: Mapping[str, np.ndarray]) -> Scores:
    metrics, curves = {}, {}
    for d in DISTANCES:
        stats = probe_stats(emb[f"d{d}"], bench.labels[f"d{d}"], emb["mugshot"], bench.labels["mugshot"])
        cmc = stats.cmc((1, 5))
        metrics[f"d{d}_rank_1"], metrics[f"d{d}_rank_5"] = cmc[1], cmc[5]
        curves[f"distance {d}"] = stats.cmc_curve(min(20, len(emb["mugshot"])))
    return Scores(metrics, {"cmc": curves})


PROTOCOL = Protocol(
    "scface", "SCface mugshot gallery vs surveillance probes at d1/d2/d3 (rank-1)", partial(read), score,
    "mugshot_frontal_cropped_all/<sid>_frontal.JPG, surveillance_cameras_distance_{1,2,3}/cam*/<sid>_cam<c>_<d>.jpg")
