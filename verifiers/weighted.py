"""Weighted combinations of verifiers.

* :func:`score_weighted` -- what training uses: each verifier scores the batch on its own (in the
  scoring workers, with its own hard timeout), the reward is ``sum_i w_i r_i`` (weights may be
  negative: penalties), and each verifier's mean reward and the timeout/crash/violation rates
  are kept for logging.
* :class:`Combined` -- one verifier object whose reward is ``sum_i w_i r_i / sum_i w_i`` (stays in
  [0, 1]); register it under a name to use a combination wherever one verifier name is expected.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from verifiers.base import ScoreResult, Verifier, outcome, outcome_rates, safe_score
from verifiers.errors import VerifierError

@dataclass
class WeightedScores:
    """Result of :func:`score_weighted` for N items.

    ``rewards[i]``: the weighted total. ``primary[i]``: the first verifier's result (correctness,
    extracted answer). ``parts[label][i]``: one verifier's reward for item i (None when that
    verifier did not score item i). ``outcomes[i]``: what item i's verifiers saw, a subset of
    {timeout, crash, violation} (empty: all scored normally).
    """

    rewards: list[float]
    primary: list[ScoreResult]
    parts: dict[str, list[float | None]]
    outcomes: list[frozenset[str]]
    # TRL reward functions: log_metric means, as ``<label>/<metric>``; items for which every
    # verifier was a TRL function that returned None (reward 0: nothing applied to them)
    extra: dict[str, float] = field(default_factory=dict)
    unscorable: list[bool] = field(default_factory=list)

    def metrics(self, labels: Sequence[str] = ()) -> dict[str, float]:
        """``reward/<label>`` (mean over the items that verifier scored: a TRL function's None is
        left out, as TRL's nanmean does; NaN for a label in ``labels`` that scored none),
        ``reward/<label>/<metric>`` (a TRL function's ``log_metric``) and
        ``verifier/{timeout,crash,violation}_rate`` (share of items for which at least one verifier
        timed out / crashed / reported a violation)."""
        out = {}
        for lab in [*self.parts, *(x for x in labels if x not in self.parts)]:
            vals = [r for r in self.parts.get(lab, ()) if r is not None]
            out[f"reward/{lab}"] = sum(vals) / len(vals) if vals else float("nan")
        out.update({f"reward/{k}": v for k, v in self.extra.items()})
        out.update(outcome_rates(self.outcomes))
        return out


log = logging.getLogger(__name__)


def labels_for(names: Sequence[str]) -> dict[str, str]:
    """The metric label of each distinct name (:func:`verifiers.label`); when two names would share
    one (two files with the same name and function, a TRL factory with two sets of arguments), the
    later keeps its full name."""
    from verifiers.registry import label

    out: dict[str, str] = {}
    for name in names:
        if name in out:
            continue
        lab = label(name)
        out[name] = name if lab in out.values() else lab
    return out


def score_weighted(completions: Sequence[str], references: Sequence[Any],
                   terms: Sequence[tuple[str | Sequence[str], float]], *, workers: int | None = None,
                   timeout: float | None = None, items: Sequence[Any] | None = None,
                   state: dict | None = None) -> WeightedScores:
    """Score with several verifiers and add up ``weight * reward`` per item.

    ``terms``: ``[(verifier, weight), ...]``; ``verifier`` is a name/spec used for every item or a
    sequence with one name per item (e.g. each example's own task verifier). Each distinct name
    scores the items that need it once, through :func:`verifiers.score_batch` (``workers``,
    ``timeout``: its hard per-item limit), so a name used by two terms costs one pass.

    A TRL reward function (``trl:`` spec, :mod:`verifiers.trl`) scores its items in one call, given
    ``items[i]`` (a :class:`verifiers.trl.Item`: the prompt, the row's columns, the token ids; None:
    built from ``references[i]``) and ``state`` (its ``trainer_state``). A None it returns adds
    nothing to the weighted sum (TRL's ``nansum``) and is left out of its ``reward/<label>`` mean.
    """
    from verifiers import score_batch
    from verifiers import trl

    if not terms:
        raise VerifierError("score_weighted needs at least one (verifier, weight) term")
    n = len(completions)
    if len(references) != n:
        raise ValueError(f"{n} completions but {len(references)} references")
    per_term: list[tuple[list[str], float]] = []
    for verifier, weight in terms:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise VerifierError(f"verifier {verifier!r}: weight must be a finite number, got {weight!r}")
        names = [verifier] * n if isinstance(verifier, str) else list(verifier)
        if len(names) != n:
            raise ValueError(f"{len(names)} verifier names for {n} items")
        per_term.append((names, float(weight)))
    need: dict[str, set[int]] = {}  # name -> items it scores (insertion order: the terms' order)
    for names, _ in per_term:
        for i, name in enumerate(names):
            need.setdefault(name, set()).add(i)
    results: dict[str, dict[int, ScoreResult]] = {}
    labels = labels_for(list(need))
    extra: dict[str, float] = {}
    for name, wanted in need.items():
        idx = sorted(wanted)
        if trl.is_trl(name):
            got = trl.score(name, [completions[i] for i in idx],
                            [items[i] if items is not None else trl.item_of(references[i]) for i in idx],
                            workers=workers, timeout=timeout, state=state, positions=idx)
            res = got.results
            extra.update({f"{labels[name]}/{k}": v for k, v in got.metrics.items()})
        else:
            res = score_batch(name, [completions[i] for i in idx], [references[i] for i in idx],
                              workers=workers, timeout=timeout)
        results[name] = dict(zip(idx, res))
    rewards = [0.0] * n
    for names, weight in per_term:
        for i, name in enumerate(names):
            rewards[i] += weight * float(results[name][i].reward)  # a None scores 0.0: TRL's nansum
    primary = [results[per_term[0][0][i]][i] for i in range(n)]
    parts: dict[str, list[float | None]] = {}
    for name, by_item in results.items():
        parts[labels[name]] = [by_item[i].reward if i in by_item and not by_item[i].info.get("none") else None
                               for i in range(n)]
    outcomes = [frozenset(outcome(r[i]) for r in results.values() if i in r) - {"ok"} for i in range(n)]
    unscorable = [all(r[i].info.get("none") for r in results.values() if i in r) for i in range(n)]
    if any(unscorable):
        bad = [i for i, u in enumerate(unscorable) if u]
        shown = ", ".join(map(str, bad[:8])) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
        log.warning("every reward function returned None for %d of %d completions (batch positions %s); they score 0",
                    len(bad), n, shown)
    return WeightedScores(rewards, primary, parts, outcomes, extra, unscorable)


class Combined(Verifier):
    """Weight-normalised sum of named verifiers, all given the same reference.

    ``Combined({"math": 1.0, "format": 0.1})`` gives 1.0 for a correct boxed answer, 0.909 for a
    correct unboxed one, 0.091 for a wrong boxed one. ``info`` holds each part's reward under
    ``parts`` and the first part's ``extracted``. Register it with ``verifiers.register(name, c)``.
    """

    def __init__(self, weights: dict[str, float], name: str | None = None):
        if not weights:
            raise ValueError("combine() needs at least one verifier")
        bad = {k: w for k, w in weights.items() if not isinstance(w, (int, float)) or w < 0}
        if bad or sum(weights.values()) <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {weights}")
        batch = [k for k in weights if str(k).startswith("trl:")]
        if batch:
            raise VerifierError(f"verifier {batch[0]!r} is a TRL reward function, which scores whole batches: "
                                "list it in reward.verifiers (score_weighted), not in combine()")
        from verifiers.registry import get

        self.weights = {k: float(w) for k, w in weights.items()}
        self.parts = {k: get(k) for k in self.weights}  # fail early on unknown names
        self.name = name or "+".join(f"{w:g}*{k}" for k, w in self.weights.items())
        self.default_timeout = sum(v.default_timeout for v in self.parts.values())

    def __getstate__(self) -> dict:  # parts are rebuilt by name in a worker
        return {"weights": self.weights, "name": self.name}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["weights"], state["name"])

    def __repr__(self) -> str:
        return f"Combined({self.weights})"

    def warm(self) -> None:
        for v in self.parts.values():
            v.warm()

    def score(self, completion: str, reference: Any) -> ScoreResult:
        total = sum(self.weights.values())
        parts, reward, first = {}, 0.0, None
        for k, w in self.weights.items():
            r = safe_score(self.parts[k], completion, reference)
            parts[k] = r.reward
            reward += w * r.reward / total
            first = first or r
        info = {"parts": parts, "extracted": first.info.get("extracted"),
                "reason": "; ".join(f"{k}={v:g}" for k, v in parts.items())}
        return ScoreResult(reward, info)
