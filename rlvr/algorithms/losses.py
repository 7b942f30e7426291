"""Policy-gradient and value losses, entropy, and loss aggregation over tokens.

Shapes: logp, old_logp, mask, values, returns are [B, T] over response tokens; advantages [B, T] or
[B] (one per sequence, broadcast over its tokens). ``mask`` is bool or 0/1. Values at masked
positions are never used (even NaN there cannot leak into the loss or its gradient).
Every loss returns (scalar loss, stats) where stats are detached 0-dim tensors (``float()`` to log).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._checks import bool_mask, check_2d, check_choice, check_finite, check_nonempty, check_shape
from .diagnostics import DEFAULT_CLIP, _broadcast_adv, clip_table
from .kl import _MAX_LOG_RATIO, kl_estimate
from .registry import UPDATE_RULES, Registry

AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")

# Policy losses share one signature: (logp, old_logp, advantages, mask, clip_low, clip_high, dual_clip,
# agg, tis_weights, *, norm_len, num_tokens, num_seqs) -> (loss, stats). "ppo_clip" is ``policy_loss``
# below; "gspo" and "cispo" register themselves from their modules.
POLICY_LOSSES = Registry("policy loss")


def aggregate(
    loss_tokens: Tensor,
    mask: Tensor,
    mode: str = "token-mean",
    *,
    norm_len: int | None = None,
    num_tokens: float | Tensor | None = None,
    num_seqs: float | Tensor | None = None,
) -> Tensor:
    """Reduce per-token losses l [B, T] to a scalar. With m = mask, L_b = sum_t m l (sequence sum),
    n_b = sum_t m (sequence length), S = number of sequences with at least one valid token:
      token-mean               sum_b L_b / sum_b n_b           every token weighs the same (DAPO)
      seq-mean-token-mean      (1/S) sum_b L_b / n_b           every sequence weighs the same (GRPO eq. 3)
      seq-mean-token-sum       (1/S) sum_b L_b                 sequence-level REINFORCE (RLOO)
      seq-mean-token-sum-norm  (1/S) sum_b L_b / norm_len      Dr. GRPO: a constant normaliser
                                                               (norm_len defaults to T = mask.shape[-1];
                                                               pass the generation budget to make it
                                                               independent of the batch's padding)
    For gradient accumulation over micro-batches pass the full batch's ``num_tokens`` (sum_b n_b) or
    ``num_seqs`` (S): the micro-batch losses then sum to the full-batch loss.
    """
    check_choice(mode, AGG_MODES, "mode")
    check_2d(loss_tokens, "loss_tokens")
    m = bool_mask(mask, loss_tokens, like_name="loss_tokens")
    l = torch.where(m, loss_tokens, torch.zeros((), dtype=loss_tokens.dtype, device=loss_tokens.device))
    if mode == "token-mean":
        if num_tokens is None:
            check_nonempty(m)
            num_tokens = m.sum()
        return l.sum() / num_tokens
    if num_seqs is None:
        check_nonempty(m)
        num_seqs = m.any(dim=1).sum()
    seq_sum = l.sum(dim=1)  # [B]
    if mode == "seq-mean-token-mean":
        return (seq_sum / m.sum(dim=1).clamp(min=1)).sum() / num_seqs
    if mode == "seq-mean-token-sum":
        return seq_sum.sum() / num_seqs
    norm = m.shape[-1] if norm_len is None else norm_len
    if norm <= 0:
        raise ValueError(f"norm_len must be > 0, got {norm}")
    return seq_sum.sum() / (num_seqs * norm)


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Entropy of softmax(z) over the last dim: H = logsumexp(z) - sum_v softmax(z)_v z_v
    (computed on z - max z, which leaves H unchanged).

    logits [..., V] -> [...]. Half-precision inputs are computed in float32. -inf logits (masked
    vocabulary entries) are allowed: they contribute 0 and give finite gradients.
    """
    z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    lowest = torch.finfo(z.dtype).min
    z = z.clamp(min=lowest)  # -inf -> lowest finite, so p * z = 0 * finite
    # H is shift-invariant; shifting by the max avoids cancellation in lse - E[z] for large logits
    z = (z - z.amax(dim=-1, keepdim=True).detach()).clamp(min=lowest)
    lse = torch.logsumexp(z, dim=-1)
    p = torch.softmax(z, dim=-1)
    return lse - (p * z).sum(dim=-1)


# ----------------------------------------------------------------------------- shared by the policy losses

def _policy_inputs(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The checks every policy loss makes on its inputs: ``(m, adv, zero)`` with ``m`` the bool mask,
    ``adv`` the advantages broadcast to [B, T] in logp's dtype (0 where masked) and ``zero`` a 0-dim
    tensor of logp's dtype and device."""
    check_2d(logp, "logp")
    check_shape(old_logp, logp.shape, "old_logp", "logp")
    m = bool_mask(mask, logp, like_name="logp")
    adv = _broadcast_adv(advantages, logp)
    check_finite(adv, "advantages", m)
    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    return m, torch.where(m, adv.to(logp.dtype), zero), zero


def _clip_band(clip_low: float | None, clip_high: float | None) -> float | None:
    """A PPO-style clip band ``[1 - clip_low, 1 + clip_high]``, checked; returns ``clip_high``
    (``clip_low`` when None). ``clip_low=None`` (no clipping) passes through."""
    if clip_low is None:
        return clip_high
    clip_high = clip_low if clip_high is None else clip_high
    if not (0 <= clip_low < 1 and clip_high >= 0):
        raise ValueError(f"need 0 <= clip_low < 1 and clip_high >= 0, got {clip_low}, {clip_high}")
    return clip_high


def _no_dual_clip(dual_clip: float | None, loss: str) -> None:
    if dual_clip is not None:
        raise ValueError(f"{loss} has no dual clip; dual_clip must be None")


def _weigh_and_aggregate(loss_tok: Tensor, m: Tensor, zero: Tensor, tis_weights: Tensor | None, agg: str,
                         **norm) -> Tensor:
    """``aggregate(l_t * sg(tis_t), m, agg)``: per-token losses times the (detached, checked)
    truncated importance weights when given, then reduced over tokens."""
    if tis_weights is not None:
        check_shape(tis_weights, loss_tok.shape, "tis_weights", "logp")
        check_finite(tis_weights, "tis_weights", m)
        loss_tok = loss_tok * torch.where(m, tis_weights.detach().to(loss_tok.dtype), zero)
    return aggregate(loss_tok, m, agg, **norm)


@torch.no_grad()
def _token_stats(stats: dict[str, Tensor], logp: Tensor, old_logp: Tensor, m: Tensor, zero: Tensor,
                 tis_weights: Tensor | None) -> dict[str, Tensor]:
    """Adds the stats every policy loss reports over its valid tokens: ``kl/old``, the k3 estimate of
    KL(pi_old || pi) on the rollout tokens (they are samples of pi_old), and ``tis/mean`` when
    ``tis_weights`` are given."""
    n = m.sum().clamp(min=1)
    kl_old = kl_estimate(old_logp.detach(), logp.detach(), "k3")
    stats["kl/old"] = torch.where(m, kl_old, zero).sum() / n
    if tis_weights is not None:
        stats["tis/mean"] = torch.where(m, tis_weights.detach().to(logp.dtype), zero).sum() / n
    return stats


@torch.no_grad()
def truncated_is_weights(old_logp: Tensor, rollout_logp: Tensor, mask: Tensor, cap: float = 2.0) -> Tensor:
    """Token-level truncated importance weights w_t = min(pi_old(y_t) / pi_rollout(y_t), cap).

    Corrects for the rollout engine's numerics differing from the trainer's (Yao et al. 2025, "Your
    efficient RL framework secretly brings you off-policy RL training"; Ionides 2008 for truncation).
    old_logp: trainer log-probs before the update; rollout_logp: the engine's. [B, T] -> [B, T],
    detached, 0 at masked positions.
    """
    check_2d(old_logp, "old_logp")
    check_shape(rollout_logp, old_logp.shape, "rollout_logp", "old_logp")
    m = bool_mask(mask, old_logp, like_name="old_logp")
    if not cap > 0:
        raise ValueError(f"cap must be > 0, got {cap}")
    log_w = torch.where(m, old_logp - rollout_logp, torch.zeros_like(old_logp))
    w = torch.exp(log_w.clamp(max=_MAX_LOG_RATIO)).clamp(max=cap)
    return torch.where(m, w, torch.zeros_like(w))


SEQ_IS_MODES = ("truncate", "mask")


@torch.no_grad()
def sequence_is_weights(
    old_logp: Tensor, rollout_logp: Tensor, mask: Tensor, mode: str = "truncate", high: float = 2.0, low: float = 0.0
) -> Tensor:
    """Sequence-level importance weights from the geometric-mean ratio of trainer to rollout engine.

    rho_b = exp( (1/|y_b|) sum_t (log pi_old(y_t) - log pi_rollout(y_t)) )   (length-normalised, as GSPO's s_i)
      truncate   w_b = min(rho_b, high)                  (sequence-level truncated IS)
      mask       w_b = 1 if low <= rho_b <= high else 0  (drop sequences the engine sampled too differently)
    The token-level counterpart is ``truncated_is_weights``; this one gives every token of a sequence the
    same weight, so a single badly-mismatched token cannot dominate (Yao et al. 2025; Zheng et al. 2025).
    old_logp, rollout_logp, mask [B, T] -> weights [B, T] (pass as ``tis_weights``), detached, 0 where masked.
    """
    check_choice(mode, SEQ_IS_MODES, "mode")
    check_2d(old_logp, "old_logp")
    check_shape(rollout_logp, old_logp.shape, "rollout_logp", "old_logp")
    m = bool_mask(mask, old_logp, like_name="old_logp")
    if not (high > 0 and 0 <= low <= high):
        raise ValueError(f"need 0 <= low <= high and high > 0, got low={low}, high={high}")
    zero = torch.zeros((), dtype=old_logp.dtype, device=old_logp.device)
    n = m.sum(dim=1).clamp(min=1)  # [B]
    log_rho = torch.where(m, old_logp - rollout_logp, zero).sum(dim=1) / n  # [B]
    rho = torch.exp(log_rho.clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO))
    w = rho.clamp(max=high) if mode == "truncate" else ((rho >= low) & (rho <= high)).to(old_logp.dtype)
    return torch.where(m, w[:, None].expand_as(old_logp), zero)


@POLICY_LOSSES.register("ppo_clip")
def policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float | None = 0.2,
    clip_high: float | None = 0.2,
    dual_clip: float | None = None,
    agg: str = "token-mean",
    tis_weights: Tensor | None = None,
    *,
    norm_len: int | None = None,
    num_tokens: float | Tensor | None = None,
    num_seqs: float | Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped-surrogate policy loss, per token, then ``aggregate``d.

    r_t = exp(logp - old_logp). With clip band [1 - eps_lo, 1 + eps_hi]:
      clipped (PPO, Schulman et al. 2017 eq. 7; asymmetric eps_hi > eps_lo = "Clip-Higher" of DAPO,
      Yu et al. 2025):   l_t = -min(r_t A_t, clip(r_t, 1 - eps_lo, 1 + eps_hi) A_t)
      dual clip (Ye et al. 2020, AAAI), c > 1, only for A_t < 0:   l_t = min(l_t, -c A_t)
      vanilla importance-sampled PG (``clip_low=None``; ``clip_high`` ignored):   l_t = -r_t A_t
    At r = 1 all variants have gradient -A_t grad log pi (the REINFORCE gradient). ``clip_high=None``
    means clip_high = clip_low. ``tis_weights`` [B, T] (see ``truncated_is_weights``) multiply l_t
    (detached). The log-ratio is clamped to [-20, 20] so r stays finite.
    Stats: the ``clip_table`` cells (default 0.2 band when unclipped), clip/frac (pos_high + neg_low:
    where the clip binds), clip/dual (where the dual clip binds), ratio/mean, ratio/max, and kl/old,
    the k3 estimate of KL(pi_old || pi) on the rollout tokens.
    """
    m, adv, zero = _policy_inputs(logp, old_logp, advantages, mask)
    clip_high = _clip_band(clip_low, clip_high)
    if dual_clip is not None:
        if clip_low is None:
            raise ValueError("dual_clip needs clipping (clip_low is None)")
        if not dual_clip > 1:
            raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
    log_ratio = torch.where(m, logp - old_logp, zero).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    ratio = torch.exp(log_ratio)  # [B, T], 1 at masked positions
    loss_tok = -adv * ratio
    if clip_low is not None:
        clipped = -adv * ratio.clamp(1 - clip_low, 1 + clip_high)
        loss_tok = torch.maximum(loss_tok, clipped)  # = -min(rA, clip(r)A)
        if dual_clip is not None:
            loss_tok = torch.where(adv < 0, torch.minimum(loss_tok, -dual_clip * adv), loss_tok)
    loss = _weigh_and_aggregate(loss_tok, m, zero, tis_weights, agg, norm_len=norm_len, num_tokens=num_tokens,
                                num_seqs=num_seqs)

    with torch.no_grad():
        r = ratio.detach()
        stats = clip_table(r, adv, m, clip_low, clip_high)
        stats["clip/frac"] = stats["clip/pos_high"] + stats["clip/neg_low"]
        n = m.sum().clamp(min=1)
        dual = (adv < 0) & (r > dual_clip) & m if dual_clip is not None else torch.zeros_like(m)
        stats["clip/dual"] = dual.sum() / n
        stats["ratio/mean"] = torch.where(m, r, zero).sum() / n
        stats["ratio/max"] = torch.where(m, r, torch.full_like(r, -torch.inf)).max()
    return loss, _token_stats(stats, logp, old_logp, m, zero, tis_weights)


@UPDATE_RULES.register("first_order")
def first_order_loss(name: str, *args, **kwargs) -> tuple[Tensor, dict[str, Tensor]]:
    """The first-order update rule's policy term: ``POLICY_LOSSES[name](*args, **kwargs)`` (the caller
    backpropagates it and steps its optimizer). ``name`` is a preset's ``policy_loss``."""
    check_choice(name, POLICY_LOSSES, "policy loss")
    return POLICY_LOSSES[name](*args, **kwargs)


