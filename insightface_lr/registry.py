"""One small name -> factory registry, shared by backbones, heads, losses and distillers.

Modelled on fvcore's ``Registry``: a duplicate name is an error naming both modules, and an unknown
name lists what exists and suggests the closest. As timm learned, a module that is never imported
never registers, so the unknown-name error says that too and points at the ``plugins`` config field.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .errors import ConfigError, RegistryError

T = TypeVar("T", bound=Callable[..., Any])


class Registry:
    """Maps names to callables (classes or factory functions)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: ``@BACKBONES.register("r50")``; the name defaults to the object's ``__name__``."""

        def decorator(obj: T) -> T:
            key = name or obj.__name__
            previous = self._entries.get(key)
            if previous is not None and previous is not obj:
                raise RegistryError(
                    f"{self.kind} {key!r} is registered twice: by {_where(previous)} and by {_where(obj)}"
                )
            self._entries[key] = obj
            return obj

        return decorator

    def get(self, name: str) -> Callable[..., Any]:
        """The registered callable, or a :class:`RegistryError` listing known names."""
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryError(self._unknown_message(name)) from None

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the callable registered under ``name`` with the given arguments."""
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def _unknown_message(self, name: str) -> str:
        known = self.names()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return (
            f"unknown {self.kind} {name!r}.{hint} Known {_plural(self.kind)}: {', '.join(known) or '(none)'}. "
            f"A {self.kind} defined in your own module registers only when that module is imported: "
            f"list it in the config field `plugins = [\"your_module\"]`."
        )


def _plural(noun: str) -> str:
    return f"{noun}es" if noun.endswith(("s", "x", "ch", "sh")) else f"{noun}s"  # loss -> losses, head -> heads


def _where(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


BACKBONES = Registry("backbone")
HEADS = Registry("head")
LOSSES = Registry("loss")


def register_backbone(name: str | None = None) -> Callable[[T], T]:
    return BACKBONES.register(name)


def register_head(name: str | None = None) -> Callable[[T], T]:
    return HEADS.register(name)


def register_loss(name: str | None = None) -> Callable[[T], T]:
    return LOSSES.register(name)


# Importing these modules fills the registries; done on demand so `import insightface_lr` stays cheap.
_BUILTIN_MODULES = (
    "insightface_lr.models",
    "insightface_lr.losses",
)


def load_builtins() -> None:
    """Import the package's own modules that register backbones, heads and losses."""
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def import_plugins(modules: Iterable[str]) -> None:
    """Import user modules named in the config field ``plugins`` so their ``@register_*`` run."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"config field `plugins`: cannot import module {module!r}: {exc}") from exc
