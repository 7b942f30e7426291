"""Rewards for sampled completions: the one path from examples + texts to ``verifiers``.

The trainer (``Trainer._score``) and the eval harness (``evals.harness``) both score through
:func:`score_examples`; what a recipe's ``reward`` section means is decided here:

* ``reward.verifiers: {math: 1.0, format: 0.1, my_rewards.py:length_penalty: -0.01}`` -- the
  reward is ``sum(weight * verifier reward)``; the first entry is the correctness verifier
  (``accuracy``, eval pass@k); the key ``task`` stands for each example's own verifier;
* otherwise ``reward.verifier`` (None: each example's own) with weight 1, plus ``format`` with
  weight ``reward.format_weight`` when that is not 0 (a shorthand for the mapping above).

A TRL reward function (``trl:`` spec, :mod:`verifiers.trl`) is called on the whole batch with
what TRL would give it (:func:`trl_item`): the prompt as the data gave it, the row's other columns
as keyword lists, the completion's token ids and a ``trainer_state``.

Verifier errors (``verifiers.VerifierError``) become :class:`rlvr.errors.ConfigError` naming the
recipe field.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import verifiers
import verifiers.trl
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
    """Every verifier name the terms use over ``examples`` -> the first example it will see."""
    out: dict[str, Any] = {}
    for spec, _ in terms:
        for ex in examples:
            name = spec or ex.verifier
            if not name:
                raise ConfigError(
                    f"the task's verifier: example {ex.id} has no reference for a built-in verifier (TRL-format "
                    "data without data.reference_column); set data.reference_column to the column holding the "
                    "answer, or list only TRL reward functions (trl:...) in reward.verifiers")
            out.setdefault(name, ex)
            if spec is not None:
                break
    return out


def trl_item(example: Any, completion_ids: Sequence[int] | None = None):
    """What a TRL reward function gets for a completion of ``example``: the prompt as the data gave
    it (text for a plain-text TRL row, else the chat messages the model saw), the row's columns (a
    TRL-format row: all but ``prompt``; any other example: its ``reference``) and the token ids."""
    from verifiers.trl import Item

    prompt = example.plain_prompt if example.plain_prompt is not None else example.prompt
    columns = dict(example.columns) if example.columns is not None else {"reference": example.reference}
    return Item(prompt, columns, None if completion_ids is None else list(completion_ids))


def check_terms(terms: Sequence[Term], examples: Sequence[Any], *, workers: int | None, timeout: float | None,
                field: str = "verifier") -> None:
    """Before any model loads: every verifier the terms use on ``examples`` resolves, can be built
    in a scoring worker and returns a number for a probe (``verifiers.check``; a TRL reward
    function is also checked against the data's columns); else ConfigError."""
    for name, ex in _names(terms, examples).items():
        try:
            verifiers.check(name, trl_item(ex) if verifiers.trl.is_trl(name) else ex.reference,
                            workers=workers, timeout=timeout)
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
    from verifiers.weighted import labels_for

    return list(labels_for(list(_names(reward_terms(rc), examples))).values())


def score_examples(examples: Sequence[Any], texts: Sequence[str], n: int, terms: Sequence[Term], *,
                   workers: int | None, timeout: float | None,
                   completion_ids: Sequence[Sequence[int]] | None = None,
                   state: dict | None = None) -> verifiers.WeightedScores:
    """Score ``texts`` (sample i answers ``examples[i // n]``) with the weighted ``terms``.

    Every verifier runs in the scoring workers (``workers`` processes, ``timeout`` seconds hard
    limit per item; ``workers=0``: in this process) -- see ``verifiers.score_weighted``.
    ``completion_ids`` (the sampled token ids, EOS included when sampled) and ``state`` (fields of
    the ``trainer_state``) are what TRL reward functions get besides the texts.
    """
    if len(texts) != len(examples) * n:
        raise ValueError(f"{len(texts)} completions for {len(examples)} examples x {n} samples")
    refs = [examples[i // n].reference for i in range(len(texts))]
    wterms = [(spec if spec is not None else [examples[i // n].verifier for i in range(len(texts))], w)
              for spec, w in terms]
    items = None
    if any(verifiers.trl.is_trl(name) for spec, _ in wterms for name in ([spec] if isinstance(spec, str) else spec)):
        items = [trl_item(examples[i // n], None if completion_ids is None else completion_ids[i])
                 for i in range(len(texts))]
    return verifiers.score_weighted(list(texts), refs, wterms, workers=workers, timeout=timeout, items=items,
                                    state=state)
