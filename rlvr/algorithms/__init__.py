"""Pure tensor functions for RLVR: advantages, losses, KL, diagnostics, and named presets.

No I/O and no models here; every function takes and returns tensors (shapes in the docstrings).
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
from .diagnostics import clip_table, explained_variance, gradient_variance
from .kl import KL_KINDS, AdaptiveKLController, DoublingKLController, FixedKLController, kl_estimate
from .losses import AGG_MODES, aggregate, entropy_from_logits, policy_loss, truncated_is_weights, value_loss
from .presets import LADDER, PRESETS, Preset, get_preset, make_kl_controller, make_old_kl_controller

__all__ = [
    "AGG_MODES",
    "ESTIMATORS",
    "GROUP_METHODS",
    "KL_KINDS",
    "LADDER",
    "PRESETS",
    "AdaptiveKLController",
    "DoublingKLController",
    "FixedKLController",
    "Preset",
    "aggregate",
    "clip_table",
    "compute_gae",
    "compute_group_advantages",
    "compute_returns",
    "entropy_from_logits",
    "estimate_advantages",
    "explained_variance",
    "get_preset",
    "gradient_variance",
    "kl_estimate",
    "make_kl_controller",
    "make_old_kl_controller",
    "outcome_rewards",
    "policy_loss",
    "truncated_is_weights",
    "value_loss",
    "whiten",
]
