"""One small name -> factory registry, shared by backbones, margin heads and distillation terms.

Modelled on fvcore's ``Registry``: a duplicate name is an error naming both modules, and an unknown
name lists what exists and suggests the closest. As timm learned, a module that is never imported
never registers: each registry imports the package's own modules that fill it on its first miss (so
``BACKBONES.build("r50")`` works in a fresh interpreter while ``import insightface_lr`` stays cheap), and
the unknown-name error points at the ``plugins`` config field for the user's own modules.
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

    def __init__(self, kind: str, builtin_modules: Iterable[str] = ()) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}
        self._builtin_modules = tuple(builtin_modules)
        self._builtins_loaded = not self._builtin_modules

    def load_builtins(self) -> None:
        """Import the package modules that register this registry's built-in entries (once)."""
        if self._builtins_loaded:
            return
        self._builtins_loaded = True  # first: a builtin module that looks itself up must not recurse
        for module in self._builtin_modules:
            importlib.import_module(module)

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
        if name not in self._entries:
            self.load_builtins()
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryError(self._unknown_message(name)) from None

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the callable registered under ``name`` with the given arguments."""
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        """Every registered name, sorted (the built-ins loaded first)."""
        self.load_builtins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        if name not in self._entries:
            self.load_builtins()
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


# the package modules whose import registers each registry's built-in entries (imported on a first miss)
BACKBONES = Registry("backbone", ("insightface_lr.models",))
HEADS = Registry("head", ("insightface_lr.losses.margin",))
DISTILL_TERMS = Registry("distillation term", ("insightface_lr.losses",))
LOSSES = DISTILL_TERMS  # the registry's earlier name, kept for existing plugins


def register_backbone(name: str | None = None) -> Callable[[T], T]:
    """``@register_backbone("mine")``: a network factory taking ``embedding_size``, ``input_size``, ``dropout``,
    ``fp16`` and returning an ``nn.Module`` with those ``input_size``/``embedding_size`` attributes (see
    :mod:`insightface_lr.models.factory`); selectable as ``--network mine``."""
    return BACKBONES.register(name)


def register_head(name: str | None = None) -> Callable[[T], T]:
    """``@register_head("mine")``: a margin head ``(cosine [B, C], labels [B]) -> logits [B, C]``."""
    return HEADS.register(name)


def register_distill_term(name: str | None = None) -> Callable[[T], T]:
    """``@register_distill_term("mine")``: selectable as ``--distill mine``."""
    return DISTILL_TERMS.register(name)


register_loss = register_distill_term  # the decorator's earlier name, kept for existing plugins


def load_builtins() -> None:
    """Import the package's own modules that register backbones, heads and distillation terms (every registry also
    does this by itself on its first miss; this is for code that wants them all loaded up front)."""
    for registry in (BACKBONES, HEADS, LOSSES):
        registry.load_builtins()


def import_plugins(modules: Iterable[str]) -> None:
    """Import user modules named in the config field ``plugins`` so their ``@register_*`` run."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"config field `plugins`: cannot import module {module!r}: {exc}") from exc
