"""MXNet model-zoo checkpoints (``PREFIX-symbol.json`` + ``PREFIX-EPOCH.params``) as eval-mode torch modules.

InsightFace distributed its model zoo this way (``model-symbol.json`` + ``model-0000.params``). A checkpoint is
named by its prefix (``.../model``), either of its files, or the folder holding them; the epoch defaults to
the one named, else the highest ``PREFIX-NNNN.params`` present. No mxnet is needed:
:mod:`.params` reads the weights, :mod:`.graph` builds the network.
"""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import ModelLoadError
from .graph import MxnetGraphNet
from .params import load_mxnet_params

SYMBOL_SUFFIX = "-symbol.json"
_PARAMS = re.compile(r"(?P<prefix>.+)-(?P<epoch>\d{4,})\.params")


def is_mxnet_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` names an MXNet checkpoint: a folder with a ``*-symbol.json``, a ``*-symbol.json``, a
    ``PREFIX-NNNN.params`` beside its ``PREFIX-symbol.json``, or a prefix whose ``-symbol.json`` exists."""
    path = Path(path)
    if path.is_dir():
        return any(path.glob(f"*{SYMBOL_SUFFIX}"))
    if path.name.endswith(SYMBOL_SUFFIX):
        return True
    match = _PARAMS.fullmatch(path.name)
    if match:
        return path.with_name(match["prefix"] + SYMBOL_SUFFIX).is_file()
    return not path.is_file() and Path(f"{path}{SYMBOL_SUFFIX}").is_file()


def resolve_mxnet_checkpoint(path: str | Path, epoch: int | None = None) -> tuple[Path, Path]:
    """``(symbol file, params file)`` of the checkpoint ``path`` names (see module docstring)."""
    path = Path(path)
    if path.is_dir():
        symbols = sorted(path.glob(f"*{SYMBOL_SUFFIX}"))
        if len(symbols) != 1:
            raise ModelLoadError(f"{path}: expected one *{SYMBOL_SUFFIX} in the folder, found "
                                 f"{[s.name for s in symbols] or 'none'}")
        prefix = symbols[0].with_name(symbols[0].name[: -len(SYMBOL_SUFFIX)])
    elif path.name.endswith(SYMBOL_SUFFIX):
        prefix = path.with_name(path.name[: -len(SYMBOL_SUFFIX)])
    elif _PARAMS.fullmatch(path.name):
        match = _PARAMS.fullmatch(path.name)
        prefix = path.with_name(match["prefix"])
        epoch = int(match["epoch"]) if epoch is None else epoch
    else:
        prefix = path
    symbol = Path(f"{prefix}{SYMBOL_SUFFIX}")
    if not symbol.is_file():
        raise ModelLoadError(f"{path}: no MXNet symbol file {symbol}")
    if epoch is not None:
        params = Path(f"{prefix}-{int(epoch):04d}.params")
        if not params.is_file():
            raise ModelLoadError(f"{path}: no MXNet params file {params}")
        return symbol, params
    found = [p for p in prefix.parent.glob(f"{prefix.name}-*.params") if _PARAMS.fullmatch(p.name)]
    if not found:
        raise ModelLoadError(f"{path}: no {prefix.name}-NNNN.params file beside {symbol.name}")
    return symbol, max(found, key=lambda p: int(_PARAMS.fullmatch(p.name)["epoch"]))


def load_mxnet_checkpoint(path: str | Path, epoch: int | None = None) -> MxnetGraphNet:
    """The checkpoint's network with its weights, in eval mode; ``.params_path`` records the weights file
    (whose sha256 identifies the model). Raises :class:`ModelLoadError` naming the file and the problem."""
    symbol_path, params_path = resolve_mxnet_checkpoint(path, epoch)
    try:
        text = symbol_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{symbol_path}: cannot read the MXNet symbol file ({exc})") from exc
    # the weights are checked against the graph before it is allocated: memory follows the files' sizes
    net = MxnetGraphNet(text, source=symbol_path, weights=load_mxnet_params(params_path), weights_source=params_path)
    net.params_path = params_path
    return net.eval()
