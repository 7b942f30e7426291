"""GSPO: sequence-level, length-normalised importance ratio and clipping (Zheng et al. 2025,
"Group Sequence Policy Optimization", arXiv:2507.18071).

Same signature and stats keys as ``policy_loss`` (registered as policy loss "gspo").
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._checks import bool_mask
from .diagnostics import clip_table
from .kl import _MAX_LOG_RATIO
from .losses import POLICY_LOSSES, _clip_band, _no_dual_clip, _policy_inputs, _token_stats, _weigh_and_aggregate


def sequence_log_ratio(logp: Tensor, old_logp: Tensor, mask: Tensor) -> Tensor:
    """log s_b = (1/|y_b|) sum_t (log pi(y_t) - log pi_old(y_t))   (GSPO eq. 7, in log space).

    logp, old_logp, mask [B, T] -> [B] (differentiable in logp; 0 for a row with no valid token).
    """
    m = bool_mask(mask, logp, like_name="logp")
    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    return torch.where(m, logp - old_logp, zero).sum(dim=1) / m.sum(dim=1).clamp(min=1)


@POLICY_LOSSES.register("gspo")
def gspo_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float | None = 3e-4,
    clip_high: float | None = 4e-4,
    dual_clip: float | None = None,
    agg: str = "seq-mean-token-mean",
    tis_weights: Tensor | None = None,
    *,
    norm_len: int | None = None,
    num_tokens: float | Tensor | None = None,
    num_seqs: float | Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """GSPO-token loss (Zheng et al. 2025, eqs. 5-7 and 13-14).

    s_b    = exp(mean_t (log pi - log pi_old))                      sequence ratio [B]
    s_bt   = sg(s_b) * pi(y_t) / sg(pi(y_t))                       value s_b, grad s_b * grad log pi(y_t)
    l_bt   = -min(s_bt A_bt, clip(s_bt, 1 - eps_lo, 1 + eps_hi) A_bt)
    The clip decision is made on s_b, so a whole sequence is clipped or not. With one advantage per
    sequence and ``agg="seq-mean-token-mean"`` this is exactly GSPO's sequence objective
    -(1/B) sum_b min(s_b A_b, clip(s_b) A_b): its gradient s_b A_b (1/|y_b|) sum_t grad log pi(y_t) is
    the gradient of s_b A_b. ``clip_low=None`` gives the unclipped -s_bt A_bt. The paper's bands are
    tiny (3e-4, 4e-4) because s_b is a per-token geometric mean.
    Stats: the ``clip_table`` cells over sequences (fractions of sequences), clip/frac, ratio/mean and
    ratio/max of s_b, and kl/old (k3 of KL(pi_old || pi) over tokens).
    """
    _no_dual_clip(dual_clip, "gspo_loss")
    m, adv, zero = _policy_inputs(logp, old_logp, advantages, mask)
    clip_high = _clip_band(clip_low, clip_high)
    log_s = sequence_log_ratio(logp, old_logp, m).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)  # [B]
    lp = torch.where(m, logp, zero)
    ratio = torch.exp(log_s.detach()[:, None] + lp - lp.detach())  # [B, T], value s_b on every token
    loss_tok = -adv * ratio
    if clip_low is not None:
        loss_tok = torch.maximum(loss_tok, -adv * ratio.clamp(1 - clip_low, 1 + clip_high))
    loss = _weigh_and_aggregate(loss_tok, m, zero, tis_weights, agg, norm_len=norm_len, num_tokens=num_tokens,
                                num_seqs=num_seqs)

    with torch.no_grad():
        valid = m.any(dim=1)  # [B]
        s = torch.exp(log_s.detach())
        n_tok = m.sum(dim=1).clamp(min=1)
        seq_adv = torch.where(m, adv, zero).sum(dim=1) / n_tok  # [B] (the advantage when constant per row)
        stats = clip_table(s[:, None], seq_adv[:, None], valid[:, None], clip_low, clip_high)
        stats["clip/frac"] = stats["clip/pos_high"] + stats["clip/neg_low"]
        stats["clip/dual"] = torch.zeros((), dtype=logp.dtype, device=logp.device)  # no dual clip here
        n_seq = valid.sum().clamp(min=1)
        stats["ratio/mean"] = torch.where(valid, s, zero).sum() / n_seq
        stats["ratio/max"] = torch.where(valid, s, torch.full_like(s, -torch.inf)).max()
    return loss, _token_stats(stats, logp, old_logp, m, zero, tis_weights)
