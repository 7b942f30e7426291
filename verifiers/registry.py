"""Name -> verifier registry: built-ins (imported on first use), ``register``, entry points.

Lookup order in :func:`get`: names registered in this process, then the built-ins, then the
``rlvr.verifiers`` entry-point group of installed packages (loaded lazily, once). A third-party
package declares e.g. ``[project.entry-points."rlvr.verifiers"] mytask = "mypkg.rewards:score"``;
the object may be a callable, a Verifier subclass or instance, or any object with ``score``.
"""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from rlvr.errors import ConfigError
from verifiers.base import Verifier, as_verifier

ENTRY_POINT_GROUP = "rlvr.verifiers"

# name -> (module, class, kwargs): imported only when asked for, so ``code`` never loads sympy.
BUILTINS: dict[str, tuple[str, str, dict]] = {
    "math": ("verifiers.math", "MathVerifier", {}),
    "math_strict": ("verifiers.math", "MathVerifier", {"strict": True}),
    "arithmetic": ("verifiers.math", "MathVerifier", {}),
    "code": ("verifiers.code", "CodeVerifier", {}),
    "code_partial": ("verifiers.code", "CodeVerifier", {"partial": True}),
    "format": ("verifiers.format", "FormatVerifier", {}),
}

_registered: dict[str, Verifier] = {}  # explicit registrations in this process
_sources: dict[str, Any] = {}  # what was passed to register(), to recognise a repeat
_builtin_cache: dict[str, Verifier] = {}
_entry_point_cache: dict[str, Verifier] = {}


def register(name: str, verifier: Any = None, *, overwrite: bool = False):
    """Register ``verifier`` under ``name``; without ``verifier``, a decorator.

    ``@register("exact")`` on ``def exact(completion, reference) -> float`` returns the function
    unchanged. Re-registering a name raises unless ``overwrite=True``.
    """
    def add(obj):
        if not overwrite and name in _registered and not _same(_sources[name], obj):
            raise ConfigError(f"verifier {name!r} is already registered (pass overwrite=True)")
        _registered[name], _sources[name] = as_verifier(obj, name), obj
        return obj

    return add if verifier is None else add(verifier)


def _same(a: Any, b: Any) -> bool:
    """The same object, or the same function/class re-created by importing its module again."""
    key = lambda o: (getattr(o, "__module__", None), getattr(o, "__qualname__", None))  # noqa: E731
    return a is b or (callable(a) and key(a) == key(b) and key(a)[1] is not None and "<" not in key(a)[1])


def unregister(name: str) -> None:
    _registered.pop(name, None)
    _sources.pop(name, None)


def get(name: str) -> Verifier:
    """The verifier registered as ``name`` (ConfigError listing the known names otherwise)."""
    if name in _registered:
        return _registered[name]
    if name in BUILTINS:
        if name not in _builtin_cache:
            module, cls, kwargs = BUILTINS[name]
            v = getattr(importlib.import_module(module), cls)(**kwargs)
            v.name = name
            _builtin_cache[name] = v
        return _builtin_cache[name]
    v = _from_entry_points(name)
    if v is None:
        raise ConfigError(f"unknown verifier {name!r}; known: {', '.join(names())}")
    return v


def is_builtin(name: str) -> bool:
    """True when ``name`` resolves to an unmodified built-in (workers can rebuild it by name)."""
    return name in BUILTINS and name not in _registered


def names() -> list[str]:
    """All names :func:`get` can resolve (entry points included)."""
    eps = [ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)]
    return sorted(set(_registered) | set(BUILTINS) | set(eps))


def _from_entry_points(name: str) -> Verifier | None:
    if name in _entry_point_cache:
        return _entry_point_cache[name]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            try:
                v = as_verifier(ep.load(), name)
            except Exception as e:  # noqa: BLE001 - a broken plugin is a config problem
                raise ConfigError(f"verifier {name!r} from entry point {ep.value!r} failed to load: {e}") from e
            v.name = name
            _entry_point_cache[name] = v
            return v
    return None
