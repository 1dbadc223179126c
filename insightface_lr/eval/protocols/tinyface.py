"""TinyFace (Cheng et al., ACCV 2018): closed-set 1:N identification on native low-resolution faces.

Official layout, as the TinyFace release ships it and as AdaFace's ``validation_lq/validate_tinyface.py``
reads it (``<root>/Testing_Set/...``; a ``<root>/tinyface/Testing_Set`` parent is accepted too):

* ``Probe/`` (3,728 images), ``Gallery_Match/`` (4,443), ``Gallery_Distractor/`` (153,428), flat ``.jpg`` folders;
* ``probe_img_ID_pairs.mat``: ``probe_set`` (cell array of Probe file names) and ``probe_ids``;
* ``gallery_match_img_ID_pairs.mat``: ``gallery_set`` and ``gallery_ids``; distractors carry no id.

Metrics: CMC rank-1/5/10/20 and mAP (TinyFace's paper reports both) of every probe against Gallery_Match +
Gallery_Distractor (the published numbers) and against Gallery_Match alone. Identities are the ``.mat`` ids;
scores are cosine similarities of the flip-fused embeddings; ties count against the probe, for the ranks and
for the precisions of the mAP (see ``eval/identification.py``). Probes are native LR
faces: only resized to the model input (or, for an LR cell, to its size first); FaceBN adapts the probe path.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .base import Benchmark, FaceSet, Protocol, Scores, check_same_names, joined, list_images, mat_name_ids
from .ranking import probe_stats

RANKS = (1, 5, 10, 20)
_MATS = {"probe": ("Probe", "probe_img_ID_pairs.mat", "probe_set", "probe_ids"),
         "gallery": ("Gallery_Match", "gallery_match_img_ID_pairs.mat", "gallery_set", "gallery_ids")}


def testing_set(root: Path) -> Path:
    """``root`` when it holds the TinyFace folders, else ``root/Testing_Set`` or ``root/tinyface/Testing_Set``."""
    for candidate in (root, root / "Testing_Set", root / "tinyface" / "Testing_Set"):
        if (candidate / "Probe").is_dir() or (candidate / "probe_img_ID_pairs.mat").is_file():
            return candidate
    return root / "Testing_Set"


def read(root: Path) -> Benchmark:
    base = testing_set(Path(root))
    sets, labels = [], {}
    for name, (folder, mat, names_key, ids_key) in _MATS.items():
        found = list_images(base / folder, f"TinyFace's {folder} images")
        names, ids = mat_name_ids(base / mat, names_key, ids_key, f"{names_key}/{ids_key} of the {folder} images")
        check_same_names(names, found, base / mat, base / folder)
        sets.append(FaceSet(name, joined(base / folder, names), probe_side=name == "probe"))
        labels[name] = ids
    distractors = list_images(base / "Gallery_Distractor", "TinyFace's Gallery_Distractor images")
    sets.append(FaceSet("distractor", joined(base / "Gallery_Distractor", distractors), probe_side=False))
    info = {"probes": len(sets[0]), "gallery": len(sets[1]), "distractors": len(distractors),
            "identities": int(np.unique(labels["gallery"]).size)}
    return Benchmark("tinyface", base, tuple(sets), labels, info)


def score(bench: Benchmark, emb: Mapping[str, np.ndarray]) -> Scores:
    probe_ids, gallery_ids = bench.labels["probe"], bench.labels["gallery"]
    with_d = probe_stats(emb["probe"], probe_ids, np.concatenate([emb["gallery"], emb["distractor"]]),
                         np.r_[gallery_ids, np.full(len(emb["distractor"]), -1)], with_ap=True)
    without = probe_stats(emb["probe"], probe_ids, emb["gallery"], gallery_ids, with_ap=True)
    metrics = {f"rank_{k}": v for k, v in with_d.cmc(RANKS).items()} | {"mAP": with_d.mean_ap()}
    metrics |= {f"rank_{k}_no_distractors": v for k, v in without.cmc(RANKS).items()}
    metrics |= {"mAP_no_distractors": without.mean_ap()}
    return Scores(metrics, {"cmc": {"with distractors": with_d.cmc_curve(), "no distractors": without.cmc_curve()}})


PROTOCOL = Protocol(
    "tinyface", "TinyFace closed-set identification (CMC, mAP)", read, score,
    "Testing_Set/{Probe,Gallery_Match,Gallery_Distractor}/*.jpg, probe_img_ID_pairs.mat, "
    "gallery_match_img_ID_pairs.mat")
