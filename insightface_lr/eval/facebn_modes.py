"""FaceBN mode names as the command line and the reports spell them: ``batch``, ``prior:64``, ``calibrate@0.25``.

Plain string parsing, no torch: ``eval`` checks its flags with it before torch is imported.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError

FACEBN_MODES = ("off", "batch", "online", "calibrate", "prior")
DEFAULT_PRIOR = 64.0
# FaceBN's default (``eval --facebn`` alone, the demo's "FaceBN on", ``export --facebn-calibrate``): the whole
# probe set's statistics in the first quarter of the BN layers. Chosen on the real-face validation split
# (docs/real_faces.md): adapting every layer cost ~1 point there, the first quarter did not, and it keeps
# most of the gain on the shifted synthetic set; calibration also makes it independent of the eval batch.
DEFAULT_FACEBN = "calibrate@0.25"



def facebn_spec(mode: str) -> tuple[str, float, float]:
    """``"prior:64"`` -> ``("prior", 64.0, 1.0)``: a FaceBN mode, its prior strength N (Schneider et al. 2020)
    and its depth (the fraction of BN layers that adapt, ``"calibrate@0.25"``; default every layer).
    ``"calibrate:N"`` mixes the calibration pass with the source the same way. Bare names have N = 0, except
    ``prior`` (a bare prior is :data:`DEFAULT_PRIOR`)."""
    text, _, depth_text = str(mode).partition("@")
    name, _, strength = text.partition(":")
    if name not in FACEBN_MODES or (strength and name not in ("prior", "calibrate")) or (depth_text and name == "off"):
        raise ConfigError(f"facebn mode: expected one of {FACEBN_MODES} (prior:N / calibrate:N with a prior "
                          f"strength N >= 0; @D the fraction D of BN layers that adapt), got {mode!r}")
    value, depth = _number(strength, DEFAULT_PRIOR if name == "prior" else 0.0), _number(depth_text, 1.0)
    if not value >= 0.0:
        raise ConfigError(f"facebn mode {mode!r}: the prior strength N must be a number >= 0")
    if not 0.0 < depth <= 1.0:
        raise ConfigError(f"facebn mode {mode!r}: the depth D after '@' must be a fraction in (0, 1]")
    return name, value, depth


def _number(text: str, default: float) -> float:
    """``float(text)``; ``default`` for an empty text, NaN (refused by every range check) for a bad one."""
    try:
        return float(text) if text else default
    except ValueError:
        return float("nan")


def facebn_for_mode(model: Any, mode: str, **options: Any) -> Any:
    """A :class:`~insightface_lr.models.facebn.FaceBN` of ``model`` for a mode string (``"calibrate@0.25"``);
    ``options`` go to FaceBN as they are (``momentum``, ``include_bn1d``). Imports torch."""
    from ..models.facebn import FaceBN

    name, strength, depth = facebn_spec(mode)
    return FaceBN(model, mode=name, prior_strength=strength, depth=depth, **options)


__all__ = ["DEFAULT_FACEBN", "DEFAULT_PRIOR", "FACEBN_MODES", "facebn_for_mode", "facebn_spec"]
