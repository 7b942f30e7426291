"""The update-rule protocol: ``rule(learner, inputs) -> metrics``.

A rule reads the batch in :class:`UpdateInputs`, runs its forward passes through the learner's
public interface (``learner.logprobs`` / ``learner.values``, so the frozen-prefix fast path applies
to every pass; ``learner.apply_gradients`` for the agreed optimizer step; see
:mod:`rlvr.learner`), changes the policy (and critic) in place, and returns float metrics for the
step's log. It declares what it needs from the run with its registration (:class:`RuleNeeds`); the
trainer checks the declarations, never the rule's name.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

Rule = Callable[[Any, "UpdateInputs"], dict[str, float]]
UPDATES: dict[str, Rule] = {}


@dataclass(frozen=True)
class RuleNeeds:
    """What an update rule needs from the run.

    fsdp      it runs with sharded models (``trainer.distributed=fsdp2``); ``fsdp_why`` says why not
    """

    fsdp: bool = True
    fsdp_why: str = ""


NEEDS: dict[str, RuleNeeds] = {}


def register(name: str, *, fsdp: bool = True, fsdp_why: str = "") -> Callable[[Rule], Rule]:
    """Decorator: ``@register("trpo", fsdp=False, fsdp_why=...)`` makes ``UPDATES["trpo"]`` the rule
    and ``NEEDS["trpo"]`` its declaration (a second, different rule under the name raises)."""

    def deco(fn: Rule) -> Rule:
        if UPDATES.get(name, fn) is not fn:
            raise ValueError(f"update rule {name!r} is already registered")
        UPDATES[name] = fn
        NEEDS[name] = RuleNeeds(fsdp, fsdp_why)
        return fn

    return deco


def combine_stat(name: str, values: list[Any], *, summed: bool) -> float | None:
    """One number for a stat logged once per micro-batch (``summed``: within one mini-batch) or
    per mini-batch: ``loss/*`` pieces are summed within a mini-batch (each is already scaled by the
    mini-batch totals), ``*/max`` and ``*/min`` take the max / min of the finite values (a
    micro-batch without trained tokens reports -inf / inf), the rest their mean. None when a max or
    min has no finite value (no trained token at all)."""
    vals = [float(v) for v in values]
    if name.endswith(("/max", "/min")):
        finite = [v for v in vals if math.isfinite(v)]
        return (max if name.endswith("/max") else min)(finite) if finite else None
    if summed and name.startswith("loss/"):
        return sum(vals)
    return sum(vals) / len(vals)


def combine_stats(stats: dict[str, list[Any]], *, summed: bool) -> dict[str, float]:
    """:func:`combine_stat` of every stat that has values (a max/min with no finite value is left out)."""
    out = {k: combine_stat(k, v, summed=summed) for k, v in stats.items() if v}
    return {k: v for k, v in out.items() if v is not None}


@dataclass
class UpdateInputs:
    """One step's training batch, N samples x R response positions.

    batch       the packed rollout (``Rollout.to_tensors`` + ``boundary_hidden``): input_ids,
                attention_mask, response_mask [N, R], group_ids [N], sampler_logprobs [N, R], ...
    mask        [N, R] tokens that are trained on (overlong masking may remove some)
    old_logp    [N, R] log pi_old;  ref_logp [N, R] log pi_ref or None
    adv         [N, R] advantages;  values / returns [N, R] (critic presets) or None
    is_weights  [N, R] rollout/trainer importance weights (TIS, sequence IS) or None
    scores      [N] the samples' rewards (pairwise rules form pairs from them)
    policy      False during value warm-up: only the critic learns
    step        the trainer step this update belongs to (seeds the mini-batch order)
    """

    batch: dict[str, Tensor]
    mask: Tensor
    old_logp: Tensor
    ref_logp: Tensor | None
    adv: Tensor
    values: Tensor | None
    returns: Tensor | None
    is_weights: Tensor | None
    scores: Tensor
    policy: bool = True
    step: int = 0
