"""Name -> verifier registry: built-ins (imported on first use), ``register``, entry points, specs.

Lookup order in :func:`get`: names registered in this process, the built-ins, the
``reasoning_gym:<task>`` family, the ``rlvr.verifiers`` entry-point group of installed packages
(loaded lazily, once), then a *spec*:

* ``path/to/file.py:function`` -- the file is imported as a module (relative paths from the
  current directory), ``function`` taken from it;
* ``package.module:function`` -- ``importlib.import_module`` (the current directory is on the
  search path, as it is in the scoring workers);
* ``trl:<file or module>:<function>[(<literal arguments>)]`` -- a TRL reward function, called on
  whole batches as TRL's GRPOTrainer calls it (:mod:`verifiers.trl`), before the entry points.

A third-party package declares e.g. ``[project.entry-points."rlvr.verifiers"] mytask =
"mypkg.rewards:score"``. Whatever a spec or entry point names may be a function
``(completion, reference) -> float``, a Verifier subclass (built without arguments) or instance,
or any object (or class) with ``score(completion, reference)``; it is checked on load (it must
accept two positional arguments, and be Python code of your own file or package: a built-in such as
``builtins:eval``, a standard-library function or an installed library's function is refused, see
:func:`_not_a_verifier`). Which
of these a name means is decided by :func:`resolve` alone, in this process and in the workers.
Every name that :func:`worker_name` can spell is rebuilt by that name inside the scoring workers,
so it gets their hard timeout and crash isolation.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
import sysconfig
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from verifiers.base import FunctionVerifier, Verifier, _Duck, as_verifier
from verifiers.errors import VerifierError

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
            raise VerifierError(f"verifier {name!r} is already registered (pass overwrite=True)")
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


def resolve(name: str) -> str | None:
    """What ``name`` refers to, in the lookup order of the module docstring: ``registered``,
    ``builtin``, ``rgym``, ``trl`` (a TRL reward function, :mod:`verifiers.trl`), ``entry_point``,
    ``file`` or ``module`` (a spec); None when nothing.

    The one place that decides it: :func:`get` (in this process and in every scoring worker) and
    :func:`worker_name` both follow it, so a name means the same verifier everywhere (an installed
    entry point named like a file spec is that entry point in the workers too)."""
    if name in _registered:
        return "registered"
    if name in BUILTINS:
        return "builtin"
    if name.startswith(RGYM_PREFIX):
        return "rgym"
    if name.startswith(TRL_PREFIX):
        return "trl"
    if name in _entry_point_cache or _entry_point(name) is not None:
        return "entry_point"
    parsed = parse_spec(name)
    return parsed[0] if parsed is not None else None


def get(name: str) -> Verifier:
    """The verifier for a name or spec (module docstring); VerifierError, one line, otherwise."""
    if not isinstance(name, str) or not name.strip():
        raise VerifierError(f"a verifier name must be a non-empty string, got {name!r}")
    kind = resolve(name)
    if kind == "registered":
        return _registered[name]
    if kind == "builtin":
        if name not in _builtin_cache:
            module, cls, kwargs = BUILTINS[name]
            v = getattr(importlib.import_module(module), cls)(**kwargs)
            v.name = name
            _builtin_cache[name] = v
        return _builtin_cache[name]
    if kind == "rgym":
        if name not in _builtin_cache:
            from verifiers.rgym import ReasoningGymVerifier

            _builtin_cache[name] = ReasoningGymVerifier(name[len(RGYM_PREFIX):])
        return _builtin_cache[name]
    if kind == "trl":
        from verifiers.trl import load

        return load(name)
    if kind == "entry_point":
        return _from_entry_point(name)
    if kind is None:
        raise VerifierError(f"unknown verifier {name!r}; known: {', '.join(names())}; or give "
                            "path/to/file.py:function or package.module:function")
    return _from_spec(name, *parse_spec(name))


def is_builtin(name: str) -> bool:
    """True when ``name`` resolves to an unmodified built-in (workers can rebuild it by name)."""
    return name in BUILTINS and name not in _registered


RGYM_PREFIX = "reasoning_gym:"
TRL_PREFIX = "trl:"
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED = re.compile(rf"{_IDENT}(\.{_IDENT})*")
_spec_cache: dict[str, Verifier] = {}


def parse_spec(name: str) -> tuple[str, str, str] | None:
    """``("file", path, attr)`` for ``path.py:attr``, ``("module", module, attr)`` for
    ``package.module:attr``, None when ``name`` is no spec."""
    left, sep, attr = name.rpartition(":")
    if not sep or not _DOTTED.fullmatch(attr):
        return None
    if left.endswith(".py"):
        return "file", left, attr
    if _DOTTED.fullmatch(left):
        return "module", left, attr
    return None


def worker_name(name: str) -> str | None:
    """The name a scoring worker rebuilds the same verifier from (file specs made absolute), or
    None when only this process knows it (registered here: it has to be pickled). Follows
    :func:`resolve`, as the worker's :func:`get` does."""
    kind = resolve(name)
    if kind == "registered":
        return None
    if kind == "trl":
        from verifiers.trl import worker_name as trl_worker_name

        return trl_worker_name(name)
    if kind == "file":
        where, attr = parse_spec(name)[1:]
        return f"{Path(where).expanduser().resolve()}:{attr}"
    return name  # a built-in, an entry point or a module spec: importable by name in any process


