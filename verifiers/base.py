"""The verifier contract: ``(completion, reference) -> reward in [0, 1]`` plus per-item info.

A verifier is either a plain callable ``f(completion: str, reference) -> float`` or an object
with ``score(completion, reference) -> ScoreResult`` (and optionally ``score_batch``). Built-in
verifiers subclass :class:`Verifier`. :func:`safe_score` is the one place that turns whatever a
verifier does (returns a float, a bool, a ScoreResult, NaN, raises) into a valid ScoreResult.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence


@dataclass
class ScoreResult:
    """One scored completion: ``reward`` in [0, 1]; ``info`` has ``extracted``, ``reason``, ``time_s``."""

    reward: float
    info: dict = field(default_factory=dict)


class Verifier:
    """Base class. Subclasses implement :meth:`score`; ``__call__`` returns just the reward.

    ``default_timeout`` is the per-item hard limit (seconds) that ``score_batch`` uses when the
    caller gives none.
    """

    name: str = "verifier"
    default_timeout: float = 10.0

    def score(self, completion: str, reference: Any) -> ScoreResult:
        raise NotImplementedError

    def warm(self) -> None:
        """Pay one-off costs (imports, caches) up front; workers call it before timing items."""

    def score_batch(self, completions: Sequence[str], references: Sequence[Any]) -> list[ScoreResult]:
        return [safe_score(self, c, r) for c, r in zip(completions, references)]

    def __call__(self, completion: str, reference: Any) -> float:
        return safe_score(self, completion, reference).reward

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FunctionVerifier(Verifier):
    """Adapts a plain ``f(completion, reference) -> float`` callable to the :class:`Verifier` API."""

    def __init__(self, fn: Callable[[str, Any], Any], name: str | None = None):
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "function")

    def score(self, completion: str, reference: Any) -> ScoreResult:
        return to_result(self.fn(completion, reference))

    def __repr__(self) -> str:
        return f"FunctionVerifier({self.name})"


def as_verifier(obj: Any, name: str | None = None) -> Verifier:
    """A :class:`Verifier` for ``obj``: a Verifier instance, a Verifier subclass, an object with
    ``score``, or a plain callable."""
    if isinstance(obj, Verifier):
        return obj
    if isinstance(obj, type) and issubclass(obj, Verifier):
        return obj()
    if hasattr(obj, "score") and callable(obj.score):
        return _Duck(obj)
    if callable(obj):
        return FunctionVerifier(obj, name)
    raise TypeError(f"not a verifier: {obj!r} (need a callable or an object with score())")


class _Duck(Verifier):
    """Wraps a third-party object that has ``score`` (and maybe ``score_batch``)."""

    def __init__(self, obj: Any):
        self.obj = obj
        self.name = getattr(obj, "name", type(obj).__name__)
        self.default_timeout = float(getattr(obj, "default_timeout", Verifier.default_timeout))

    def score(self, completion: str, reference: Any) -> ScoreResult:
        return to_result(self.obj.score(completion, reference))

    def score_batch(self, completions, references):
        if hasattr(self.obj, "score_batch"):
            return [to_result(r) for r in self.obj.score_batch(list(completions), list(references))]
        return super().score_batch(completions, references)


def to_result(value: Any) -> ScoreResult:
    """ScoreResult from a verifier's return value: a number/bool, ``(reward, info)`` or ScoreResult."""
    if isinstance(value, ScoreResult):
        return value
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict):
        return ScoreResult(value[0], dict(value[1]))
    return ScoreResult(value, {})


def clean(result: ScoreResult) -> ScoreResult:
    """Clamp the reward to [0, 1]; a non-number, NaN or +-inf becomes 0 with a reason and counts
    as an error (``info["non_number"]`` / ``info["non_finite"]``: ``verifiers.check`` refuses it)."""
    info = dict(result.info or {})
    try:
        if isinstance(result.reward, (str, bytes)):
            raise TypeError("a string is not a reward")
        r = float(result.reward)
    except (TypeError, ValueError):
        info["reason"] = f"error: verifier returned a non-number: {type(result.reward).__name__}"
        info["error"], info["non_number"] = True, type(result.reward).__name__
        return ScoreResult(0.0, info)
    if not math.isfinite(r):
        info["non_finite"] = "NaN" if math.isnan(r) else "inf" if r > 0 else "-inf"
        info["reason"] = f"error: verifier returned {info['non_finite']}, not a finite number"
        info["error"] = True
        return ScoreResult(0.0, info)
    return ScoreResult(min(1.0, max(0.0, r)), info)


def safe_score(verifier: Verifier, completion: Any, reference: Any) -> ScoreResult:
    """Score one item; any exception becomes reward 0 with ``info['reason']`` (never raises).

    That includes ``SystemExit`` (a plugin calling ``sys.exit()``, which would otherwise end an
    in-process scorer silently) and other ``BaseException``s; only ``KeyboardInterrupt`` (Ctrl-C)
    goes through, and :class:`~verifiers.deadline.DeadlineExceeded` (the item's deadline, which the
    caller turns into a "timeout")."""
    from verifiers.deadline import DeadlineExceeded

    t0 = time.perf_counter()
    try:
        if not isinstance(completion, str):
            raise TypeError(f"completion must be a str, got {type(completion).__name__}")
        result = clean(to_result(verifier.score(completion, reference)))
    except (KeyboardInterrupt, DeadlineExceeded):  # Ctrl-C; the item's deadline (the caller's timeout)
        raise
    except BaseException as e:  # noqa: BLE001 - a verifier bug must not stop training
        result = ScoreResult(0.0, {"reason": f"error: {type(e).__name__}: {e}"[:500]})
    result.info.setdefault("time_s", round(time.perf_counter() - t0, 6))
    result.info.setdefault("reason", "correct" if result.reward >= 1.0 else "")
    return result


# ------------------------------------------------------------------------------ what happened
OUTCOMES = ("timeout", "crash", "violation")


def outcome(result: ScoreResult) -> str:
    """How scoring went for one item: ``ok``, ``timeout``, ``crash`` or ``violation``.

    ``violation``: the code sandbox caught the program doing something forbidden (``status``
    violation). ``timeout``: the hard per-item limit killed the worker, or the sandboxed program
    ran out of time (``info["timeout"]``). ``crash``: the verifier raised or returned a
    non-number, its worker process died, or a sandboxed program died without a verdict
    (``info["error"]``, a reason starting with ``error``, ``status`` crashed/error).
    """
    info = result.info or {}
    status = info.get("status")
    if status == "violation" or info.get("violation"):
        return "violation"
    if info.get("timeout") or status == "timeout":
        return "timeout"
    if info.get("error") or status in ("crashed", "error") or str(info.get("reason", "")).startswith("error"):
        return "crash"
    return "ok"


def outcome_rates(items: Iterable[Any]) -> dict[str, float]:
    """``{"verifier/timeout_rate", "verifier/crash_rate", "verifier/violation_rate"}``: the share of
    items that saw each outcome. An item is a ScoreResult, an outcome string, or a set of outcome
    strings (an item scored by several verifiers); all 0 for no items."""
    seen = [{outcome(o)} if isinstance(o, ScoreResult) else {o} if isinstance(o, str) else set(o) for o in items]
    n = max(1, len(seen))
    return {f"verifier/{k}_rate": sum(k in o for o in seen) / n for k in OUTCOMES}
