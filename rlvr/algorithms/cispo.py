"""CISPO: clipped, stop-gradient importance-sampling weight, so every token keeps its gradient
(MiniMax 2025, "MiniMax-M1: Scaling Test-Time Compute Efficiently with Lightning Attention",
arXiv:2506.13585, sec. 3.1).

Same signature and stats keys as ``policy_loss`` (registered as policy loss "cispo").
"""
from __future__ import annotations

import torch
from torch import Tensor

from .diagnostics import clip_table
from .kl import _MAX_LOG_RATIO
from .losses import POLICY_LOSSES, _no_dual_clip, _policy_inputs, _token_stats, _weigh_and_aggregate


@POLICY_LOSSES.register("cispo")
def cispo_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float | None = 1.0,
    clip_high: float | None = 0.28,
    dual_clip: float | None = None,
    agg: str = "token-mean",
    tis_weights: Tensor | None = None,
    *,
    norm_len: int | None = None,
    num_tokens: float | Tensor | None = None,
    num_seqs: float | Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """CISPO loss (MiniMax-M1 eqs. 4-5): l_t = -sg(w_t) A_t log pi(y_t),  w_t = clip(r_t, 1 - eps_lo, 1 + eps_hi).

    r_t = pi(y_t) / pi_old(y_t). Unlike the PPO clip, which zeroes the gradient of a clipped token, the
    clip here only bounds the (detached) weight: d l_t / d log pi(y_t) = -w_t A_t on every valid token.
    Computed as -sg(w_t) A_t exp(log pi - sg(log pi)), whose gradient is the same and whose value is
    -w_t A_t (comparable to the clipped surrogate's value). Each bound may be None: that side is not
    truncated (the paper leaves the lower side open: ``clip_low=None`` or 1). At r = 1 the gradient is
    REINFORCE's.
    Stats: the ``clip_table`` cells over tokens, clip/frac (fraction of tokens whose weight was
    truncated, either side), ratio/mean, ratio/max, kl/old.
    """
    _no_dual_clip(dual_clip, "cispo_loss")
    m, adv, zero = _policy_inputs(logp, old_logp, advantages, mask)
    if clip_low is not None and not 0 <= clip_low <= 1:
        raise ValueError(f"need 0 <= clip_low <= 1 (or None), got {clip_low}")
    if clip_high is not None and not clip_high >= 0:
        raise ValueError(f"need clip_high >= 0 (or None), got {clip_high}")
    lp = torch.where(m, logp, zero)
    r = torch.exp(torch.where(m, logp - old_logp, zero).detach().clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO))
    lo = None if clip_low is None else 1 - clip_low
    hi = None if clip_high is None else 1 + clip_high
    w = r if lo is None and hi is None else r.clamp(lo, hi)  # [B, T], detached
    loss_tok = -w * adv * torch.exp(lp - lp.detach())
    loss = _weigh_and_aggregate(loss_tok, m, zero, tis_weights, agg, norm_len=norm_len, num_tokens=num_tokens,
                                num_seqs=num_seqs)

    with torch.no_grad():
        stats = clip_table(r, adv, m, clip_low, clip_high)
        n = m.sum().clamp(min=1)
        stats["clip/frac"] = ((w != r) & m).sum() / n
        stats["clip/dual"] = torch.zeros((), dtype=logp.dtype, device=logp.device)  # no dual clip here
        stats["ratio/mean"] = torch.where(m, r, zero).sum() / n
        stats["ratio/max"] = torch.where(m, r, torch.full_like(r, -torch.inf)).max()
    return loss, _token_stats(stats, logp, old_logp, m, zero, tis_weights)
