"""The embeddings cache: a set is embedded once per (model, protocol, size, FaceBN) cell, an interrupted run
resumes from its last whole chunk and ends with the uninterrupted numbers, and no partial file is ever left."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_tinyface import HAND_DISTRACTORS, HAND_GALLERY, HAND_PROBES, make_tinyface
from trees import INPUT, CentreColour, stub_model, write_face

from insightface_lr.eval.protocols import loader
from insightface_lr.eval.protocols.base import FaceSet
from insightface_lr.eval.protocols.embed import EmbedOptions, embed_set, set_cache
from insightface_lr.eval.protocols.runner import ProtocolConfig, run_protocol


def _faces(folder: Path, n: int) -> FaceSet:
    rng = np.random.default_rng(0)
    paths = tuple(str(write_face(folder / f"{i:03d}.png", rng.uniform(-0.9, 0.9, 3))) for i in range(n))
    return FaceSet("faces", paths, probe_side=True)


class Interrupted(Exception):
    pass


def test_interrupted_run_resumes_to_the_same_embeddings(tmp_path: Path) -> None:
    faces = _faces(tmp_path / "img", 23)  # 6 chunks of 2 batches of 2 faces, the last one 3 faces
    model = stub_model()
    opts = EmbedOptions(tmp_path / "cache", batch_size=2, workers=0, chunk_batches=2)
    reference = embed_set(model.fn, INPUT, faces, INPUT, set_cache(opts, "p", model, "w0", faces, INPUT, "a"), opts)
    calls = []

    def dies_after_five_batches(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        if len(calls) > 5 * 2:  # two views per batch: batch 6 (second half of chunk 2) never finishes
            raise Interrupted
        return CentreColour()(x)

    cache = set_cache(opts, "p", model, "w1", faces, INPUT, "a")
    with pytest.raises(Interrupted):
        embed_set(dies_after_five_batches, INPUT, faces, INPUT, cache, opts)
    assert sorted(p.name for p in cache.folder.iterdir()) == ["chunk_000000.npy", "chunk_000001.npy", "key.json"]
    calls.clear()
    resumed = embed_set(lambda x: (calls.append(len(x)), CentreColour()(x))[1], INPUT, faces, INPUT, cache, opts)
    assert len(calls) == 2 * 8  # chunks 2..5 only (2 batches each, the last one a full window), two views
    np.testing.assert_array_equal(resumed, reference)
    assert sorted(p.name for p in cache.folder.iterdir()) == ["embeddings.npy", "key.json"]  # chunks folded in
    assert not list(tmp_path.rglob("*.tmp"))


def test_second_run_decodes_nothing(tmp_path: Path, monkeypatch) -> None:
    root = make_tinyface(tmp_path / "data", HAND_PROBES, HAND_GALLERY, HAND_DISTRACTORS)
    config = ProtocolConfig(batch_size=2, workers=0, sizes=("native", 8))
    first = run_protocol({"stub": stub_model()}, "tinyface", root, tmp_path / "cache", config)

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was decoded although every embedding is cached")

    monkeypatch.setattr(loader, "load_face", no_decoding)
    second = run_protocol({"stub": stub_model()}, "tinyface", root, tmp_path / "cache", config)
    assert [r["metrics"] for r in first["records"]] == [r["metrics"] for r in second["records"]]
    # gallery and distractors once (native, shared by both sizes), probes once per size
    finals = sorted(p.parent.name.split("-")[0] + "-" + p.parent.name.split("-")[1]
                    for p in (tmp_path / "cache").rglob("embeddings.npy"))
    assert finals == ["distractor-16px", "gallery-16px", "probe-16px", "probe-8px"]


def test_a_different_model_never_reuses_the_cache(tmp_path: Path) -> None:
    faces = _faces(tmp_path / "img", 4)
    opts = EmbedOptions(tmp_path / "cache", batch_size=2, workers=0)
    a = set_cache(opts, "p", stub_model("same_name"), "digest_a", faces, INPUT, "16px-facebn_off")
    b = set_cache(opts, "p", stub_model("same_name"), "digest_b", faces, INPUT, "16px-facebn_off")
    c = set_cache(opts, "p", stub_model("same_name"), "digest_a", faces, 8, "8px-facebn_off")
    assert len({a.folder, b.folder, c.folder}) == 3


def test_online_facebn_restarts_instead_of_resuming(tmp_path: Path) -> None:
    faces = _faces(tmp_path / "img", 8)
    opts = EmbedOptions(tmp_path / "cache", batch_size=2, workers=0, chunk_batches=1)
    cache = set_cache(opts, "p", stub_model(), "w", faces, INPUT, "16px-facebn_online")
    cache.write_chunk(0, np.full((2, 3), 7.0, np.float32))  # a chunk of an interrupted online run
    out = embed_set(stub_model().fn, INPUT, faces, INPUT, cache, opts, resumable=False)
    assert not (out == 7.0).all(axis=1).any()  # recomputed: the running statistics could not be restored
