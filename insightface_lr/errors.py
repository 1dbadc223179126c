"""Exceptions raised by insightface-lr.

Every error a user can cause (bad file, bad config, bad flag) derives from :class:`InsightFaceLRError`
so the command line can turn it into a one-line message and exit code 2 instead of a traceback.
"""

from __future__ import annotations


class InsightFaceLRError(Exception):
    """Base class of the errors a user can cause and fix."""


class DataFormatError(InsightFaceLRError, ValueError):
    """A data file (``.rec``, ``.idx``, ``.bin``, image bytes) is not in the expected format."""


class ConfigError(InsightFaceLRError, ValueError):
    """A config field or command-line flag is unknown, ill-typed or inconsistent."""


class RegistryError(InsightFaceLRError, KeyError):
    """A registry name is unknown or registered twice."""

    def __str__(self) -> str:  # KeyError would quote the message; keep it readable
        return str(self.args[0]) if self.args else ""


class ModelLoadError(InsightFaceLRError, ValueError):
    """A checkpoint or ONNX file cannot be used as the requested model."""


def torch_load_error_text(exc: BaseException) -> str:
    """Why ``torch.load(path, weights_only=True)`` failed, in one line and without torch's own advice: it
    suggests retrying with ``weights_only=False``, which lets an untrusted file run code on this machine."""
    import pickle

    if isinstance(exc, pickle.UnpicklingError):
        return ("not a torch.save file, or one holding Python objects other than tensors and plain containers, "
                "which are refused because unpickling them can run code; save the weights as a state dict")
    if isinstance(exc, EOFError):
        return "the file is empty or cut short"
    first = (str(exc).strip().splitlines() or [""])[0]
    if "zip archive" in first or "PytorchStreamReader" in first:
        return f"a damaged torch.save archive (truncated or corrupt: {first.split('. ')[0]})"
    return f"unreadable contents ({type(exc).__name__}: {first[:200]})"
