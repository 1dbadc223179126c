"""Frozen teachers: an arcface_torch ``backbone.pth``, a full training checkpoint, an ONNX file or a module.

``load_teacher`` accepts what people actually have on disk: arcface_torch saves ``backbone.pth`` as a plain
state dict and ``checkpoint_gpu_*.pt`` as a dict holding ``state_dict_backbone``; DDP saves prefix every
key with ``module.``. The IResNet depth is read from the number of blocks per stage, so a user need not
know which network produced the file. Every file is read with ``weights_only=True`` (no arbitrary pickle).

Our own students are saved by ``save_student`` as ``{"format", "network", "kwargs", "state_dict", "meta"}``
(written atomically) and rebuilt by ``load_student``; ``load_teacher`` accepts those files too.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import atomic_path
from ..errors import ConfigError, ModelLoadError
from .factory import get_backbone
from .iresnet import IRESNET_LAYERS

# blocks per stage (layer1..layer4) -> arcface_torch IResNet name, from the backbone definitions themselves
IRESNET_BLOCKS: dict[tuple[int, ...], str] = {blocks: name for name, blocks in IRESNET_LAYERS.items()}
# where training scripts keep the backbone inside a checkpoint, most specific first
CHECKPOINT_KEYS = ("state_dict_backbone", "backbone", "model_state_dict", "state_dict", "model")
_STRIP_PREFIXES = ("module.", "_orig_mod.")  # DDP and torch.compile wrappers
STUDENT_FORMAT = "insightface-lr-student"  # marks save_student files
_BLOCK_KEY = re.compile(r"^layer([1-4])\.(\d+)\.")


class Teacher(nn.Module):
    """A frozen embedding network: ``forward(x [B,3,S,S] normalised RGB) -> [B,D]`` without gradients.

    ``train()`` cannot switch it out of eval mode (BatchNorm statistics and dropout stay fixed while the
    student trains) and ``requires_grad_()`` cannot unfreeze it. ``checksum`` identifies the weights and
    keys the teacher-embedding cache.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        checksum: str | None = None,
        embedding_size: int | None = None,
        input_size: int | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.input_size = int(input_size or getattr(model, "input_size", 112))
        self.checksum = checksum or state_dict_sha256(model.state_dict())
        self.requires_grad_(False)
        self.train(False)
        size = embedding_size or getattr(model, "embedding_size", None)
        self.embedding_size = int(size) if size else self._probe_embedding_size()

    def train(self, mode: bool = True) -> Teacher:
        # Frozen means frozen: a trainer's blanket model.train() must not re-enable BN updates here.
        return super().train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Teacher:
        return super().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: float [B,3,S,S], (pixel/255 - 0.5)/0.5, RGB -> embeddings float [B,D] (not normalised)."""
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != (self.input_size, self.input_size):
            raise ValueError(
                f"teacher expects input [B,3,{self.input_size},{self.input_size}], got {list(x.shape)}"
            )
        with torch.no_grad():
            out = self.model(x)
        # some backbones (arcface_torch mbf with norm_output) return (embedding, norm)
        return out[0] if isinstance(out, (tuple, list)) else out

    def _probe_embedding_size(self) -> int:
        device = next((p.device for p in self.model.parameters()), torch.device("cpu"))
        x = torch.zeros(2, 3, self.input_size, self.input_size, device=device)
        return int(self.forward(x).shape[-1])


def load_teacher(
    path_or_module: str | Path | nn.Module,
    network: str | None = None,
    embedding_size: int | None = None,
    device: str | torch.device = "cpu",
) -> Teacher:
    """A frozen teacher from a ``.pth``/``.pt`` state dict or checkpoint (or a ``save_student`` file), an
    ``.onnx`` file, an insightface model package folder, or a module.

    ``network`` (a registered backbone name) is inferred from the keys when None; ``embedding_size`` is
    read from the final BatchNorm1d when None (arcface_torch: 512). Raises ModelLoadError naming the file.
    """
    if isinstance(path_or_module, nn.Module):
        if isinstance(path_or_module, Teacher):
            return path_or_module.to(device)
        return Teacher(path_or_module, embedding_size=embedding_size).to(device)
    path = Path(path_or_module)
    if path.suffix.lower() == ".onnx" or path.is_dir():
        from .onnx_teacher import OnnxTeacher

        if path.is_dir():  # an insightface model package (manifest v2)
            return OnnxTeacher.from_package(path, device=str(device))
        return OnnxTeacher(path, device=str(device))
    model, _meta = load_model_file(path, network, embedding_size)
    return Teacher(model, checksum=file_sha256(path)).to(device)


def load_model_file(
    path: str | Path, network: str | None = None, embedding_size: int | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """``(eval-mode model, meta)`` from a save_student file or an arcface_torch state dict / checkpoint."""
    path = Path(path)
    obj = load_weights_file(path)
    if isinstance(obj, Mapping) and obj.get("format") == STUDENT_FORMAT:  # one of our own save_student files
        import_student_plugins(obj, path)
        return _build_student(obj, path), dict(obj.get("meta") or {})
    state_dict = _backbone_state_dict(obj, path)
    network = network or infer_network(state_dict, source=path)
    embedding_size = embedding_size or infer_embedding_size(state_dict) or 512
    input_size = infer_input_size(state_dict) or 112
    model = build_from_state_dict(
        network, state_dict, embedding_size=embedding_size, input_size=input_size, source=path
    )
    return model, {"network": network, "source": str(path)}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The backbone state dict inside ``path`` (plain or nested under CHECKPOINT_KEYS), prefixes stripped."""
    path = Path(path)
    return _backbone_state_dict(load_weights_file(path), path)


