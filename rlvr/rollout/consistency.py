"""Rollout-vs-trainer log-prob consistency: how far the engine's sampler is from the trainer's model.

The engine samples y_t ~ pi_rollout and reports log pi_rollout(y_t); the trainer recomputes
log pi_train(y_t) on the same tokens. Different kernels, dtypes or a stale weight sync make the two
differ, which silently turns on-policy RL into off-policy RL (Yao et al. 2025, "Your efficient RL
framework secretly brings you off-policy RL training"). :func:`logprob_mismatch` measures the gap
every step; :func:`truncated_is_weights` (TIS) corrects for it in the policy loss.

All tensors are ``[N, R]`` (samples x response tokens) with a ``mask [N, R]`` that is 1 on real
response tokens.
"""
from __future__ import annotations

from torch import Tensor

from rlvr.algorithms.kl import kl_estimate
from rlvr.algorithms.losses import truncated_is_weights

__all__ = ["logprob_mismatch", "truncated_is_weights"]


def logprob_mismatch(sampler_logprobs: Tensor, trainer_logprobs: Tensor, mask: Tensor) -> dict[str, float]:
    """Per-token gap between the engine's and the trainer's log-probs of the sampled tokens.

    With d_t = log pi_train(y_t) - log pi_rollout(y_t) over masked tokens y_t ~ pi_rollout:

    * ``rollout/logprob_diff_mean`` = mean_t |d_t|
    * ``rollout/logprob_diff_max``  = max_t |d_t|
    * ``rollout/kl`` = mean_t k3_t with k3 = (r - 1) - log r, r = pi_train / pi_rollout = exp(d_t):
      an unbiased, non-negative estimate of KL(pi_rollout || pi_train) (Schulman 2020, "Approximating
      KL divergence"), computed by :func:`rlvr.algorithms.kl.kl_estimate`.

    Inputs ``[N, R]``; returns plain floats (0.0 for all three when the mask is empty).
    """
    if sampler_logprobs.shape != trainer_logprobs.shape or mask.shape != sampler_logprobs.shape:
        raise ValueError(
            f"logprob_mismatch: shapes differ: sampler {tuple(sampler_logprobs.shape)}, "
            f"trainer {tuple(trainer_logprobs.shape)}, mask {tuple(mask.shape)}"
        )
    m = mask.detach().bool()
    if not m.any():
        return {"rollout/logprob_diff_mean": 0.0, "rollout/logprob_diff_max": 0.0, "rollout/kl": 0.0}
    lp_rollout = sampler_logprobs.detach().float()[m]  # [M] masked tokens only
    lp_train = trainer_logprobs.detach().float()[m]
    diff = (lp_train - lp_rollout).abs()
    k3 = kl_estimate(lp_rollout, lp_train, "k3")  # KL(pi_rollout || pi_train), ref = trainer
    return {
        "rollout/logprob_diff_mean": float(diff.mean()),
        "rollout/logprob_diff_max": float(diff.max()),
        "rollout/kl": float(k3.mean()),
    }

