"""Advantage estimators: discounted returns, GAE, and critic-free group baselines.

Conventions (all functions):
  rewards, values, mask: [B, T] over response tokens; ``mask`` is bool or 0/1, True = a token the
  policy generated. Positions with mask 0 are skipped: they get 0 in every output, their rewards and
  values are never read (so padding garbage, even NaN, cannot leak), and a recursion over t jumps
  from one valid token to the next valid token. Right padding, left padding and holes (e.g. tool
  output inside a response) are therefore all handled. The value after the last valid token is 0
  (the episode ends there).
  The loop over T is a Python loop over [B] slices (vectorised over the batch).

For RLVR the verifier score sits on the last valid token (``outcome_rewards``); a per-token KL
penalty, when the preset puts KL in the reward, is added to every valid token by the caller.
"""
from __future__ import annotations

import math

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ._checks import bool_mask, check_2d, check_choice, check_finite, check_nonempty, check_shape
from .registry import Registry
from .vine import vine_advantages

GROUP_METHODS = ("grpo", "dr_grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline")


def outcome_rewards(scores: Tensor, mask: Tensor) -> Tensor:
    """Place one scalar score per sequence on its last valid token.

    scores [B], mask [B, T] -> rewards [B, T] (zero elsewhere; a row with no valid token stays 0).
    """
    check_2d(mask, "mask")
    check_shape(scores, mask.shape[:1], "scores", "mask[:, 0]")
    check_finite(scores, "scores")
    m = bool_mask(mask, mask)
    T = m.shape[1]
    pos = torch.arange(T, device=m.device).expand_as(m)
    last = torch.where(m, pos, -1).amax(dim=1).clamp(min=0)  # [B]
    dtype = scores.dtype if scores.is_floating_point() else torch.float32
    out = torch.zeros(m.shape, dtype=dtype, device=m.device)
    out.scatter_(1, last[:, None], scores.to(dtype)[:, None])
    return torch.where(m, out, torch.zeros((), dtype=dtype, device=m.device))