def load_weights_file(path: str | Path) -> object:
    """``torch.load(path, map_location="cpu", weights_only=True)``; ModelLoadError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such weights file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt / non-torch / unsafe files
        raise ModelLoadError(
            f"{path}: not a readable PyTorch weights file (loaded with weights_only=True): {exc}"
        ) from exc


def _backbone_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
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


# --- our student .pt files -----------------------------------------------------------------------------
def save_student(
    path: str | Path,
    model: nn.Module,
    meta: Mapping[str, Any] | None = None,
    *,
    network: str | None = None,
    kwargs: Mapping[str, Any] | None = None,
    plugins: Sequence[str] = (),
) -> Path:
    """Save ``{"format", "network", "kwargs", "state_dict", "meta", "plugins"}`` atomically; ``load_student``
    rebuilds it.

    ``network``: the registered backbone name (default ``meta["network"]`` or ``model.network``);
    ``kwargs``: its build options (default ``embedding_size``/``input_size`` read from the model).
    ``meta`` must hold only plain values (str, numbers, bools, None, lists, dicts) so that it loads
    with ``weights_only=True``. ``plugins``: modules that register the model's parts (the run's
    ``plugins``); the module defining the model's class is recorded too, so that a fresh process can
    rebuild a backbone registered outside the built-in modules.
    """
    while isinstance(getattr(model, "module", None), nn.Module):  # DDP / FaceBN wrappers: save the network
        model = model.module
    meta = dict(meta or {})
    network = network or meta.get("network") or getattr(model, "network", None)
    if not network:
        raise ConfigError("save_student: pass network=<registered backbone name> (e.g. 'bridge_student')")
    if kwargs is None:
        kwargs = {k: int(getattr(model, k)) for k in ("embedding_size", "input_size") if hasattr(model, k)}
    _check_plain(meta, "meta")
    _check_plain(dict(kwargs), "kwargs")
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    defining = [] if type(model).__module__ == "__main__" else [type(model).__module__]
    payload = {"format": STUDENT_FORMAT, "network": str(network), "kwargs": dict(kwargs),
               "state_dict": state_dict, "meta": meta, "plugins": list(dict.fromkeys([*plugins, *defining]))}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_student(path: str | Path, device: str | torch.device = "cpu",
                 plugins: Sequence[str] = ()) -> tuple[nn.Module, dict[str, Any]]:
    """``(model in eval mode, meta)`` from a ``save_student`` file (read with ``weights_only=True``);
    ``plugins`` (and the file's recorded plugins, when its network is not registered yet) are imported."""
    path = Path(path)
    payload = load_weights_file(path)
    if not isinstance(payload, Mapping) or payload.get("format") != STUDENT_FORMAT:
        raise ModelLoadError(f"{path}: not an insightface-lr student file (no format={STUDENT_FORMAT!r}); "
                             "for an arcface_torch backbone.pth use load_teacher")
    import_student_plugins(payload, path, plugins)
    return _build_student(payload, path).to(device), dict(payload.get("meta") or {})


def import_student_plugins(payload: Mapping[str, Any], path: Path, plugins: Sequence[str] = ()) -> None:
    """Import ``plugins``, then the file's recorded ones if its network is still unknown (only then: a
    student file is data, and the modules it names are imported only to find its network)."""
    from ..registry import BACKBONES, import_plugins

    import_plugins(plugins)
    recorded = payload.get("plugins") or []
    if payload.get("network") in BACKBONES or not recorded:
        return
    if not all(isinstance(m, str) and _MODULE_NAME.fullmatch(m) for m in recorded):
        raise ModelLoadError(f"{path}: 'plugins' must be a list of module names, got {recorded!r}")
    import_plugins(recorded)


_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def _build_student(payload: Mapping[str, Any], path: Path) -> nn.Module:
    if not isinstance(payload.get("network"), str) or not isinstance(payload.get("state_dict"), Mapping):
        raise ModelLoadError(f"{path}: student file lacks 'network' (str) or 'state_dict' (dict)")
    kwargs = dict(payload.get("kwargs") or {})
    return build_from_state_dict(
        payload["network"], payload["state_dict"], embedding_size=kwargs.pop("embedding_size", 512),
        input_size=kwargs.pop("input_size", 112), kwargs=kwargs, source=path,
    )


def _check_plain(value: Any, where: str) -> None:
    if value is None or isinstance(value, (str, int, float, bool)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif isinstance(value, dict) and all(isinstance(k, str) for k in value):
        for key, item in value.items():
            _check_plain(item, f"{where}.{key}")
    else:
        raise ConfigError(f"save_student: {where} is a {type(value).__name__}; only plain values are saved")
