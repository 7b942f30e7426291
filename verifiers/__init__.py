"""Verifiable rewards: ``(completion, reference) -> reward in [0, 1]``, scored safely and fast.

Public API::

    verifiers.get(name) -> Verifier               # "math", "math_strict", "arithmetic", "code",
                                                  # "code_partial", "format", registered, plugins
    @verifiers.register(name)                     # a callable (completion, reference) -> float,
                                                  # a Verifier subclass/instance, or obj.score()
    verifiers.score_batch(name_or_verifier, completions, references, workers=N, timeout=s)
        -> list[ScoreResult]                      # .reward, .info {extracted, reason, time_s, ...}
    verifiers.combine({"math": 1.0, "format": 0.1}) -> Verifier
    verifiers.close()                             # stop the shared worker pools (also atexit)

``score_batch`` never raises for a bad completion: a crash or timeout is reward 0 with a reason.
With ``workers >= 1`` items are scored in persistent worker processes with a hard per-item
timeout (the worker is killed and replaced); ``workers=0`` scores in this process (for
debugging: exception-safe, but no timeout can interrupt a runaway item).
"""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
from typing import Any, Sequence

from verifiers.base import FunctionVerifier, ScoreResult, Verifier, as_verifier, safe_score
from verifiers.registry import ENTRY_POINT_GROUP, get, is_builtin, names, register, unregister

__all__ = ["ScoreResult", "Verifier", "FunctionVerifier", "get", "register", "unregister", "names",
           "score_batch", "combine", "close", "default_workers", "ENTRY_POINT_GROUP"]

log = logging.getLogger(__name__)


def default_workers() -> int:
    """Worker processes used when ``workers`` is None: the CPU count, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def score_batch(verifier: str | Any, completions: Sequence[str], references: Sequence[Any], *,
                workers: int | None = None, timeout: float | None = None) -> list[ScoreResult]:
    """Score ``completions[i]`` against ``references[i]``; one :class:`ScoreResult` per item.

    ``verifier`` is a registered name or a verifier object/callable. ``timeout`` is the hard
    per-item limit in seconds (default: the verifier's ``default_timeout``). A verifier that
    cannot be sent to a worker process (a closure, a lambda, something defined in ``__main__``)
    is scored in-process, with ``info["in_process"] = True``.
    """
    if len(completions) != len(references):
        raise ValueError(f"{len(completions)} completions but {len(references)} references")
    v = get(verifier) if isinstance(verifier, str) else as_verifier(verifier)
    if not completions:
        return []
    workers = default_workers() if workers is None else int(workers)
    timeout = float(timeout if timeout is not None else v.default_timeout)
    if workers == 0:
        return _in_process(v, completions, references)
    key, spec = _spec(verifier, v)
    if spec is None:
        log.warning("verifier %r cannot be sent to worker processes; scoring in-process", v)
        return _in_process(v, completions, references, flag=True)
    from verifiers.pool import get_pool

    try:
        return get_pool(workers).score(key, spec, list(completions), list(references), timeout=timeout)
    except OSError as e:  # cannot start processes (fd or pid limits): score here rather than stop training
        log.warning("scoring workers unavailable (%s); scoring in-process without hard timeouts", e)
        return _in_process(v, completions, references, flag=True)


def _in_process(v: Verifier, completions, references, flag: bool = False) -> list[ScoreResult]:
    """Score here: item by item, or through ``v.score_batch`` when the verifier batches itself.

    ``flag`` marks each result with ``info["in_process"] = True`` (a pool was asked for).
    """
    out = None
    if type(v).score_batch is not Verifier.score_batch:
        try:
            batch = v.score_batch(list(completions), list(references))
            if len(batch) == len(completions):
                out = [safe_score(_Fixed(r), c, None) for r, c in zip(batch, completions)]
        except Exception:  # noqa: BLE001 - a failing batch falls back to one item at a time
            pass
    if out is None:
        out = [safe_score(v, c, r) for c, r in zip(completions, references)]
    for r in out:
        if flag:
            r.info["in_process"] = True
    return out


class _Fixed(Verifier):
    """Feeds an already computed result through ``safe_score`` (validation, clamping, info)."""

    def __init__(self, result):
        self.result = result

    def score(self, completion, reference):
        return self.result


def _spec(name_or_obj: Any, v: Verifier) -> tuple[str, Any]:
    """How a worker rebuilds ``v``: ("name", n) for built-ins, else a pickle; (key, None) if neither."""
    if isinstance(name_or_obj, str) and is_builtin(name_or_obj):
        return f"name:{name_or_obj}", ("name", name_or_obj)
    try:
        blob = pickle.dumps(v)
    except Exception:  # noqa: BLE001 - closures, lambdas, live handles
        return "", None
    if b"__main__" in blob:  # a worker cannot import the parent's __main__
        return "", None
    return "pickle:" + hashlib.sha1(blob).hexdigest(), ("pickle", blob)


def combine(weights: dict[str, float], name: str | None = None) -> Verifier:
    """A verifier whose reward is the weight-normalised sum of the named verifiers' rewards."""
    from verifiers.weighted import Combined

    return Combined(weights, name=name)


def close() -> None:
    """Stop the shared worker pools and sandboxes (also done automatically at exit)."""
    from verifiers.pool import close_pools
    from verifiers.sandbox import _close_all

    close_pools()
    _close_all()