def compute_returns(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """Discounted reward-to-go, G_t = r_t + gamma * G_{t'} (t' = next valid token; G = 0 after the end).

    Sutton & Barto (2018) eq. 3.9. rewards, mask [B, T] -> returns [B, T] (0 at masked positions).
    """
    check_2d(rewards, "rewards")
    m = bool_mask(mask, rewards, like_name="rewards")
    check_finite(rewards, "rewards", m)
    r = torch.where(m, rewards, torch.zeros((), dtype=rewards.dtype, device=rewards.device))
    running = torch.zeros_like(r[:, 0])  # [B] return from the next valid token on
    out = []
    for t in reversed(range(r.shape[1])):
        g = r[:, t] + gamma * running
        running = torch.where(m[:, t], g, running)
        out.append(torch.where(m[:, t], g, torch.zeros_like(g)))
    return torch.stack(out[::-1], dim=1)


def compute_gae(
    rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float | Tensor
) -> tuple[Tensor, Tensor]:
    """Generalized Advantage Estimation (Schulman et al. 2016, eq. 16; special cases eqs. 17-18).

    delta_t = r_t + gamma * V(s_{t'}) - V(s_t)          (t' = next valid token, V = 0 after the end)
    A_t     = sum_l (gamma * lambda)^l delta_{t+l}       (computed as A_t = delta_t + gamma*lambda*A_{t'})
    R_t     = A_t + V(s_t)                               (the critic's regression target, TD(lambda))

    lambda = 0 gives the one-step TD residual; lambda = 1 gives the discounted return minus V(s_t).
    ``lam`` is a float or a tensor [B] of per-sequence lambdas (VAPO's length-adaptive lambda, see
    ``length_adaptive_lambda``); each must lie in [0, 1].
    rewards, values, mask [B, T] -> (advantages [B, T], returns [B, T]), both 0 at masked positions.
    """
    check_2d(rewards, "rewards")
    check_shape(values, rewards.shape, "values", "rewards")
    m = bool_mask(mask, rewards, like_name="rewards")
    check_finite(rewards, "rewards", m)
    check_finite(values, "values", m)
    if isinstance(lam, Tensor):
        check_shape(lam, rewards.shape[:1], "lam", "rewards[:, 0]")
        lam = lam.to(rewards.dtype)
    if not bool(torch.all((torch.as_tensor(lam) >= 0) & (torch.as_tensor(lam) <= 1))):
        raise ValueError(f"lam must lie in [0, 1], got {lam}")
    zero = torch.zeros((), dtype=rewards.dtype, device=rewards.device)
    r = torch.where(m, rewards, zero)
    v = torch.where(m, values.to(rewards.dtype), zero)
    next_value = torch.zeros_like(r[:, 0])  # [B] V at the next valid token (0 past the end)
    next_adv = torch.zeros_like(r[:, 0])  # [B] A at the next valid token
    out = []
    for t in reversed(range(r.shape[1])):
        delta = r[:, t] + gamma * next_value - v[:, t]
        adv = delta + gamma * lam * next_adv
        next_adv = torch.where(m[:, t], adv, next_adv)
        next_value = torch.where(m[:, t], v[:, t], next_value)
        out.append(torch.where(m[:, t], adv, zero))
    advantages = torch.stack(out[::-1], dim=1)
    returns = torch.where(m, advantages + v, zero)
    return advantages, returns


def _group_stats(scores: Tensor, group_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-element group size n, group mean, and unbiased group std (0 for singletons). All [N].

    Computed in float64, and a group whose scores are all equal gets its first score as mean and
    std 0 exactly, so ``s - mean`` is exactly 0 there (in float32, sum/n of eight 0.7s is not 0.7,
    and (s - mean) / (std + eps) would turn that rounding into advantages of ~0.06)."""
    _, inv = torch.unique(group_ids, return_inverse=True)  # [N] -> dense group index
    G = int(inv.max()) + 1
    s = scores.double()
    zeros = torch.zeros(G, dtype=torch.float64, device=scores.device)
    n = zeros.index_add(0, inv, torch.ones_like(s))  # [G]
    mean = zeros.index_add(0, inv, s) / n
    gmax = torch.full_like(zeros, -math.inf).scatter_reduce(0, inv, s, "amax")
    gmin = torch.full_like(zeros, math.inf).scatter_reduce(0, inv, s, "amin")
    equal = gmax == gmin
    mean = torch.where(equal, gmax, mean)
    sq = zeros.index_add(0, inv, (s - mean[inv]) ** 2)
    std = torch.where(equal, zeros, (sq / (n - 1).clamp(min=1)).sqrt())
    dt = scores.dtype
    return n[inv].to(dt), mean[inv].to(dt), std[inv].to(dt)


def _batch_whiten(x: Tensor, eps: float) -> Tensor:
    if x.numel() < 2:
        return torch.zeros_like(x)
    return (x - x.mean()) / (x.std() + eps)


def compute_group_advantages(
    scores: Tensor, group_ids: Tensor | Sequence[int], method: str, eps: float = 1e-6
) -> Tensor:
    """Critic-free advantages from N sampled completions grouped by prompt. scores [N] -> [N].

    ``group_ids`` are arbitrary ints (any order, not necessarily contiguous); equal id = same prompt.
    With n = group size, mean/std over the group (std unbiased, n - 1), B = the whole batch:
      grpo          (s - mean) / (std + eps)         Shao et al. 2024 (DeepSeekMath), sec. 4.1.2
      dr_grpo       s - mean                         Liu et al. 2025 (Dr. GRPO)
      rloo          s - mean_{j != i} s_j            Ahmadian et al. 2024; = n/(n-1) (s - mean), 0 if n = 1
      reinforce_pp  (s - mean_B) / (std_B + eps)     Hu et al. 2025 (REINFORCE++, arXiv:2501.03262)
      reinforce_pp_baseline   a = s - mean, then (a - mean_B(a)) / (std_B(a) + eps)   (same paper)
    ``reinforce_pp`` ignores the groups: it subtracts the mean of the whole batch and divides by the
    batch std ("global advantage normalization"). The paper normalises per-token returns over all valid
    tokens of the batch; for outcome-only rewards with gamma = 1 that is this sequence-level formula up
    to weighting sequences by their length (``estimate_advantages`` implements the token-level form).
    Singleton groups get advantage 0 under grpo, dr_grpo and rloo.
    """
    check_choice(method, GROUP_METHODS, "method")
    if not isinstance(scores, Tensor) or scores.dim() != 1:
        raise ValueError(f"scores must be a 1-D tensor [N], got {getattr(scores, 'shape', type(scores))}")
    gids = torch.as_tensor(group_ids, device=scores.device)
    if gids.dim() != 1 or gids.shape[0] != scores.shape[0]:
        raise ValueError(f"group_ids has shape {tuple(gids.shape)} but scores has shape {tuple(scores.shape)}")
    if gids.is_floating_point():
        raise ValueError("group_ids must be integers")
    if scores.numel() == 0:
        raise ValueError("scores is empty")
    check_finite(scores, "scores")
    s = scores if scores.is_floating_point() else scores.float()
    if method == "reinforce_pp":
        return _batch_whiten(s, eps)
    n, mean, std = _group_stats(s, gids)
    if method == "grpo":
        return (s - mean) / (std + eps)
    if method == "dr_grpo":
        return s - mean
    if method == "rloo":
        return torch.where(n > 1, (s - mean) * n / (n - 1).clamp(min=1), torch.zeros_like(s))
    return _batch_whiten(s - mean, eps)  # reinforce_pp_baseline


def whiten(x: Tensor, mask: Tensor | None = None, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """Normalise x to zero mean, unit variance over the valid entries: (x - mu) / sqrt(var + eps).

    Mean and (unbiased) variance are taken over all entries where ``mask`` is true (all if None).
    ``shift_mean=False`` rescales only: (x - mu) / sigma + mu. Masked positions are 0 in the output.
    """
    m = torch.ones_like(x, dtype=torch.bool) if mask is None else bool_mask(mask, x, like_name="x")
    check_nonempty(m)
    check_finite(x, "x", m)
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    xm = torch.where(m, x, zero)
    n = m.sum()
    mu = xm.sum() / n
    var = (torch.where(m, x - mu, zero) ** 2).sum() / (n - 1).clamp(min=1)
    out = (xm - mu) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mu
    return torch.where(m, out, zero)


# ---- one entry point for the trainer: estimator name -> (advantages [B, T], value targets [B, T]) ----
# Every estimator has the signature (rewards, mask, values, group_ids, gamma, lam, eps) -> (adv, returns).
ESTIMATORS = Registry("estimator")


def _masked_mean(x: Tensor, m: Tensor) -> Tensor:
    return torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum() / m.sum()


@ESTIMATORS.register("mc")
def _est_mc(rewards, mask, values, group_ids, gamma, lam, eps):
    G = compute_returns(rewards, mask, gamma)
    return G, G


@ESTIMATORS.register("none")
def _est_none(rewards, mask, values, group_ids, gamma, lam, eps):
    m = mask.bool()
    total = torch.where(m, rewards, torch.zeros_like(rewards)).sum(dim=1, keepdim=True)  # [B, 1]
    return torch.where(m, total.expand_as(rewards), torch.zeros_like(rewards)), compute_returns(rewards, mask, gamma)


@ESTIMATORS.register("batch_mean")
def _est_batch_mean(rewards, mask, values, group_ids, gamma, lam, eps):
    m = mask.bool()
    G = compute_returns(rewards, mask, gamma)
    return torch.where(m, G - _masked_mean(G, m), torch.zeros_like(G)), G


@ESTIMATORS.register("td", critic=True)
def _est_td(rewards, mask, values, group_ids, gamma, lam, eps):
    return compute_gae(rewards, values, mask, gamma, 0.0)


@ESTIMATORS.register("gae", critic=True)
def _est_gae(rewards, mask, values, group_ids, gamma, lam, eps):
    return compute_gae(rewards, values, mask, gamma, lam)


@ESTIMATORS.register("reinforce_pp")
def _est_reinforce_pp(rewards, mask, values, group_ids, gamma, lam, eps):
    G = compute_returns(rewards, mask, gamma)
    return whiten(G, mask), G


def _group_estimator(method: str) -> Callable:
    def est(rewards, mask, values, group_ids, gamma, lam, eps):
        m = mask.bool()
        G = compute_returns(rewards, mask, gamma)
        seq_scores = torch.where(m, rewards, torch.zeros_like(rewards)).sum(dim=1)  # [B]
        if method == "reinforce_pp_baseline":  # A_t = G_t - mean_group(S), then whiten over tokens
            _, mean, _ = _group_stats(seq_scores, torch.as_tensor(group_ids, device=rewards.device))
            return whiten(G - mean[:, None], mask), G
        adv = compute_group_advantages(seq_scores, group_ids, method, eps)  # [B]
        return torch.where(m, adv[:, None].expand_as(rewards), torch.zeros_like(rewards)), G

    return est


for _method in ("grpo", "dr_grpo", "rloo", "reinforce_pp_baseline"):
    ESTIMATORS.register(_method, groups=True, why="group baseline")(_group_estimator(_method))


@ESTIMATORS.register("vine", mc_values=True)
def _est_vine(rewards, mask, values, group_ids, gamma, lam, eps, splits=None):
    if values is None:
        raise ValueError("estimator 'vine' needs values: the Monte-Carlo estimates V_hat(s_p) at the split "
                         "positions (rlvr.algorithms.vine: mc_values, values_at_splits)")
    return vine_advantages(rewards, mask, values, mask if splits is None else splits, gamma)


_est_vine.reads_splits = True

# Kept for callers of the earlier API; new code reads ``ESTIMATORS.needs[name]``.
CRITIC_ESTIMATORS = ESTIMATORS.names_needing("critic")
GROUP_ESTIMATORS = ESTIMATORS.names_needing("groups")


def estimate_advantages(
    estimator: str,
    rewards: Tensor,
    mask: Tensor,
    *,
    values: Tensor | None = None,
    group_ids: Tensor | Sequence[int] | None = None,
    gamma: float = 1.0,
    lam: float = 1.0,
    eps: float = 1e-6,
    splits: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Dispatch an estimator by name. rewards, mask (, values) [B, T] -> (advantages, returns) [B, T].

    ``returns`` are value targets for a critic: GAE returns A + V for "gae"/"td", otherwise the
    discounted reward-to-go G_t. Estimators:
      mc          A_t = G_t (reward-to-go, no baseline; Williams 1992 with causality)
      none        A_t = sum_t r_t for every token (whole-trajectory return, no baseline)
      batch_mean  A_t = G_t - mean of G over all valid tokens of the batch (constant baseline)
      td          A_t = delta_t (one-step TD residual, GAE lambda = 0), needs ``values``
      gae         GAE(gamma, lam), needs ``values``
      reinforce_pp            whiten(G) over all valid tokens (REINFORCE++ global normalisation)
      grpo | dr_grpo | rloo   group advantage of the sequence total S_b = sum_t r_t, on every token
      reinforce_pp_baseline   whiten(G_t - mean_group(S)) over all valid tokens
      vine        VinePPO's per-step advantage from Monte-Carlo values (``vine.vine_advantages``):
                  ``values`` hold V_hat(s_p) at the ``splits`` [B, T] positions (None: every valid
                  token is a split, which gives the one-step TD residual)
    Group estimators need ``group_ids`` [B].
    """
    check_choice(estimator, ESTIMATORS, "estimator")
    check_2d(rewards, "rewards")
    m = bool_mask(mask, rewards, like_name="rewards")
    check_nonempty(m)
    needs = ESTIMATORS.needs[estimator]
    if needs.critic and values is None:
        raise ValueError(f"estimator {estimator!r} needs values (a critic)")
    if needs.groups and group_ids is None:
        raise ValueError(f"estimator {estimator!r} needs group_ids")
    fn = ESTIMATORS[estimator]
    if splits is None:
        return fn(rewards, m, values, group_ids, gamma, lam, eps)
    if not getattr(fn, "reads_splits", False):
        raise ValueError(f"estimator {estimator!r} does not read splits (only 'vine' does)")
    return fn(rewards, m, values, group_ids, gamma, lam, eps, splits=splits)
