"""Verifiable rewards: ``(completion, reference) -> reward in [0, 1]``, scored safely and fast.

Public API::

    verifiers.get(name) -> Verifier               # "math", "math_strict", "arithmetic", "code",
                                                  # "code_partial", "format", "reasoning_gym:<task>",
                                                  # registered, plugins, "path/file.py:function",
                                                  # "package.module:function", and TRL reward
                                                  # functions "trl:<file or module>:fn[(args)]"
                                                  # (verifiers.trl: called on whole batches)
    verifiers.check(name, reference)              # get + a probe through the workers: VerifierError
                                                  # (one line) for an unusable verifier
    @verifiers.register(name)                     # a callable (completion, reference) -> float,
                                                  # a Verifier subclass/instance, or obj.score()
    verifiers.score_batch(name_or_verifier, completions, references, workers=N, timeout=s)
        -> list[ScoreResult]                      # .reward, .info {extracted, reason, time_s, ...}
    verifiers.score_weighted(completions, references, [("math", 1.0), ("format", 0.1)], ...)
        -> WeightedScores                         # totals, per-verifier rewards, outcome rates
    verifiers.outcome(result) / outcome_rates(results)  # ok | timeout | crash | violation
    verifiers.combine({"math": 1.0, "format": 0.1}) -> Verifier
    verifiers.close()                             # stop the shared worker pools (also atexit)

``score_batch`` never raises for a bad completion: a crash or timeout is reward 0 with a reason.
With ``workers >= 1`` items are scored in persistent worker processes with a hard per-item
timeout (the worker is killed and replaced); ``workers=0`` scores in this process, each item under
the same deadline (:mod:`verifiers.deadline`: it interrupts Python code in any thread; a single C
call that never returns is cut off only by a worker process). Built-ins, specs,
``reasoning_gym:<task>`` and entry points are rebuilt by name in the workers; a verifier registered
in this process is pickled to them.
"""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
import sys
import time
from typing import Any, Sequence

from verifiers.base import (FunctionVerifier, ScoreResult, Verifier, as_verifier, outcome, outcome_rates,
                            safe_score)
from verifiers.errors import VerifierError
from verifiers import registry
from verifiers.registry import (ENTRY_POINT_GROUP, RGYM_PREFIX, TRL_PREFIX, get, is_builtin, label, names, parse_spec,
                                register, unregister, worker_name)
from verifiers.weighted import WeightedScores, score_weighted

__all__ = ["ScoreResult", "Verifier", "FunctionVerifier", "VerifierError", "get", "check", "register",
           "unregister", "names", "label", "parse_spec", "score_batch", "score_weighted", "WeightedScores",
           "outcome", "outcome_rates", "combine", "close", "default_workers", "ENTRY_POINT_GROUP"]

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
    if isinstance(verifier, str) and verifier.startswith(TRL_PREFIX) and verifier not in registry._registered:
        from verifiers import trl

        # a TRL reward function: one call on the batch; a reference is its row (verifiers.trl.item_of)
        return trl.score(verifier, list(completions), [trl.item_of(r) for r in references], workers=workers,
                         timeout=timeout).results
    v = get(verifier) if isinstance(verifier, str) else as_verifier(verifier)
    if not completions:
        return []
    workers = default_workers() if workers is None else int(workers)
    timeout = float(timeout if timeout is not None else v.default_timeout)
    if workers == 0:
        return _in_process(v, completions, references, timeout=timeout)
    key, spec = _spec(verifier, v)
    if spec is None:
        log.warning("verifier %r cannot be sent to worker processes; scoring in-process", v)
        return _in_process(v, completions, references, flag=True, timeout=timeout)
    from verifiers.pool import get_pool

    try:
        return get_pool(workers).score(key, spec, list(completions), list(references), timeout=timeout)
    except OSError as e:  # cannot start processes (fd or pid limits): score here rather than stop training
        log.warning("scoring workers unavailable (%s); scoring in-process (deadline by a watchdog thread)", e)
        return _in_process(v, completions, references, flag=True, timeout=timeout)


