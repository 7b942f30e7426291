"""Per-token KL estimators and KL-coefficient controllers.

Estimators follow Schulman, "Approximating KL Divergence" (2020 blog post). Tokens are sampled from
the first argument's policy pi (in practice the rollout policy pi_old, which equals pi on the first
update); with log-ratio l = log pi_ref(x) - log pi(x) and r = exp(l):
  k1 = -l                   unbiased for KL(pi || pi_ref), high variance, can be negative
  k2 = 0.5 * l^2            biased, low variance, >= 0
  k3 = (r - 1) - l          unbiased, low variance, >= 0 (since log r <= r - 1)
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import check_choice, check_shape

KL_KINDS = ("k1", "k2", "k3")
_MAX_LOG_RATIO = 20.0  # exp(20) ~ 5e8: keeps k3 finite when a token's probabilities disagree wildly


def kl_estimate(logp: Tensor, ref_logp: Tensor, kind: str, clamp: float | None = None) -> Tensor:
    """Per-token estimate of KL(pi || pi_ref) from log-probs of tokens sampled from pi.

    logp, ref_logp [...] -> [...] (same shape; mask and aggregate it with ``aggregate``).
    For k3 the log-ratio is clamped to [-20, 20] before it is exponentiated, so that garbage at
    padding positions cannot overflow; ``clamp`` then bounds every token's estimate to
    [-clamp, clamp] (k3 alone is unbounded above: 4.9e8 at a log-ratio of 20). Both bounds are
    those of verl (``verl/trainer/ppo/core_algos.py``, ``kl_penalty`` "low_var_kl") and OpenRLHF
    (``openrlhf/models/utils.py``, ``compute_approx_kl`` "k3"): log-ratio to [-20, 20], k3 to
    [-10, 10] (``algorithm.kl_clamp`` defaults to 10). The trainer uses them for the KL to the
    reference and for the trust-region KL(pi_old || pi) of PPO-KL and TRPO alike.
    """
    check_choice(kind, KL_KINDS, "kind")
    check_shape(ref_logp, logp.shape, "ref_logp", "logp")
    log_ratio = ref_logp - logp  # l = log pi_ref - log pi
    if kind == "k1":
        est = -log_ratio
    elif kind == "k2":
        est = 0.5 * log_ratio**2
    else:
        lr = log_ratio.clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
        est = torch.expm1(lr) - lr
    return est if clamp is None else est.clamp(-clamp, clamp)


class FixedKLController:
    """Constant KL coefficient beta (same interface as the adaptive controllers)."""

    def __init__(self, value: float):
        if not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"value must be a finite number >= 0, got {value}")
        self.value = float(value)

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.value


class AdaptiveKLController:
    """Proportional KL controller (Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences").

    e_t = clip((KL_t - target) / target, -0.2, 0.2);  beta_{t+1} = beta_t * (1 + e_t * n_steps / horizon)
    ``current_kl`` is the measured KL to the reference policy, ``n_steps`` the number of samples (or
    steps) the measurement covers; larger ``horizon`` = slower adaptation.
    """

    def __init__(self, init: float, target: float, horizon: float):
        if not (init > 0 and math.isfinite(init)):
            raise ValueError(f"init must be a finite number > 0, got {init}")
        if not (target > 0 and math.isfinite(target)):
            raise ValueError(f"target must be a finite number > 0, got {target}")
        if not (horizon > 0 and math.isfinite(horizon)):
            raise ValueError(f"horizon must be a finite number > 0, got {horizon}")
        self.value, self.target, self.horizon = float(init), float(target), float(horizon)

    def update(self, current_kl: float, n_steps: int) -> float:
        current_kl = float(current_kl)
        if not math.isfinite(current_kl):
            raise ValueError(f"current_kl must be finite, got {current_kl}")
        error = min(max((current_kl - self.target) / self.target, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value


class DoublingKLController:
    """Adaptive KL penalty of PPO's KL variant (Schulman et al. 2017, sec. 4).

    After each policy update with measured d = KL[pi_old, pi]:
      d < target / 1.5 -> beta /= 2;   d > target * 1.5 -> beta *= 2;   otherwise unchanged.
    ``n_steps`` is accepted for interface compatibility and ignored.
    """

    def __init__(self, init: float, target: float):
        if not (init > 0 and math.isfinite(init)):
            raise ValueError(f"init must be a finite number > 0, got {init}")
        if not (target > 0 and math.isfinite(target)):
            raise ValueError(f"target must be a finite number > 0, got {target}")
        self.value, self.target = float(init), float(target)

    def update(self, current_kl: float, n_steps: int = 1) -> float:
        current_kl = float(current_kl)
        if not math.isfinite(current_kl):
            raise ValueError(f"current_kl must be finite, got {current_kl}")
        if current_kl < self.target / 1.5:
            self.value /= 2.0
        elif current_kl > self.target * 1.5:
            self.value *= 2.0
        return self.value
