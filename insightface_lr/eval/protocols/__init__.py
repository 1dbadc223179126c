"""Native low-resolution benchmarks read from their official layouts: TinyFace, SCface, QMUL-SurvFace, XQLFW,
IJB-B and IJB-C. ``get_protocol(name)`` returns the :class:`~.base.Protocol`; :func:`.runner.run_protocol`
evaluates models on one; ``insightface-lr eval --protocol NAME --root DIR`` is the command line.

The protocol modules are imported on first use only (importing the package has no side effects).
"""

from __future__ import annotations

import importlib

from ...errors import ConfigError

# name -> (module, attribute)
_PROTOCOLS = {
    "tinyface": ("tinyface", "PROTOCOL"),
    "scface": ("scface", "PROTOCOL"),
    "survface": ("survface", "PROTOCOL"),
    "xqlfw": ("xqlfw", "PROTOCOL"),
    "ijbb": ("ijb", "IJBB"),
    "ijbc": ("ijb", "IJBC"),
}
PROTOCOL_NAMES = tuple(_PROTOCOLS)


def get_protocol(name: str):
    """The registered protocol ``name`` (ConfigError listing the known names otherwise)."""
    if name not in _PROTOCOLS:
        raise ConfigError(f"--protocol: expected one of {', '.join(PROTOCOL_NAMES)}, got {name!r}")
    module, attribute = _PROTOCOLS[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
