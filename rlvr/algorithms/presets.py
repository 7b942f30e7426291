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

  policy loss  ``policy_loss``: "ppo_clip" (``losses.policy_loss``), "gspo" (sequence ratio and clip,
               ``gspo.gspo_loss``) or "cispo" (clipped stop-gradient IS weight, ``cispo.cispo_loss``);
               all take clip_low/clip_high (for cispo None = that side unbounded).
  update rule  ``update_rule``: "first_order" (the policy loss, then the optimizer), "trpo" (natural
               gradient + line search, ``trpo.trpo_step``; ``trpo_*`` fields; needs no clip) or "dpo"
               (pairwise loss on verifier pairs inside each group, ``dpo.dpo_loss``; ``dpo_*`` fields).
  critic       ``lam_critic`` (value targets from GAE with their own lambda; VAPO uses 1.0) and
               ``lam_length_alpha`` (actor lambda_b = 1 - 1/(alpha l_b) per sequence; ``vapo``);
               ``value_warmup_steps``: steps that train only the critic before the policy moves.
  rollout mismatch  ``seq_is``: None, "truncate" or "mask" (``losses.sequence_is_weights`` with
               ``seq_is_low``/``seq_is_high``), the sequence-level counterpart of token-level TIS.
  DAPO         ``dynamic_sampling`` (keep only mixed groups and refill the batch, ``dapo``) and
               ``overlong_buffer`` (fraction of the generation budget over which the soft overlong
               penalty ramps to ``-overlong_penalty``; None = off).
  VinePPO      ``vine_k``: the values come from K Monte-Carlo continuations of each chosen state
               (estimator "vine", ``vine.py``; None = off), the states chosen by ``vine_split``:
               "lines" (after every newline-containing token) or "every" (every ``vine_every`` tokens).

``make_kl_controller(preset)`` and ``make_old_kl_controller(preset)`` build the controllers;
``Preset.advantages(...)`` runs the estimator (and whitening) the preset names; ``check_rollout``
validates a preset against the rollout settings (group size, generation budget).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from rlvr.errors import ConfigError

from . import cispo as _cispo, dpo as _dpo, gspo as _gspo, trpo as _trpo  # noqa: F401  (registrations)
from .advantages import ESTIMATORS, estimate_advantages, whiten
from .kl import KL_KINDS, AdaptiveKLController, DoublingKLController, FixedKLController
from .losses import AGG_MODES, POLICY_LOSSES, SEQ_IS_MODES
from .registry import UPDATE_RULES
from .vapo import length_adaptive_lambda

