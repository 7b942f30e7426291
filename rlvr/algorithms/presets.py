"""Named algorithms as combinations of choices. An algorithm is data, not a subclass.

A ``Preset`` fixes every algorithmic choice the trainer makes; the trainer reads these fields and
never branches on the preset's name:

  advantages   ``estimator`` (see ``estimate_advantages``), ``gamma``, ``lam``, ``whiten_advantages``;
               ``critic`` = train a value model (needed by "gae"/"td")
  update       ``epochs`` passes over each batch of rollouts (K > 1 makes later passes off-policy),
               policy loss ``clip_low``/``clip_high`` (None/None = unclipped importance-sampled PG),
               ``dual_clip``, ``loss_agg``, ``entropy_coef`` (bonus: loss -= coef * entropy).
               (Value clipping and truncated IS are run settings, not algorithm choices: they live in
               the trainer's config and are passed to ``value_loss`` / ``policy_loss`` directly.)
  reference KL ``kl_coef``, ``kl_kind`` and ``kl_placement``:
                 "reward": r_t -= beta * kl_t on every valid token before advantages (Ziegler et al.
                           2019; Ouyang et al. 2022), with kl_t = kl_estimate(old_logp, ref_logp, kind)
                 "loss":   loss += beta * aggregate(kl_estimate(logp, ref_logp, kind)) (DeepSeekMath)
                 "none":   no reference model needed
               ``adaptive_kl`` (+ ``kl_target``, ``kl_horizon``): Ziegler et al.'s proportional
               controller updates beta after each step from the measured KL to the reference.
  trust-region KL penalty (PPO's KL variant, Schulman et al. 2017 sec. 4, eq. 8): ``kl_old_coef``
               > 0 adds  beta_old * aggregate(kl_estimate(old_logp, logp, "k3"))  to the loss: the k3
               estimate of KL(pi_old || pi) on the rollout tokens (sampled from pi_old, so both its
               value and its gradient are unbiased). With ``kl_old_target`` set, beta_old follows the
               doubling rule (``DoublingKLController``) after every update; None keeps it fixed.
               This is separate from the reference KL: it replaces the clip, not the regulariser.

``make_kl_controller(preset)`` and ``make_old_kl_controller(preset)`` build the controllers;
``Preset.advantages(...)`` runs the estimator (and whitening) the preset names.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from rlvr.errors import ConfigError

from .advantages import CRITIC_ESTIMATORS, ESTIMATORS, GROUP_ESTIMATORS, estimate_advantages, whiten
from .kl import KL_KINDS, AdaptiveKLController, DoublingKLController, FixedKLController
from .losses import AGG_MODES

KL_PLACEMENTS = ("reward", "loss", "none")


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class Preset:
    name: str
    estimator: str
    critic: bool
    gamma: float = 1.0
    lam: float = 0.95
    epochs: int = 1
    clip_low: float | None = 0.2
    clip_high: float | None = 0.2
    dual_clip: float | None = None
    kl_coef: float = 0.0
    kl_kind: str = "k3"
    kl_placement: str = "none"
    adaptive_kl: bool = False
    kl_target: float | None = None
    kl_horizon: float | None = None
    kl_old_coef: float = 0.0
    kl_old_target: float | None = None
    entropy_coef: float = 0.0
    loss_agg: str = "token-mean"
    whiten_advantages: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> ConfigError:
            return ConfigError(f"preset {self.name!r}: {field}={getattr(self, field)!r} {why}")

        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"preset name must be a non-empty string, got {self.name!r}")
        if self.estimator not in ESTIMATORS:
            raise bad("estimator", f"is not one of {', '.join(ESTIMATORS)}")
        for field in ("critic", "adaptive_kl", "whiten_advantages"):
            if not isinstance(getattr(self, field), bool):
                raise bad(field, "must be true or false")
        if self.estimator in CRITIC_ESTIMATORS and not self.critic:
            raise bad("critic", f"must be true: estimator {self.estimator!r} needs a value model")
        for field in ("gamma", "lam"):
            if not (_number(getattr(self, field)) and 0 <= getattr(self, field) <= 1):
                raise bad(field, "must be a number in [0, 1]")
        if not (isinstance(self.epochs, int) and not isinstance(self.epochs, bool) and self.epochs >= 1):
            raise bad("epochs", "must be an integer >= 1")
        if (self.clip_low is None) != (self.clip_high is None):
            field = "clip_high" if self.clip_low is None else "clip_low"
            raise bad(field, "must be set together with the other clip bound (both None = no clip)")
        if self.clip_low is not None:
            if not (_number(self.clip_low) and 0 <= self.clip_low < 1):
                raise bad("clip_low", "must be a number in [0, 1) or None")
            if not (_number(self.clip_high) and self.clip_high >= 0):
                raise bad("clip_high", "must be a number >= 0 or None")
        if self.dual_clip is not None:
            if not (_number(self.dual_clip) and self.dual_clip > 1):
                raise bad("dual_clip", "must be a number > 1 or None")
            if self.clip_low is None:
                raise bad("dual_clip", "needs clip_low/clip_high (the dual clip bounds the clipped loss)")
        for field in ("kl_coef", "kl_old_coef", "entropy_coef"):
            if not (_number(getattr(self, field)) and getattr(self, field) >= 0):
                raise bad(field, "must be a number >= 0")
        if self.kl_kind not in KL_KINDS:
            raise bad("kl_kind", f"is not one of {', '.join(KL_KINDS)}")
        if self.kl_placement not in KL_PLACEMENTS:
            raise bad("kl_placement", f"is not one of {', '.join(KL_PLACEMENTS)}")
        for field in ("kl_target", "kl_horizon", "kl_old_target"):
            v = getattr(self, field)
            if v is not None and not (_number(v) and v > 0):
                raise bad(field, "must be a number > 0 or None")
        if self.adaptive_kl:
            if self.kl_placement == "none":
                raise bad("adaptive_kl", "needs kl_placement 'reward' or 'loss'")
            if self.kl_coef <= 0:
                raise bad("kl_coef", "must be > 0 with adaptive_kl (it is the initial coefficient)")
            if self.kl_target is None:
                raise bad("kl_target", "must be set with adaptive_kl")
            if self.kl_horizon is None:
                raise bad("kl_horizon", "must be set with adaptive_kl")
        if self.kl_old_target is not None and self.kl_old_coef <= 0:
            raise bad("kl_old_coef", "must be > 0 when kl_old_target is set (it is the initial coefficient)")
        if self.loss_agg not in AGG_MODES:
            raise bad("loss_agg", f"is not one of {', '.join(AGG_MODES)}")
        if not isinstance(self.description, str):
            raise bad("description", "must be a string")

    # ---- derived facts the trainer needs ----
    @property
    def uses_groups(self) -> bool:
        """True if advantages compare completions of the same prompt (needs group size > 1)."""
        return self.estimator in GROUP_ESTIMATORS

    @property
    def needs_reference(self) -> bool:
        """True if a frozen reference policy must be kept for the KL penalty."""
        return self.kl_placement != "none" and (self.kl_coef > 0 or self.adaptive_kl)

    @property
    def clipped(self) -> bool:
        return self.clip_low is not None

    def with_overrides(self, **overrides: Any) -> Preset:
        """A validated copy with some fields replaced; unknown fields raise ConfigError (a ValueError)."""
        names = [f.name for f in dataclasses.fields(self)]
        for key in overrides:
            if key not in names:
                raise ConfigError(f"unknown preset field {key!r}; valid fields: {', '.join(names)}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def advantages(
        self,
        rewards: Tensor,
        mask: Tensor,
        *,
        values: Tensor | None = None,
        group_ids: Tensor | list[int] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Run this preset's estimator (then whitening if set). [B, T] -> (advantages, returns)."""
        adv, returns = estimate_advantages(
            self.estimator, rewards, mask, values=values, group_ids=group_ids, gamma=self.gamma, lam=self.lam
        )
        if self.whiten_advantages:
            adv = whiten(adv, mask)
        return adv, returns