def label(name: str) -> str:
    """Short name for metrics: ``file.py:function`` for a file spec (no folders), a TRL reward
    function's own name as TRL logs it (``accuracy_reward``), else ``name``."""
    if name.startswith(TRL_PREFIX) and name not in _registered:
        from verifiers.trl import label as trl_label

        return trl_label(name)
    parsed = parse_spec(name)
    if parsed is not None and parsed[0] == "file":
        return f"{Path(parsed[1]).name}:{parsed[2]}"
    return name


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _from_spec(name: str, kind: str, where: str, attr: str) -> Verifier:
    key = worker_name(name) or name
    if key in _spec_cache:
        return _spec_cache[key]
    if kind == "file":
        module = _import_file(name, Path(where).expanduser())
        origin = Path(where).name
    else:
        if _library_module(where):  # refused before importing it (some modules act on import)
            raise VerifierError(f"verifier {name!r} is not a verifier: {where} is a Python standard-library "
                                f"module ({_PLUGIN_HINT})")
        module = _import_module(name, where)
        origin = f"module {where}"
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            funcs = sorted(k for k, v in vars(module).items()
                           if callable(v) and not k.startswith("_") and getattr(v, "__module__", None) == module.__name__)
            hint = f" (it defines: {', '.join(funcs[:8])})" if funcs else ""
            raise VerifierError(f"verifier {name!r}: {origin} has no {attr!r}{hint}")
        obj = getattr(obj, part)
    v = load_object(obj, name)
    _spec_cache[key] = v
    return v


def _import_file(name: str, path: Path):
    if not path.is_file():
        raise VerifierError(f"verifier {name!r}: file {path} not found (relative to {os.getcwd()})")
    path = path.resolve()
    modname = f"_rlvr_verifier_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    if modname in sys.modules:
        return sys.modules[modname]
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise VerifierError(f"verifier {name!r}: {path} cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module  # classes and dataclasses defined there need their module
    try:
        spec.loader.exec_module(module)
    except BaseException as e:  # noqa: BLE001 - SystemExit in a user file is an import failure too
        sys.modules.pop(modname, None)
        if isinstance(e, KeyboardInterrupt):
            raise
        raise VerifierError(f"verifier {name!r}: importing {path.name} failed: {_one_line(f'{type(e).__name__}: {e}')}") from None
    return module


def _import_module(name: str, module: str):
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:  # scoring workers have the current directory on their path; be consistent here
        sys.path.append(cwd)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name):
            raise VerifierError(f"verifier {name!r}: no module named {e.name!r}") from None
        raise VerifierError(f"verifier {name!r}: importing {module} failed: {_one_line(f'{type(e).__name__}: {e}')}") from None
    except BaseException as e:  # noqa: BLE001
        if isinstance(e, KeyboardInterrupt):
            raise
        raise VerifierError(f"verifier {name!r}: importing {module} failed: {_one_line(f'{type(e).__name__}: {e}')}") from None
    finally:
        if added:
            sys.path.remove(cwd)


_PLUGIN_HINT = ("a verifier is a Verifier, or a function (completion, reference) -> float or a class or "
                "object with score() written in your own file or package")
_OWN_PACKAGES = ("rlvr", "verifiers", "evals")  # their verifiers are Verifier classes (or built-in names)


def _library_module(module: str | None) -> bool:
    """True for a module of Python itself (``builtins``, ``os``, ``subprocess``, ...), or none."""
    return not module or module.split(".")[0] in sys.stdlib_module_names


def _installed_library(module: str) -> bool:
    """True for a module of an installed library (its file under site-/dist-packages or Python's
    own library folder) or of this toolkit: not a user's plugin code."""
    if module.split(".")[0] in _OWN_PACKAGES:
        return True
    path = getattr(sys.modules.get(module), "__file__", None)
    if not path:
        return False
    parts = Path(path).resolve().parts
    if "site-packages" in parts or "dist-packages" in parts:
        return True
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    return Path(path).resolve().is_relative_to(stdlib)