KL_PLACEMENTS = ("reward", "loss", "none")
# Choices a trainer must implement beyond the core loop (see ``Preset.extensions``).
_EXTENSION_FIELDS = (
    "policy_loss", "update_rule", "lam_critic", "lam_length_alpha", "value_warmup_steps", "seq_is",
    "dynamic_sampling", "overlong_buffer", "vine_k", "vine_split", "vine_every",
)
VINE_SPLITS = ("lines", "every")


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


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
    policy_loss: str = "ppo_clip"
    update_rule: str = "first_order"
    lam_critic: float | None = None
    lam_length_alpha: float | None = None
    value_warmup_steps: int = 0
    seq_is: str | None = None
    seq_is_low: float = 0.0
    seq_is_high: float = 2.0
    dynamic_sampling: bool = False
    overlong_buffer: float | None = None
    overlong_penalty: float = 1.0
    trpo_max_kl: float = 0.01
    trpo_cg_iters: int = 10
    trpo_damping: float = 0.1
    trpo_backtrack_ratio: float = 0.5
    trpo_max_backtracks: int = 10
    trpo_fvp_fraction: float = 1.0
    dpo_beta: float = 0.1
    dpo_max_pairs_per_group: int | None = None
    vine_k: int | None = None
    vine_split: str = "lines"
    vine_every: int | None = None

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> ConfigError:
            return ConfigError(f"preset {self.name!r}: {field}={getattr(self, field)!r} {why}")

        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"preset name must be a non-empty string, got {self.name!r}")
        if self.estimator not in ESTIMATORS:
            raise bad("estimator", f"is not one of {', '.join(ESTIMATORS)}")
        for field in ("critic", "adaptive_kl", "whiten_advantages", "dynamic_sampling"):
            if not isinstance(getattr(self, field), bool):
                raise bad(field, "must be true or false")
        if self.policy_loss not in POLICY_LOSSES:
            raise bad("policy_loss", f"is not one of {', '.join(POLICY_LOSSES)}")
        if self.update_rule not in UPDATE_RULES:
            raise bad("update_rule", f"is not one of {', '.join(UPDATE_RULES)}")
        if ESTIMATORS.needs[self.estimator].critic and not self.critic:
            raise bad("critic", f"must be true: estimator {self.estimator!r} needs a value model")
        for field in ("gamma", "lam"):
            if not (_number(getattr(self, field)) and 0 <= getattr(self, field) <= 1):
                raise bad(field, "must be a number in [0, 1]")
        if not (isinstance(self.epochs, int) and not isinstance(self.epochs, bool) and self.epochs >= 1):
            raise bad("epochs", "must be an integer >= 1")
        if (self.clip_low is None) != (self.clip_high is None) and self.policy_loss != "cispo":
            field = "clip_high" if self.clip_low is None else "clip_low"
            raise bad(field, "must be set together with the other clip bound (both None = no clip)")
        if self.clip_low is not None and not (_number(self.clip_low) and 0 <= self.clip_low < 1):
            raise bad("clip_low", "must be a number in [0, 1) or None")
        if self.clip_high is not None and not (_number(self.clip_high) and self.clip_high >= 0):
            raise bad("clip_high", "must be a number >= 0 or None")
        if self.dual_clip is not None:
            if not (_number(self.dual_clip) and self.dual_clip > 1):
                raise bad("dual_clip", "must be a number > 1 or None")
            if self.clip_low is None:
                raise bad("dual_clip", "needs clip_low/clip_high (the dual clip bounds the clipped loss)")
            if self.policy_loss != "ppo_clip":
                raise bad("dual_clip", f"applies to policy_loss 'ppo_clip' only, not {self.policy_loss!r}")
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
        self._check_extensions(bad)

    def _check_extensions(self, bad) -> None:
        """Validation of the critic, mismatch, DAPO, TRPO and DPO fields (all off by default)."""
        critic_est = ESTIMATORS.needs[self.estimator].critic
        for field in ("lam_critic", "lam_length_alpha"):
            v = getattr(self, field)
            if v is None:
                continue
            if not critic_est:
                raise bad(field, f"needs a critic estimator (GAE), not {self.estimator!r}")
            ok = (0 <= v <= 1) if field == "lam_critic" else v > 0
            if not (_number(v) and ok):
                why = "must be a number in [0, 1] or None" if field == "lam_critic" else "must be > 0 or None"
                raise bad(field, why)
        if not (_int(self.value_warmup_steps) and self.value_warmup_steps >= 0):
            raise bad("value_warmup_steps", "must be an integer >= 0")
        if self.value_warmup_steps and not self.critic:
            raise bad("value_warmup_steps", "needs critic=true (it trains the value model alone first)")
        if self.seq_is is not None and self.seq_is not in SEQ_IS_MODES:
            raise bad("seq_is", f"is not one of {', '.join(SEQ_IS_MODES)} or None")
        if not (_number(self.seq_is_high) and self.seq_is_high > 0):
            raise bad("seq_is_high", "must be a number > 0")
        if not (_number(self.seq_is_low) and 0 <= self.seq_is_low <= self.seq_is_high):
            raise bad("seq_is_low", "must be a number in [0, seq_is_high]")
        if self.overlong_buffer is not None and not (_number(self.overlong_buffer) and 0 < self.overlong_buffer <= 1):
            raise bad("overlong_buffer", "must be a fraction of the generation budget in (0, 1] or None")
        if not (_number(self.overlong_penalty) and self.overlong_penalty >= 0):
            raise bad("overlong_penalty", "must be a number >= 0")
        for field in ("trpo_max_kl", "dpo_beta"):
            if not (_number(getattr(self, field)) and getattr(self, field) > 0):
                raise bad(field, "must be a number > 0")
        for field in ("trpo_cg_iters", "trpo_max_backtracks"):
            lo = 1 if field == "trpo_cg_iters" else 0
            if not (_int(getattr(self, field)) and getattr(self, field) >= lo):
                raise bad(field, f"must be an integer >= {lo}")
        if not (_number(self.trpo_damping) and self.trpo_damping >= 0):
            raise bad("trpo_damping", "must be a number >= 0")
        if not (_number(self.trpo_backtrack_ratio) and 0 < self.trpo_backtrack_ratio < 1):
            raise bad("trpo_backtrack_ratio", "must be a number in (0, 1)")
        if not (_number(self.trpo_fvp_fraction) and 0 < self.trpo_fvp_fraction <= 1):
            raise bad("trpo_fvp_fraction", "must be a fraction of the batch's samples in (0, 1]")
        if self.dpo_max_pairs_per_group is not None and not (
            _int(self.dpo_max_pairs_per_group) and self.dpo_max_pairs_per_group >= 1
        ):
            raise bad("dpo_max_pairs_per_group", "must be an integer >= 1 or None")
        if self.update_rule == "trpo":
            if self.clipped:
                raise bad("clip_low", "must be None with update_rule 'trpo' (the trust region replaces the clip)")
            if self.kl_old_coef > 0:
                raise bad("kl_old_coef", "must be 0 with update_rule 'trpo' (the KL is a constraint, not a penalty)")
            if self.policy_loss != "ppo_clip":
                raise bad("policy_loss", "must be 'ppo_clip' (unclipped: the ratio surrogate) with update_rule 'trpo'")
        if (self.estimator == "vine") != (self.vine_k is not None):
            if self.vine_k is None:
                raise bad("vine_k", "must be set with estimator 'vine' (continuations per state)")
            raise bad("vine_k", f"needs estimator 'vine', not {self.estimator!r}")
        if self.vine_k is not None and not (_int(self.vine_k) and self.vine_k >= 1):
            raise bad("vine_k", "must be an integer >= 1 or None")
        if self.vine_split not in VINE_SPLITS:
            raise bad("vine_split", f"is not one of {', '.join(VINE_SPLITS)}")
        if self.vine_every is not None and not (_int(self.vine_every) and self.vine_every >= 1):
            raise bad("vine_every", "must be an integer >= 1 or None")
        if (self.vine_split == "every") != (self.vine_every is not None):
            raise bad("vine_every", "must be set exactly when vine_split is 'every' (tokens per step)")
        if self.update_rule == "dpo" and self.critic:
            raise bad("critic", "must be false with update_rule 'dpo' (the pairwise loss uses no values)")

    # ---- derived facts the trainer needs ----
    @property
    def uses_groups(self) -> bool:
        """True if the algorithm compares completions of the same prompt (needs group size > 1):
        a group-baseline estimator, a pairwise update rule, or dynamic sampling."""
        return bool(self.group_reasons())

    def group_reasons(self) -> list[str]:
        """Why this preset needs several completions per prompt (empty if it does not)."""
        reasons = []
        for registry, name in ((ESTIMATORS, self.estimator), (UPDATE_RULES, self.update_rule)):
            if registry.needs[name].groups:
                reasons.append(registry.needs[name].why or f"{registry.kind} {name}")
        if self.dynamic_sampling:
            reasons.append("dynamic sampling keeps groups with mixed scores")
        return reasons

    @property
    def needs_reference(self) -> bool:
        """True if a frozen reference policy must be kept (the KL penalty, or DPO's reference)."""
        kl = self.kl_placement != "none" and (self.kl_coef > 0 or self.adaptive_kl)
        return kl or UPDATE_RULES.needs[self.update_rule].reference

    @property
    def mc_values(self) -> bool:
        """True if the estimator's values come from Monte-Carlo continuations sampled at
        intermediate states (not from a critic): the collector estimates them (VinePPO)."""
        return ESTIMATORS.needs[self.estimator].mc_values

    @property
    def collection(self) -> str:
        """The rollout collection strategy this preset needs (``rlvr.collect.COLLECTIONS``):
        "dynamic_sampling" (refill until the batch holds mixed groups) or "single"."""
        return "dynamic_sampling" if self.dynamic_sampling else "single"

    def extensions(self) -> dict[str, Any]:
        """Fields beyond the PPO/GRPO core that this preset sets away from their defaults, name -> value.

        Empty for every preset a plain first-order clipped-surrogate loop can run. A trainer that does
        not implement one of these should refuse the preset rather than silently ignore the field.
        """
        fields = {f.name: f.default for f in dataclasses.fields(self)}
        return {k: getattr(self, k) for k in _EXTENSION_FIELDS if getattr(self, k) != fields[k]}

    def overlong_cache_len(self, max_new_tokens: int) -> int | None:
        """L_cache in tokens for the soft overlong penalty: round(overlong_buffer * budget), >= 1; None if off."""
        if self.overlong_buffer is None:
            return None
        return max(1, round(self.overlong_buffer * max_new_tokens))

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
        splits: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Run this preset's estimator (then whitening if set). [B, T] -> (advantages, returns).

        Estimator "vine": ``values`` are the Monte-Carlo estimates at the ``splits`` [B, T] positions
        (``vine.split_positions``, ``vine.values_at_splits``).

        The actor's lambda is ``lam`` or, with ``lam_length_alpha``, the per-sequence
        ``length_adaptive_lambda``; with ``lam_critic`` the value targets come from a second pass of the
        estimator at that lambda (decoupled GAE, ``vapo.decoupled_gae``).
        """
        lam = self.lam if self.lam_length_alpha is None else length_adaptive_lambda(mask, self.lam_length_alpha)
        kw = dict(values=values, group_ids=group_ids, gamma=self.gamma, splits=splits)
        adv, returns = estimate_advantages(self.estimator, rewards, mask, lam=lam, **kw)
        if self.lam_critic is not None:
            _, returns = estimate_advantages(self.estimator, rewards, mask, lam=self.lam_critic, **kw)
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

_GROUP_SHARED = dict(critic=False, epochs=1, kl_placement="none")

_ALL += [
    Preset(
        "gspo", "grpo", **_GROUP_SHARED, policy_loss="gspo", clip_low=3e-4, clip_high=4e-4,
        loss_agg="seq-mean-token-mean",
        description="GSPO (Zheng et al. 2025): group-normalised advantage, sequence-level importance ratio "
        "s = exp(mean_t log pi/pi_old) clipped to [1 - 3e-4, 1 + 4e-4] (the paper's band), one value per "
        "sequence, no KL term.",
    ),
    Preset(
        "cispo", "grpo", **_GROUP_SHARED, policy_loss="cispo", clip_low=None, clip_high=0.28,
        loss_agg="token-mean",
        description="CISPO (MiniMax-M1, 2025): group-normalised advantage; loss -sg(min(r_t, 1.28)) A_t log pi_t "
        "so clipped tokens keep their gradient (no lower bound, as in the paper; the upper bound 0.28 is "
        "DAPO's), token-level mean, no KL term.",
    ),
    Preset(
        "dapo", "grpo", **_GROUP_SHARED, clip_low=0.2, clip_high=0.28, loss_agg="token-mean",
        dynamic_sampling=True, overlong_buffer=0.2, overlong_penalty=1.0,
        description="DAPO (Yu et al. 2025): clip-higher (0.2 / 0.28), dynamic sampling (only groups with "
        "mixed scores; the batch is refilled to its size), token-level loss, soft overlong penalty over "
        "the last 20% of the generation budget (the paper's 4096 of 20480), no KL term.",
    ),
    Preset(
        "vapo", "gae", critic=True, epochs=2, clip_low=0.2, clip_high=0.28, kl_placement="none",
        loss_agg="token-mean", lam=0.95, lam_critic=1.0, lam_length_alpha=0.05, value_warmup_steps=50,
        description="VAPO (Yue et al. 2025): PPO with a critic trained on lambda = 1 targets (decoupled GAE), "
        "length-adaptive actor lambda 1 - 1/(0.05 l), 50 value warm-up steps, clip-higher (0.2 / 0.28), "
        "token-level loss, no KL term.",
    ),
    Preset(
        "trpo", "gae", critic=True, epochs=1, **_NO_CLIP, **_LADDER_SHARED, update_rule="trpo",
        trpo_max_kl=0.01, trpo_cg_iters=10, trpo_damping=0.1, trpo_backtrack_ratio=0.5, trpo_max_backtracks=10,
        trpo_fvp_fraction=0.2,
        description="TRPO (Schulman et al. 2015): PPO's estimator, critic and reward KL, but the policy takes "
        "one natural-gradient step per batch (conjugate gradient on Fisher-vector products estimated on "
        "every 5th sample, damping 0.1) "
        "to the KL(pi_old || pi) <= 0.01 boundary, with a backtracking line search; the comparator of ppo.",
    ),
    Preset(
        "dpo", "none", critic=False, epochs=1, **_NO_CLIP, kl_placement="none", update_rule="dpo",
        dpo_beta=0.1, loss_agg="seq-mean-token-sum",
        description="Online DPO (Rafailov et al. 2023) from verifier pairs: a correct and an incorrect "
        "completion of the same prompt form a pair; loss -log sigmoid(beta * (policy - reference log-ratio "
        "margin)), beta 0.1, against the frozen initial policy. The estimator's advantages are unused.",
    ),
]

# ---- the controlled comparison: runs that differ only in the baseline ----
# Everything but the estimator (and the critic it needs) is shared: one on-policy epoch (so the clip
# is inert and no run reuses samples), token-mean loss, no KL term, gamma 1, and advantages whitened
# over the batch, so every run takes steps of the same scale (without it GRPO's division by the group
# std makes its steps ~3x those of unwhitened GAE at 10% accuracy). Under batch whitening a
# leave-one-out baseline equals the plain group mean (RLOO's n/(n-1) factor is a global scale), so
# ``ctrl_loo`` also stands for Dr. GRPO's baseline.
_CONTROLLED = dict(
    epochs=1, clip_low=0.2, clip_high=0.2, gamma=1.0, kl_coef=0.0, kl_placement="none",
    loss_agg="token-mean", whiten_advantages=True, entropy_coef=0.0,
)
_ALL += [
    Preset(
        "ctrl_critic", "gae", critic=True, lam=0.95, lam_critic=1.0, **_CONTROLLED,
        description="Controlled: learned critic, GAE (lambda 0.95) advantages, critic trained on lambda = 1 "
        "(Monte-Carlo) targets; shared settings as ctrl_group / ctrl_loo.",
    ),
    Preset(
        "ctrl_group", "grpo", critic=False, **_CONTROLLED,
        description="Controlled: GRPO's group baseline (s - group mean) / group std; shared settings as ctrl_critic.",
    ),
    Preset(
        "ctrl_loo", "rloo", critic=False, **_CONTROLLED,
        description="Controlled: leave-one-out group baseline (RLOO); shared settings as ctrl_critic.",
    ),
]

# ---- VinePPO: the critic replaced by Monte-Carlo value estimates ----
_ALL += [
    Preset(
        "vineppo", "vine", critic=False, epochs=2, clip_low=0.2, clip_high=0.2, **_LADDER_SHARED,
        vine_k=9, vine_split="lines",
        description="VinePPO (Kazemnejad et al. 2024): ppo with its value network replaced by Monte-Carlo "
        "estimates: V(s_p) = mean verifier score of K = 9 continuations sampled from the policy at the start "
        "of every reasoning step (after each newline); each step's tokens get V(s_next step) - V(s_p) "
        "(R - V at the last step). Otherwise ppo's settings (clip 0.2, 2 epochs, k1 KL in the reward).",
    ),
    Preset(
        "ctrl_vine", "vine", critic=False, vine_k=9, vine_split="lines", **_CONTROLLED,
        description="Controlled: Monte-Carlo values from K = 9 continuations at every step start (VinePPO's "
        "baseline, no value network); shared settings as ctrl_critic / ctrl_group.",
    ),
]

PRESETS: dict[str, Preset] = {p.name: p for p in _ALL}
LADDER: list[str] = ["reinforce", "reinforce_baseline", "a2c", "a2c_gae", "ppo_noclip", "ppo"]
# run next to the ladder: ppo's trust-region ancestor (same estimator, critic and reward KL; a
# natural-gradient step in place of clipped epochs) and its critic-free successor
LADDER_COMPARATORS: list[str] = ["trpo", "grpo"]
CONTROLLED: list[str] = ["ctrl_critic", "ctrl_group", "ctrl_loo", "ctrl_vine"]


def get_preset(name: str) -> Preset:
    """Look up a preset by name; unknown names raise ConfigError (a ValueError) listing valid ones."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}") from None


def check_rollout(preset: Preset, n: int, max_new_tokens: int | None = None) -> None:
    """Validate a preset against the rollout settings; raise ConfigError naming the field.

    ``n``: completions per prompt (rollout.n); group baselines, pairwise rules and dynamic sampling
    need n >= 2 (with n = 1 every group advantage is 0 and no pair exists). ``max_new_tokens``: the
    generation budget; the overlong penalty's buffer must leave at least one token unpenalised.
    """
    if not (_int(n) and n >= 1):
        raise ConfigError(f"rollout.n must be an integer >= 1, got {n!r}")
    reasons = preset.group_reasons()
    if reasons and n < 2:
        raise ConfigError(f"preset {preset.name} needs rollout.n >= 2 ({'; '.join(reasons)}), got {n}")
    if max_new_tokens is not None and preset.overlong_buffer is not None:
        cache = preset.overlong_cache_len(max_new_tokens)
        if cache >= max_new_tokens:
            raise ConfigError(
                f"preset {preset.name}: overlong_buffer={preset.overlong_buffer} covers the whole generation "
                f"budget (rollout.max_new_tokens={max_new_tokens}); use a smaller fraction or a larger budget"
            )