def make_kl_controller(preset: Preset) -> FixedKLController | AdaptiveKLController:
    """Controller for the reference-KL coefficient (``.value``, ``.update(kl, n_steps)``)."""
    if preset.adaptive_kl:
        return AdaptiveKLController(preset.kl_coef, preset.kl_target, preset.kl_horizon)
    return FixedKLController(preset.kl_coef if preset.kl_placement != "none" else 0.0)


def make_old_kl_controller(preset: Preset) -> FixedKLController | DoublingKLController:
    """Controller for the trust-region penalty coefficient on KL(pi_old || pi)."""
    if preset.kl_old_target is not None:
        return DoublingKLController(preset.kl_old_coef, preset.kl_old_target)
    return FixedKLController(preset.kl_old_coef)


# ---- the ladder: REINFORCE -> PPO, one fix per rung; everything else shared with ``ppo`` ----
_LADDER_SHARED = dict(
    gamma=1.0,
    lam=0.95,
    kl_coef=0.001,
    kl_kind="k1",
    kl_placement="reward",
    loss_agg="token-mean",
    whiten_advantages=False,
    entropy_coef=0.0,
)
_NO_CLIP = dict(clip_low=None, clip_high=None)

_ALL = [
    Preset(
        "reinforce", "mc", critic=False, epochs=1, **_NO_CLIP, **_LADDER_SHARED,
        description="REINFORCE (Williams 1992): reward-to-go, no baseline, one on-policy pass, no clip.",
    ),
    Preset(
        "reinforce_baseline", "batch_mean", critic=False, epochs=1, **_NO_CLIP, **_LADDER_SHARED,
        description="+ baseline: subtract the batch-mean return (variance reduction, Williams 1992).",
    ),
    Preset(
        "a2c", "td", critic=True, epochs=1, **_NO_CLIP, **_LADDER_SHARED,
        description="+ learned critic: advantage = one-step TD residual r_t + gamma V(s_t+1) - V(s_t) "
        "(actor-critic, Mnih et al. 2016 with 1-step targets; GAE lambda = 0).",
    ),
    Preset(
        "a2c_gae", "gae", critic=True, epochs=1, **_NO_CLIP, **_LADDER_SHARED,
        description="+ GAE(gamma, lambda=0.95): trade the TD residual's bias for MC variance (Schulman et al. 2016).",
    ),
    Preset(
        "ppo_noclip", "gae", critic=True, epochs=2, **_NO_CLIP, **_LADDER_SHARED,
        description="+ K=2 epochs per batch with importance ratios, unclipped: more sample reuse, no trust region.",
    ),
    Preset(
        "ppo", "gae", critic=True, epochs=2, clip_low=0.2, clip_high=0.2, **_LADDER_SHARED,
        description="PPO (Schulman et al. 2017): GAE + critic + clipped surrogate (eps 0.2), 2 epochs per "
        "batch, token-level k1 KL to the reference in the reward (beta 0.001). Advantage whitening is off "
        "so the ladder isolates its five fixes; override whiten_advantages=True for the common variant.",
    ),
    Preset(
        "ppo_kl", "gae", critic=True, epochs=2, **_NO_CLIP, **_LADDER_SHARED,
        kl_old_coef=1.0, kl_old_target=0.01,
        description="PPO with the adaptive KL penalty instead of the clip (Schulman et al. 2017 sec. 4): "
        "loss += beta * KL(pi_old || pi), beta halved/doubled when KL < target/1.5 or > 1.5 target "
        "(target 0.01, beta_0 = 1).",
    ),
    Preset(
        "grpo", "grpo", critic=False, epochs=1, clip_low=0.2, clip_high=0.2,
        kl_coef=0.001, kl_kind="k3", kl_placement="loss", loss_agg="seq-mean-token-mean",
        description="GRPO (Shao et al. 2024): group-normalised advantage (s - mean) / std, no critic, "
        "clipped surrogate, k3 KL to the reference in the loss (beta 0.001; the paper used 0.04), "
        "per-sequence token mean.",
    ),
    Preset(
        "dr_grpo", "dr_grpo", critic=False, epochs=1, clip_low=0.2, clip_high=0.2,
        kl_placement="none", loss_agg="seq-mean-token-sum-norm",
        description="Dr. GRPO (Liu et al. 2025): advantage s - group mean (no std division), token sums "
        "divided by a constant (pass norm_len = the generation budget), no KL term.",
    ),
    Preset(
        "rloo", "rloo", critic=False, epochs=1, clip_low=0.2, clip_high=0.2,
        kl_coef=0.001, kl_kind="k1", kl_placement="reward", loss_agg="seq-mean-token-sum",
        description="RLOO (Ahmadian et al. 2024): leave-one-out group baseline, sequence-level loss "
        "(sum of token log-probs), KL folded into the reward. One on-policy epoch, so the clip is inert.",
    ),
    Preset(
        "reinforce_pp", "reinforce_pp", critic=False, epochs=1, clip_low=0.2, clip_high=0.2,
        kl_coef=0.001, kl_kind="k1", kl_placement="reward", loss_agg="token-mean",
        description="REINFORCE++ (Hu et al. 2025): token-level k1 KL in the reward, reward-to-go, "
        "advantages whitened over all tokens of the batch (global normalisation), clipped surrogate.",
    ),
    Preset(
        "reinforce_pp_baseline", "reinforce_pp_baseline", critic=False, epochs=1, clip_low=0.2, clip_high=0.2,
        kl_coef=0.001, kl_kind="k1", kl_placement="reward", loss_agg="token-mean",
        description="REINFORCE++ with baseline (Hu et al. 2025): subtract the group-mean score, then "
        "whiten over the batch; for several samples per prompt.",
    ),
]

PRESETS: dict[str, Preset] = {p.name: p for p in _ALL}
LADDER: list[str] = ["reinforce", "reinforce_baseline", "a2c", "a2c_gae", "ppo_noclip", "ppo"]


def get_preset(name: str) -> Preset:
    """Look up a preset by name; unknown names raise ConfigError (a ValueError) listing valid ones."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}") from None
