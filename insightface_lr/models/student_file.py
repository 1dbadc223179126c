"""Our student file format: ``{"format", "network", "kwargs", "state_dict", "meta", "plugins"}`` in one
``torch.save``.

``save_student`` writes it atomically; ``load_student`` rebuilds the registered network and loads the weights
strictly. Everything in it is plain data (``weights_only=True`` loads it), so ``meta`` holds only str, numbers,
bools, None, lists and dicts. ``plugins`` names the modules that register the network (the run's ``plugins``
and the module defining the model's class), so that a fresh process can rebuild a backbone registered outside
the built-in modules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import atomic_path
from ..errors import ConfigError, ModelLoadError
from .weights import build_from_state_dict, load_weights_file

STUDENT_FORMAT = "insightface-lr-student"  # marks save_student files


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
    ``kwargs``: build options beyond what the module knows of itself (see :func:`build_options`); an option
    that disagrees with the module is a :class:`ConfigError`.
    ``meta`` must hold only plain values (str, numbers, bools, None, lists, dicts) so that it loads
    with ``weights_only=True``. ``plugins``: modules that register the model's parts (the run's ``plugins``);
    the module defining the model's class is recorded too.
    """
    while isinstance(getattr(model, "module", None), nn.Module):  # DDP / FaceBN wrappers: save the network
        model = model.module
    meta = dict(meta or {})
    network = network or meta.get("network") or getattr(model, "network", None)
    if not network:
        raise ConfigError("save_student: pass network=<registered backbone name> (e.g. 'bridge_student')")
    kwargs = build_options(model, kwargs)
    _check_plain(meta, "meta")
    _check_plain(kwargs, "kwargs")
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    defining = [] if type(model).__module__ == "__main__" else [type(model).__module__]
    payload = {"format": STUDENT_FORMAT, "network": str(network), "kwargs": dict(kwargs),
               "state_dict": state_dict, "meta": meta, "plugins": list(dict.fromkeys([*plugins, *defining]))}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def build_options(model: nn.Module, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The options that rebuild ``model``: its ``build_options()`` (a dict of plain values) when it has one, else
    its ``embedding_size``/``input_size`` attributes (every registered network has them), merged with ``given``.

    ``given`` may add options the module cannot report (a factory argument it does not store); one that the
    module reports with another value would write a file whose weights do not fit the network it names, so it
    is refused (tuples and lists compare equal: JSON-like files hold lists)."""
    method = getattr(model, "build_options", None)
    if callable(method):
        known = dict(method())
    else:
        known = {k: int(getattr(model, k)) for k in ("embedding_size", "input_size") if hasattr(model, k)}
    for key, value in (given or {}).items():
        if key in known and _plain(known[key]) != _plain(value):
            raise ConfigError(f"save_student: kwargs {key}={value!r} disagrees with the module "
                              f"({type(model).__name__}.{key} = {known[key]!r}); leave it out or fix it")
    return {**{k: _plain(v) for k, v in (given or {}).items()}, **{k: _plain(v) for k, v in known.items()}}


def _plain(value: Any) -> Any:
    """Tuples as lists (the form a saved file holds), recursively."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


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
    return build_student(payload, path).to(device), dict(payload.get("meta") or {})


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


def build_student(payload: Mapping[str, Any], path: Path) -> nn.Module:
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
