"""Critic options from VAPO (Yue et al. 2025, "VAPO: Efficient and Reliable Reinforcement Learning for
Advanced Reasoning Tasks", arXiv:2504.05118, sec. 3): decoupled GAE and length-adaptive GAE.

Long chains of thought with one reward at the end make lambda < 1 value targets decay the signal
before it reaches early tokens; VAPO trains the critic on lambda_critic = 1 targets (Monte-Carlo
returns) and gives the actor a lambda that grows with the response length.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._checks import bool_mask, check_2d
from .advantages import compute_gae


def length_adaptive_lambda(mask: Tensor, alpha: float) -> Tensor:
    """Per-sequence actor lambda_b = 1 - 1 / (alpha * l_b), l_b = number of valid tokens (VAPO eq. 8).

    Chosen so that sum_t lambda^t ~ 1 / (1 - lambda) = alpha * l: the effective horizon of the
    advantage grows in proportion to the length. Clamped to [0, 1] (rows with alpha * l_b <= 1,
    including empty rows, get lambda = 0). mask [B, T] -> [B] in the float dtype of torch's default.
    """
    check_2d(mask, "mask")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    lengths = bool_mask(mask, mask).sum(dim=1).to(torch.get_default_dtype())  # [B]
    lam = 1.0 - 1.0 / (alpha * lengths.clamp(min=1))
    return torch.where(lengths > 0, lam, torch.zeros_like(lam)).clamp(0.0, 1.0)


def decoupled_gae(
    rewards: Tensor,
    values: Tensor,
    mask: Tensor,
    gamma: float,
    lam_actor: float | Tensor,
    lam_critic: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Decoupled GAE (VAPO sec. 3.1; Yuan et al. 2025, VC-PPO): actor and critic use different lambdas.

    advantages = A^{GAE(gamma, lambda_actor)}                          (``compute_gae`` eq. 16)
    returns    = A^{GAE(gamma, lambda_critic)} + V                     (the critic's TD(lambda_critic) target)
    With lambda_critic = 1 the targets are the discounted Monte-Carlo returns G_t (unbiased, no
    bootstrapping from the critic being trained). ``lam_actor`` is a float or a tensor [B] (see
    ``length_adaptive_lambda``). rewards, values, mask [B, T] -> (advantages [B, T], returns [B, T]).
    """
    advantages, _ = compute_gae(rewards, values, mask, gamma, lam_actor)
    _, returns = compute_gae(rewards, values, mask, gamma, lam_critic)
    return advantages, returns
