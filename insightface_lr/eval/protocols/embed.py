"""Embed one face set for one cell, chunk by chunk through the resumable cache.

Faces come from :mod:`.loader` (DataLoader workers) at ``side`` px, are up-sampled to the model input by the
sweep's bicubic when ``side`` is an LR size, and embedded with the flip test of InsightFace (original + mirror,
summed, not normalised: the norm stays a quality weight for IJB's pooling) by
:func:`insightface_lr.eval.verification.embed_pairs`, on the model's device (a GPU batch when there is one).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..lowres import degrade_normalised
from ..model_loading import EvalModel
from ..verification import _to_model_input, embed_pairs
from .base import FaceSet
from .cache import EmbeddingCache, digest
from .loader import FaceBatches, batch_windows, iterate_batches

ModelFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class EmbedOptions:
    """How sets are embedded: batch (also FaceBN's statistics), DataLoader workers, device, cache folder,
    rows per cache chunk (a multiple of the batch), progress bar."""

    cache_dir: Path
    batch_size: int = 64
    workers: int = 2
    device: torch.device = torch.device("cpu")
    chunk_batches: int = 64
    progress: bool = False

    @property
    def chunk(self) -> int:
        return self.batch_size * self.chunk_batches


def model_digest(model: EvalModel) -> str:
    """What identifies the weights: the file's SHA-256, or the state dict's for an in-memory module."""
    from ...models.weights import file_sha256, state_dict_sha256

    source = Path(model.source) if model.source and model.source != "<module>" else None
    if source is not None and source.is_file():
        return file_sha256(source)
    if model.module is not None:
        return state_dict_sha256(model.module.state_dict())
    return digest([model.name, model.source, model.kind])


def inference_fn(model: EvalModel) -> ModelFn:
    """``model.fn`` made faster for FaceBN-off embedding: BatchNorm folded into the convs
    (:func:`insightface_lr.models.fuse.fold_batchnorm`) and channels-last input, which the depthwise students
    run markedly faster on CPU (``benchmarks/distractors.py``); equal to ``model.fn`` up to float rounding."""
    if model.module is None or model.kind != "torch":
        return model.fn
    from ...models.fuse import fold_batchnorm

    folded = fold_batchnorm(model.module)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = folded(x.contiguous(memory_format=torch.channels_last))
        return out[0] if isinstance(out, (tuple, list)) else out

    return run


def set_cache(opts: EmbedOptions, protocol: str, model: EvalModel, weights: str, face_set: FaceSet,
              side: int, cell: str) -> EmbeddingCache:
    """The cache of ``face_set`` embedded by ``model`` at ``side`` px for ``cell`` (e.g. ``"native-facebn_off"``)."""
    key = {"protocol": protocol, "set": face_set.name, "weights": weights, "input_size": model.input_size,
           "embedding_size": model.embedding_size, "side": int(side), "cell": cell, "flip": "sum",
           "batch_size": opts.batch_size, "paths": digest(face_set.paths),
           "landmarks": None if face_set.landmarks is None else hashlib.sha256(
               np.ascontiguousarray(face_set.landmarks, dtype=np.float32).tobytes()).hexdigest()}
    return EmbeddingCache(opts.cache_dir, protocol, model.name, weights, face_set.name, cell, key,
                          len(face_set), opts.chunk)


def embed_set(fn: ModelFn, input_size: int, face_set: FaceSet, side: int, cache: EmbeddingCache,
              opts: EmbedOptions, resumable: bool = True) -> np.ndarray:
    """Flip-summed float32 ``[N, D]`` embeddings of ``face_set`` (from the cache when already there).

    ``resumable=False`` (FaceBN ``online``, whose running statistics a restart would lose) ignores chunks of
    an interrupted run and embeds the set from the start."""
    final = cache.load_final()
    if final is not None:
        return final
    done = cache.done_chunks() if resumable else {}
    if not resumable:
        cache.clear_chunks()
    windows = [w for c in range(cache.n_chunks) if c not in done for w in _chunk_windows(cache, c, opts.batch_size)]
    dataset = FaceBatches(face_set.paths, side, face_set.landmarks)
    preprocess = None if side == input_size else (lambda x: degrade_normalised(x, side, input_size))
    buffer: list[np.ndarray] = []
    from tqdm import tqdm

    with tqdm(total=len(face_set), initial=sum(len(a) for a in done.values()), unit="img", leave=False,
              desc=f"{face_set.name} {cache.key['cell']}", disable=not opts.progress) as bar:
        for begin, stop, faces in iterate_batches(dataset, windows, opts.workers, opts.device.type == "cuda"):
            views = embed_pairs(fn, faces, batch_size=len(faces), flip=True, device=opts.device,
                                preprocess=preprocess)
            buffer.append(views.sum(axis=0)[len(faces) - (stop - begin):])
            bar.update(stop - begin)
            if stop == min((begin // cache.chunk + 1) * cache.chunk, len(face_set)):  # chunk complete
                done[begin // cache.chunk] = np.concatenate(buffer)
                cache.write_chunk(begin // cache.chunk, done[begin // cache.chunk])
                buffer = []
    return cache.finish(np.concatenate([done[c] for c in range(cache.n_chunks)]))


def _chunk_windows(cache: EmbeddingCache, index: int, batch_size: int) -> list[tuple[int, int, int]]:
    start = index * cache.chunk
    return batch_windows(start + cache.chunk_rows(index), batch_size, start)


def calibration_batches(sets: Sequence[FaceSet], side: int, input_size: int, opts: EmbedOptions
                        ) -> Iterator[torch.Tensor]:
    """Normalised model-input batches of every face of ``sets`` at ``side`` px (FaceBN ``calibrate``'s pass)."""
    for face_set in sets:
        dataset = FaceBatches(face_set.paths, side, face_set.landmarks)
        windows = [(lo, stop, lo) for lo, stop in
                   ((b, min(b + opts.batch_size, len(face_set))) for b in range(0, len(face_set), opts.batch_size))]
        for _, _, faces in iterate_batches(dataset, windows, opts.workers):
            x = _to_model_input(faces, opts.device)
            yield x if side == input_size else degrade_normalised(x, side, input_size)
