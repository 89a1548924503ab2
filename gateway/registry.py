"""The adapter registry: config `type` names → adapter classes.

An adapter module in `adapters/` registers itself with the `register` decorator; every module in
that package is imported on first use, so adding a provider touches one file::

    @register("claude", aliases=("claude-api",))
    class ClaudeAdapter(HTTPAdapter): ...
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.adapter import Adapter

# Seed (002) types this gateway declines: skipped at load with a warning (CONTRACT.md §4).
DECLINED_TYPES = frozenset({"claude-web"})

_classes: dict[str, type[Adapter]] = {}
_canonical: dict[str, str] = {}
_loaded = False


def register(type_name: str, *, aliases: tuple[str, ...] = ()):
    """Class decorator: make the adapter class serve config entries of `type_name` (and aliases)."""

    def decorate(cls: type[Adapter]) -> type[Adapter]:
        for name in (type_name, *aliases):
            _classes[name] = cls
            _canonical[name] = type_name
        cls.type_name = type_name
        return cls

    return decorate


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import adapters

    for module in pkgutil.iter_modules(adapters.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"adapters.{module.name}")


def adapter_class(type_name: str) -> type[Adapter] | None:
    """The class registered for `type_name` (or an alias), or None."""
    _load()
    return _classes.get(type_name)


def canonical_type(type_name: str) -> str:
    """The primary name for a type or alias (`claude-api` → `claude`)."""
    _load()
    return _canonical.get(type_name, type_name)


def type_names() -> list[str]:
    """Every registered type name and alias, sorted."""
    _load()
    return sorted(_classes)


def secret_fields(type_name: str) -> tuple[str, ...]:
    """Names of the config fields of `type_name` that hold secrets (masked, scrubbed)."""
    cls = adapter_class(type_name)
    return cls.secret_fields if cls else ()