def _in_process(v: Verifier, completions, references, flag: bool = False,
                timeout: float | None = None) -> list[ScoreResult]:
    """Score here: item by item, or through ``v.score_batch`` when the verifier batches itself.

    ``timeout``: seconds per item (:class:`verifiers.deadline.ItemDeadline`; a batch gets
    ``timeout`` per item in all and, over that, is scored again item by item); an item over it
    scores 0 with reason ``timeout``. ``flag`` marks each result with ``info["in_process"] = True``
    (a pool was asked for).
    """
    from verifiers.deadline import ItemDeadline

    out = None
    if type(v).score_batch is not Verifier.score_batch:
        try:
            with ItemDeadline(timeout * len(completions) if timeout else None) as d:
                batch, late = d.run(v.score_batch, list(completions), list(references))
            if not late and len(batch) == len(completions):
                out = [safe_score(_Fixed(r), c, None) for r, c in zip(batch, completions)]
        except KeyboardInterrupt:
            raise
        except BaseException:  # noqa: BLE001 - a failing (or exiting) batch falls back to one item at a time
            pass
    if out is None:
        out = []
        with ItemDeadline(timeout) as d:
            for c, r in zip(completions, references):
                t0 = time.perf_counter()
                result, late = d.run(safe_score, v, c, r)
                out.append(result if not late else ScoreResult(0.0, {
                    "reason": "timeout", "timeout": True, "extracted": None,
                    "time_s": round(time.perf_counter() - t0, 3)}))
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
    """How a worker rebuilds ``v``: ("name", n, path) when a name or spec says (see
    :func:`verifiers.registry.worker_name`), else ("pickle", bytes, path); (key, None) if neither.

    ``path`` (this process's current directory and ``sys.path``) is added to a worker's module
    search path first: a pool outlives a ``chdir`` or a ``sys.path`` change in this process, and
    a module spec, a pickled function's module or an entry point must be found there as here.
    """
    path = [os.getcwd(), *(p for p in sys.path if p)]
    wname = worker_name(name_or_obj) if isinstance(name_or_obj, str) else None
    if wname is not None:
        return f"name:{wname}", ("name", wname, path)
    try:
        blob = pickle.dumps(v)
    except Exception:  # noqa: BLE001 - closures, lambdas, live handles
        return "", None
    if b"__main__" in blob:  # a worker cannot import the parent's __main__
        return "", None
    return "pickle:" + hashlib.sha1(blob).hexdigest(), ("pickle", blob, path)


PROBES = ("", "The answer is \\boxed{42}.")  # completions a verifier is tried on before use


def check(name: str, reference: Any = None, *, workers: int | None = None, timeout: float | None = None) -> Verifier:
    """The verifier ``name`` resolves to, checked for use: VerifierError (one line, naming it)
    when it is unknown, fails to import, has the wrong signature, cannot be built in a scoring
    worker, or returns a non-number, NaN or inf for a probe completion scored against ``reference`` (through
    the same workers as real scoring, so a verifier that hangs on the probe is cut off at the
    timeout). Built-in verifiers are trusted and not probed. A probe that raises or times out is
    not an error: such items score 0 with their reason at training time too.
    """
    if name.startswith(TRL_PREFIX) and name not in registry._registered:
        from verifiers import trl

        return trl.check(name, trl.item_of(reference) if reference is not None else None, workers=workers,
                         timeout=timeout)
    v = get(name)
    if is_builtin(name) or name.startswith(RGYM_PREFIX):
        return v
    for r in score_batch(name, list(PROBES), [reference] * len(PROBES), workers=workers, timeout=timeout):
        if r.info.get("build_error"):
            raise VerifierError(f"verifier {name!r}: {r.info.get('reason')}")
        if r.info.get("non_number"):
            raise VerifierError(f"verifier {name!r} returned a {r.info['non_number']}, not a number "
                                "(a verifier returns a reward in [0, 1])")
        if r.info.get("non_finite"):
            raise VerifierError(f"verifier {name!r} returned {r.info['non_finite']}, not a finite number "
                                "(a verifier returns a reward in [0, 1])")
    return v


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
