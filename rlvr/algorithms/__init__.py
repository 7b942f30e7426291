"""Pure tensor functions for RLVR: advantages, losses, KL, diagnostics, and named presets.

No I/O and no models here; every function takes and returns tensors (shapes in the docstrings).
Estimators, policy losses and update rules sit in registries (``registry.py``) that record what each
needs (groups, critic, reference). Beyond the PPO/GRPO core: ``gspo`` and ``cispo`` (policy losses),
``trpo`` and ``dpo`` (update rules), ``dapo`` (overlong penalty, dynamic-sampling bookkeeping) and
``vapo`` (decoupled and length-adaptive GAE), ``vine`` (VinePPO's Monte-Carlo state values and
per-step advantages).
"""
from .advantages import (
    ESTIMATORS,
    GROUP_METHODS,
    compute_gae,
    compute_group_advantages,
    compute_returns,
    estimate_advantages,
    outcome_rewards,
    whiten,
)
from .cispo import cispo_loss
from .dapo import group_spread, mixed_groups, overlong_penalty, prompts_to_refill
from .diagnostics import clip_table, explained_variance, gradient_variance, value_bias
from .dpo import Pairs, dpo_loss, sequence_logp, verifier_pairs
from .gspo import gspo_loss, sequence_log_ratio
from .kl import KL_KINDS, AdaptiveKLController, DoublingKLController, FixedKLController, kl_estimate
from .losses import (
    AGG_MODES,
    POLICY_LOSSES,
    aggregate,
    entropy_from_logits,
    first_order_loss,
    policy_loss,
    sequence_is_weights,
    truncated_is_weights,
    value_loss,
)
from .presets import (
    LADDER,
    PRESETS,
    Preset,
    check_rollout,
    get_preset,
    make_kl_controller,
    make_old_kl_controller,
)
from .registry import UPDATE_RULES, Needs, Registry
from .trpo import TRPOStats, conjugate_gradient, fisher_vector_product, natural_step, trpo_step
from .vapo import decoupled_gae, length_adaptive_lambda
from .vine import (
    ContinuationBudget,
    ContinuationRequests,
    completed_responses,
    continuation_budget,
    continuation_requests,
    max_continuation_tokens,
    mc_values,
    split_positions,
    values_at_splits,
    vine_advantages,
)

__all__ = [
    "AGG_MODES",
    "ESTIMATORS",
    "GROUP_METHODS",
    "KL_KINDS",
    "LADDER",
    "POLICY_LOSSES",
    "PRESETS",
    "UPDATE_RULES",
    "AdaptiveKLController",
    "ContinuationBudget",
    "ContinuationRequests",
    "DoublingKLController",
    "FixedKLController",
    "Needs",
    "Pairs",
    "Preset",
    "Registry",
    "TRPOStats",
    "aggregate",
    "check_rollout",
    "cispo_loss",
    "clip_table",
    "completed_responses",
    "compute_gae",
    "compute_group_advantages",
    "compute_returns",
    "conjugate_gradient",
    "continuation_budget",
    "continuation_requests",
    "decoupled_gae",
    "dpo_loss",
    "entropy_from_logits",
    "estimate_advantages",
    "explained_variance",
    "value_bias",
    "first_order_loss",
    "fisher_vector_product",
    "get_preset",
    "gradient_variance",
    "gspo_loss",
    "kl_estimate",
    "length_adaptive_lambda",
    "make_kl_controller",
    "make_old_kl_controller",
    "max_continuation_tokens",
    "mc_values",
    "group_spread",
    "mixed_groups",
    "natural_step",
    "outcome_rewards",
    "overlong_penalty",
    "policy_loss",
    "prompts_to_refill",
    "sequence_is_weights",
    "sequence_log_ratio",
    "sequence_logp",
    "split_positions",
    "trpo_step",
    "truncated_is_weights",
    "value_loss",
    "values_at_splits",
    "verifier_pairs",
    "vine_advantages",
    "whiten",
]