def value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    mask: Tensor,
    clip: float | None = None,
    agg: str = "token-mean",
    *,
    norm_len: int | None = None,
    num_tokens: float | Tensor | None = None,
    num_seqs: float | Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Critic regression loss l_t = 0.5 (V_t - R_t)^2, then ``aggregate``d.

    With ``clip`` = eps_v (PPO value clipping, as in the OpenAI baselines PPO2 code; Engstrom et al.
    2020 sec. 3 and Andrychowicz et al. 2021 discuss it):
      V_clip = V_old + clip(V - V_old, -eps_v, eps_v);   l_t = 0.5 max((V - R)^2, (V_clip - R)^2)
    Stats: value/clipfrac (tokens where the clipped term is larger, i.e. the clip binds), value/mean,
    value/mse (unclipped mean squared error on valid tokens).
    """
    check_2d(values, "values")
    check_shape(old_values, values.shape, "old_values", "values")
    check_shape(returns, values.shape, "returns", "values")
    m = bool_mask(mask, values, like_name="values")
    check_finite(returns, "returns", m)
    if clip is not None and not clip > 0:
        raise ValueError(f"clip must be > 0 or None, got {clip}")
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    v = torch.where(m, values, zero)
    R = torch.where(m, returns.to(values.dtype), zero)
    err2 = (v - R) ** 2
    if clip is None:
        loss_tok = 0.5 * err2
        binds = torch.zeros_like(m)
    else:
        v_old = torch.where(m, old_values.to(values.dtype), zero)
        v_clip = v_old + (v - v_old).clamp(-clip, clip)
        err2_clip = (v_clip - R) ** 2
        loss_tok = 0.5 * torch.maximum(err2, err2_clip)
        binds = (err2_clip > err2) & m
    loss = aggregate(loss_tok, m, agg, norm_len=norm_len, num_tokens=num_tokens, num_seqs=num_seqs)
    with torch.no_grad():
        n = m.sum().clamp(min=1)
        stats = {
            "value/clipfrac": binds.sum() / n,
            "value/mean": v.detach().sum() / n,
            "value/mse": err2.detach().sum() / n,
        }
    return loss, stats


__all__ = [
    "AGG_MODES",
    "DEFAULT_CLIP",
    "POLICY_LOSSES",
    "SEQ_IS_MODES",
    "aggregate",
    "entropy_from_logits",
    "first_order_loss",
    "policy_loss",
    "sequence_is_weights",
    "truncated_is_weights",
    "value_loss",
]
