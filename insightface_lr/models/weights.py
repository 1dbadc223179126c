"""Weight files people have on disk, and the network that fits them, inferred from the keys.

arcface_torch saves ``backbone.pth`` as a plain state dict and ``checkpoint_gpu_*.pt`` as a dict holding
``state_dict_backbone``; DDP prefixes every key with ``module.``, ``torch.compile`` with ``_orig_mod.``. The
network is read from the keys: an IResNet's depth from its blocks per stage (the table of
:mod:`insightface_lr.models.iresnet`), MobileFaceNet from its ``conv_sep`` layer, the embedding and input sizes
from the shapes. Every file is read with ``weights_only=True`` (no arbitrary pickle).
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelLoadError, torch_load_error_text
from .factory import get_backbone
from .iresnet import IRESNET_LAYERS

# blocks per stage (layer1..layer4) -> arcface_torch IResNet name, from the backbone definitions themselves
IRESNET_BLOCKS: dict[tuple[int, ...], str] = {blocks: name for name, blocks in IRESNET_LAYERS.items()}
# where training scripts keep the backbone inside a checkpoint, most specific first
CHECKPOINT_KEYS = ("state_dict_backbone", "backbone", "model_state_dict", "state_dict", "model")
_STRIP_PREFIXES = ("module.", "_orig_mod.")  # DDP and torch.compile wrappers
_BLOCK_KEY = re.compile(r"^layer([1-4])\.(\d+)\.")


def load_weights_file(path: str | Path) -> object:
    """``torch.load(path, map_location="cpu", weights_only=True)``; ModelLoadError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such weights file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pickle-protocol chatter; a failure is reported in one line below
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt / non-torch / unsafe files
        raise ModelLoadError(
            f"{path}: not a readable PyTorch weights file (loaded with weights_only=True): {torch_load_error_text(exc)}"
        ) from exc


def backbone_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    state_dict = _find_state_dict(obj)
    if state_dict is None:
        keys = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise ModelLoadError(
            f"{path}: no backbone state dict found; expected a dict of tensors or one under "
            f"{', '.join(CHECKPOINT_KEYS)}; found {keys}"
        )
    return strip_prefixes(state_dict)


def _find_state_dict(obj: object) -> dict[str, torch.Tensor] | None:
    if not isinstance(obj, Mapping) or not obj:
        return None
    if all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj)
    for key in CHECKPOINT_KEYS:
        found = _find_state_dict(obj.get(key))
        if found is not None:
            return found
    return None


def strip_prefixes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove DDP ``module.`` / torch.compile ``_orig_mod.`` prefixes (repeatedly, they can nest)."""
    out = {}
    for key, value in state_dict.items():
        while key.startswith(_STRIP_PREFIXES):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def infer_network(state_dict: Mapping[str, torch.Tensor], source: str | Path = "state dict") -> str:
    """``r18``..``r200`` from the blocks per stage, ``mbf`` from MobileFaceNet's ``conv_sep`` layer."""
    if any(key.startswith("conv_sep.") for key in state_dict):
        return "mbf"
    blocks = [0, 0, 0, 0]
    for key in state_dict:
        match = _BLOCK_KEY.match(key)
        if match:
            stage, index = int(match.group(1)) - 1, int(match.group(2))
            blocks[stage] = max(blocks[stage], index + 1)
    name = IRESNET_BLOCKS.get(tuple(blocks))
    if name is None:
        raise ModelLoadError(
            f"{source}: cannot infer the network from its keys (blocks per stage {blocks}, known IResNets "
            f"{ {v: list(k) for k, v in IRESNET_BLOCKS.items()} }); pass network=<registered backbone name>"
        )
    return name


def infer_embedding_size(state_dict: Mapping[str, torch.Tensor]) -> int | None:
    """Length of the final BatchNorm1d: ``features`` (IResNet) or ``features.layers.3`` (MobileFaceNet)."""
    for key in ("features.weight", "features.layers.3.weight"):
        value = state_dict.get(key)
        if value is not None and value.dim() == 1:
            return int(value.shape[0])
    return None


def infer_input_size(state_dict: Mapping[str, torch.Tensor]) -> int | None:
    """Input side from the trunk's final map (side ``s`` after 4 halvings <- input ``16 s``; 7 <- 112)."""
    fc, bn2 = state_dict.get("fc.weight"), state_dict.get("bn2.weight")  # IResNet: fc on 512 x s x s
    gdc = state_dict.get("features.layers.0.layers.0.weight")  # MobileFaceNet: s x s depthwise GDC
    if fc is not None and bn2 is not None and fc.dim() == 2 and bn2.dim() == 1:
        side = round((fc.shape[1] / bn2.shape[0]) ** 0.5)
    elif gdc is not None and gdc.dim() == 4:
        side = int(gdc.shape[-1])
    else:
        return None
    return 16 * side if side > 0 else None


def build_from_state_dict(
    network: str,
    state_dict: Mapping[str, torch.Tensor],
    *,
    embedding_size: int = 512,
    input_size: int = 112,
    kwargs: Mapping[str, object] | None = None,
    source: str | Path = "state dict",
) -> nn.Module:
    """Build a registered backbone and load ``state_dict`` strictly (ModelLoadError on any mismatch)."""
    build_kwargs = {"embedding_size": embedding_size, "input_size": input_size, "dropout": 0.0, "fp16": False}
    build_kwargs.update(kwargs or {})
    model = get_backbone(network, **build_kwargs)
    load_strict(model, state_dict, source=f"{source} ({network})")
    if not isinstance(getattr(model, "network", None), str):
        model.network = network  # its registered name: a student started from it is saved under that name
    return model.eval()


def load_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """``load_state_dict(strict=True)`` whose failure names the file and the first offending keys."""
    try:
        missing, unexpected = model.load_state_dict(dict(state_dict), strict=False)
    except RuntimeError as exc:  # shape mismatches are raised even with strict=False
        first = str(exc).strip().splitlines()
        raise ModelLoadError(f"{source}: weights do not fit the network: {' '.join(first[:3])}") from exc
    if missing or unexpected:
        raise ModelLoadError(
            f"{source}: weights do not fit the network: {len(missing)} missing keys (first: "
            f"{missing[:5]}), {len(unexpected)} unexpected keys (first: {unexpected[:5]})"
        )


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def state_dict_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Order-independent digest of names, dtypes, shapes and bytes of every tensor."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