def _not_a_verifier(obj: Any, declared: bool = False) -> str | None:
    """Why ``obj`` cannot be a verifier plugin, or None.

    A Verifier (subclass or instance) declares itself one. Anything else must be Python code of a
    user's plugin: a function (or ``functools.partial`` of one), a class or object whose ``score``
    is a Python function, or an object whose class defines ``__call__`` in Python, from a file or
    a module of the user's own (``declared``: named by an installed package's ``rlvr.verifiers``
    entry point, which declares it). Refused: built-in (C) callables such as ``eval``, ``exec``
    or ``os.rename``; functions, classes and objects of the standard library; and, unless declared,
    those of installed libraries (``numpy:save``) or of this toolkit -- wherever they are named from
    (``builtins:eval``, or a user file doing ``score = eval``): whatever they do with a completion
    is not scoring it."""
    if isinstance(obj, Verifier) or (isinstance(obj, type) and issubclass(obj, Verifier)):
        return None
    target = obj
    while isinstance(target, functools.partial):
        target = target.func
    if inspect.ismethod(target):
        target = target.__func__
    if inspect.isroutine(target) and not inspect.isfunction(target):  # eval, os.rename, str.join, ...
        name = getattr(target, "__qualname__", getattr(target, "__name__", repr(target)))
        return f"{getattr(target, '__module__', None) or 'builtins'}.{name} is a built-in function, not Python code"
    if inspect.isfunction(target) or isinstance(target, type):
        module, what = target.__module__, f"{target.__module__}.{target.__qualname__}"
        code = target if inspect.isfunction(target) else getattr(target, "score", None)
    else:
        module, what = type(target).__module__, f"a {type(target).__module__}.{type(target).__qualname__} object"
        code = getattr(target, "score", None) if hasattr(target, "score") else getattr(type(target), "__call__", None)
    if inspect.ismethod(code):
        code = code.__func__
    if _library_module(module):
        return f"{what} is from the Python standard library"
    if code is not None and not inspect.isfunction(code):
        return f"{what} is built in, not Python code"
    if not declared and _installed_library(module):
        top = module.split(".")[0]
        where = "this toolkit" if top in _OWN_PACKAGES else f"the installed library {top}"
        return (f"{what} is from {where}, which declares its verifiers as Verifier classes or "
                f"{ENTRY_POINT_GROUP!r} entry points")
    return None


def load_object(obj: Any, name: str, declared: bool = False) -> Verifier:
    """A checked :class:`Verifier` from what a spec or entry point (``declared``) names
    (VerifierError if unusable, :func:`_not_a_verifier`)."""
    why = _not_a_verifier(obj, declared)
    if why is not None:
        raise VerifierError(f"verifier {name!r} is not a verifier: {why} ({_PLUGIN_HINT})")
    if isinstance(obj, type) and not issubclass(obj, Verifier) and callable(getattr(obj, "score", None)):
        try:
            obj = obj()  # a class with score(): an instance of it
        except BaseException as e:  # noqa: BLE001 - SystemExit in a plugin's __init__ too
            if isinstance(e, KeyboardInterrupt):
                raise
            raise VerifierError(f"verifier {name!r}: {obj.__name__}() failed: {_one_line(f'{type(e).__name__}: {e}')}") from None
    try:
        v = as_verifier(obj, name)
    except TypeError:
        raise VerifierError(f"verifier {name!r} is a {type(obj).__name__}, not a verifier: need a function "
                            "(completion, reference) -> float, a Verifier, or an object with score()") from None
    except BaseException as e:  # noqa: BLE001 - a Verifier subclass whose __init__ needs arguments (or exits)
        if isinstance(e, KeyboardInterrupt):
            raise
        raise VerifierError(f"verifier {name!r} could not be built: {_one_line(f'{type(e).__name__}: {e}')}") from None
    check_signature(v, name)
    return v


def check_signature(v: Verifier, name: str) -> None:
    """VerifierError unless ``v`` can be called as ``(completion, reference)``."""
    if isinstance(v, FunctionVerifier):
        fn, what = v.fn, getattr(v.fn, "__name__", "function")
    elif isinstance(v, _Duck):
        fn, what = v.obj.score, f"{type(v.obj).__name__}.score"
    else:
        fn, what = v.score, f"{type(v).__name__}.score"
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin without a signature: find out when it is called
    try:
        sig.bind("", None)
    except TypeError:
        raise VerifierError(f"verifier {name!r}: {what}{sig} cannot be called as (completion, reference)") from None


def names() -> list[str]:
    """All names :func:`get` can resolve (entry points included)."""
    eps = [ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)]
    return sorted(set(_registered) | set(BUILTINS) | set(eps))


def _entry_point(name: str):
    """The installed ``rlvr.verifiers`` entry point called ``name`` (None if there is none)."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep
    return None


def _from_entry_point(name: str) -> Verifier:
    if name in _entry_point_cache:
        return _entry_point_cache[name]
    ep = _entry_point(name)
    try:
        obj = ep.load()
    except BaseException as e:  # noqa: BLE001 - a broken plugin (SystemExit included) is a config problem
        if isinstance(e, KeyboardInterrupt):
            raise
        raise VerifierError(f"verifier {name!r} from entry point {ep.value!r} failed to load: "
                            f"{_one_line(f'{type(e).__name__}: {e}')}") from None
    v = load_object(obj, name, declared=True)
    v.name = name
    _entry_point_cache[name] = v
    return v
