"""MXNet model-zoo checkpoints imported without mxnet (docs/mxnet_checkpoints.md).

* :mod:`.checkpoint`: which files a checkpoint path names, and :func:`load_mxnet_checkpoint`;
* :mod:`.params`: the ``.params`` NDArray-list file, read and written with ``struct``/numpy;
* :mod:`.graph`: the ``-symbol.json`` graph as a torch module, the registered backbone ``mxnet_graph``;
* :mod:`.ops`: the op table, one entry per MXNet op (its builder and its parameter inputs).

Importing the package registers the backbone.
"""

from __future__ import annotations

from .checkpoint import is_mxnet_checkpoint, load_mxnet_checkpoint, resolve_mxnet_checkpoint
from .graph import MxnetGraphNet
from .params import load_mxnet_params, save_mxnet_params

__all__ = ["MxnetGraphNet", "is_mxnet_checkpoint", "load_mxnet_checkpoint", "load_mxnet_params",
           "resolve_mxnet_checkpoint", "save_mxnet_params"]
