"""Rewards for sampled completions: the one path from examples + texts to ``verifiers``.

The trainer (``Trainer._score``) and the eval harness (``evals.harness``) both score through
:func:`score_examples`; what a recipe's ``reward`` section means is decided here:

* ``reward.verifiers: {math: 1.0, format: 0.1, my_rewards.py:length_penalty: -0.01}`` -- the
  reward is ``sum(weight * verifier reward)``; the first entry is the correctness verifier
  (``accuracy``, eval pass@k); the key ``task`` stands for each example's own verifier;
* otherwise ``reward.verifier`` (None: each example's own) with weight 1, plus ``format`` with
  weight ``reward.format_weight`` when that is not 0 (a shorthand for the mapping above).

Verifier errors (``verifiers.VerifierError``) become :class:`rlvr.errors.ConfigError` naming the
recipe field.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import verifiers
from rlvr.errors import ConfigError

TASK = "task"  # key in reward.verifiers: each example's own verifier

Term = tuple[str | None, float]  # (verifier name/spec, None = the example's own; weight)


def reward_terms(rc) -> list[Term]:
    """The weighted verifiers of a ``RewardConfig`` (see the module docstring)."""
    if rc.verifiers:
        return [(None if k == TASK else k, float(w)) for k, w in rc.verifiers.items()]
    terms: list[Term] = [(rc.verifier, 1.0)]
    if rc.format_weight:
        terms.append(("format", float(rc.format_weight)))
    return terms


def _field(rc) -> str:
    return "reward.verifiers" if rc.verifiers else "reward.verifier"


def validate_reward(rc) -> None:
    """Config-time checks of a ``RewardConfig``: ConfigError naming the field. Every named verifier
    that is not built in is resolved (a spec's file or module imported, its signature checked);
    building the built-ins, the task's own verifiers and the probe that catches non-number rewards
    wait for the data (:func:`check_reward`)."""
    if rc.workers < 0:
        raise ConfigError("reward.workers must be >= 0 (0 = score in the training process)")
    if not rc.timeout_s > 0:
        raise ConfigError("reward.timeout_s must be > 0")
    if rc.verifiers:
        if rc.verifier is not None:
            raise ConfigError("reward.verifier and reward.verifiers are both set; list every verifier "
                              "in reward.verifiers (the first one decides accuracy)")
        if rc.format_weight:
            raise ConfigError("reward.format_weight is a shorthand for reward.verifiers: {<verifier>: 1, "
                              "format: <weight>}; with reward.verifiers, list format there")
        for key, weight in rc.verifiers.items():
            if not isinstance(key, str) or not key.strip():
                raise ConfigError(f"reward.verifiers: a key must be a verifier name or spec, got {key!r}")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise ConfigError(f"reward.verifiers.{key}: weight must be a finite number, got {weight!r}")
    for spec, _ in reward_terms(rc):
        if spec is not None and not verifiers.is_builtin(spec):  # built-ins are built at trainer start
            try:
                verifiers.get(spec)
            except Exception as e:  # noqa: BLE001 - VerifierError, or a built-in that cannot run here
                raise ConfigError(f"{_field(rc)}: {_message(spec, e)}") from None


def _message(name: str, e: Exception) -> str:
    """One line: a VerifierError's own message (it names the verifier), else type and message."""
    if isinstance(e, verifiers.VerifierError):
        return str(e)
    text = " ".join(f"{type(e).__name__}: {e}".split())
    return f"verifier {name!r} cannot be used: {text[:300]}"


def _names(terms: Sequence[Term], examples: Sequence[Any]) -> dict[str, Any]:
    """Every verifier name the terms use over ``examples`` -> the first reference it will see."""
    out: dict[str, Any] = {}
    for spec, _ in terms:
        for ex in examples:
            name = spec or ex.verifier
            out.setdefault(name, ex.reference)
            if spec is not None:
                break
    return out


def check_terms(terms: Sequence[Term], examples: Sequence[Any], *, workers: int | None, timeout: float | None,
                field: str = "verifier") -> None:
    """Before any model loads: every verifier the terms use on ``examples`` resolves, can be built
    in a scoring worker and returns a number for a probe (``verifiers.check``); else ConfigError."""
    for name, reference in _names(terms, examples).items():
        try:
            verifiers.check(name, reference, workers=workers, timeout=timeout)
        except Exception as e:  # noqa: BLE001 - VerifierError, or a built-in that cannot run here
            raise ConfigError(f"{field}: {_message(name, e)}") from None


def check_reward(rc, examples: Sequence[Any]) -> None:
    """:func:`check_terms` for a ``RewardConfig`` (the trainer calls it right after loading data)."""
    check_terms(reward_terms(rc), examples, workers=rc.workers, timeout=rc.timeout_s, field=_field(rc))


def eval_verifier(rc) -> str | None:
    """The correctness verifier evaluation uses: the first term's (None: each example's own)."""
    return reward_terms(rc)[0][0]


def reward_labels(rc, examples: Sequence[Any]) -> list[str]:
    """Every ``reward/<label>`` the terms can log over ``examples`` (the same keys on every step
    and process, NaN where a verifier scored nothing that step)."""
    return [verifiers.label(name) for name in _names(reward_terms(rc), examples)]


def score_examples(examples: Sequence[Any], texts: Sequence[str], n: int, terms: Sequence[Term], *,
                   workers: int | None, timeout: float | None) -> verifiers.WeightedScores:
    """Score ``texts`` (sample i answers ``examples[i // n]``) with the weighted ``terms``.

    Every verifier runs in the scoring workers (``workers`` processes, ``timeout`` seconds hard
    limit per item; ``workers=0``: in this process) -- see ``verifiers.score_weighted``.
    """
    if len(texts) != len(examples) * n:
        raise ValueError(f"{len(texts)} completions for {len(examples)} examples x {n} samples")
    refs = [examples[i // n].reference for i in range(len(texts))]
    wterms = [(spec if spec is not None else [examples[i // n].verifier for i in range(len(texts))], w)
              for spec, w in terms]
    return verifiers.score_weighted(list(texts), refs, wterms, workers=workers, timeout=timeout)
