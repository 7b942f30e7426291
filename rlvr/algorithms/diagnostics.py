"""Diagnostics: PPO clip table, critic explained variance, policy-gradient variance.

All results are detached 0-dim tensors (no host sync here); call ``float()`` when logging.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._checks import bool_mask, check_2d, check_finite, check_nonempty

DEFAULT_CLIP = 0.2  # band used for reporting when no clip is applied


def _broadcast_adv(advantages: Tensor, like: Tensor) -> Tensor:
    """advantages [B] or [B, T] -> [B, T]."""
    if advantages.dim() == 1 and advantages.shape[0] == like.shape[0]:
        return advantages[:, None].expand_as(like)
    if advantages.shape != like.shape:
        raise ValueError(
            f"advantages has shape {tuple(advantages.shape)}; expected {tuple(like.shape)} or ({like.shape[0]},)"
        )
    return advantages


@torch.no_grad()
def clip_table(
    ratio: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float | None = DEFAULT_CLIP,
    clip_high: float | None = None,
) -> dict[str, Tensor]:
    """Where the importance ratio r = pi/pi_old sits relative to the clip band, split by sign of A.

    Fractions of valid tokens (mask) in each cell, with band [1 - eps_lo, 1 + eps_hi]:
      clip/pos_high  A > 0, r > 1 + eps_hi   clipped: gradient zeroed (already moved up enough)
      clip/pos_low   A > 0, r < 1 - eps_lo   not clipped: keeps pushing r up
      clip/neg_high  A < 0, r > 1 + eps_hi   not clipped: keeps pushing r down (dual clip caps it)
      clip/neg_low   A < 0, r < 1 - eps_lo   clipped: gradient zeroed (already moved down enough)
      clip/inside    1 - eps_lo <= r <= 1 + eps_hi (any A)
    ``clip_low=None`` uses the default 0.2 band; ``clip_high=None`` means clip_high = clip_low.
    ratio, mask [B, T]; advantages [B, T] or [B].
    """
    check_2d(ratio, "ratio")
    m = bool_mask(mask, ratio, like_name="ratio")
    adv = _broadcast_adv(advantages, ratio)
    lo = DEFAULT_CLIP if clip_low is None else clip_low
    hi = lo if clip_high is None else clip_high
    n = m.sum().clamp(min=1).to(ratio.dtype if ratio.is_floating_point() else torch.float32)
    high, low = ratio > 1 + hi, ratio < 1 - lo
    pos, neg = adv > 0, adv < 0

    def frac(cell: Tensor) -> Tensor:
        return (cell & m).sum() / n

    return {
        "clip/pos_high": frac(pos & high),
        "clip/pos_low": frac(pos & low),
        "clip/neg_high": frac(neg & high),
        "clip/neg_low": frac(neg & low),
        "clip/inside": frac(~high & ~low),
    }


@torch.no_grad()
def _value_pair_mask(values: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    """The checks of a (values, returns) pair: both [B, T] of one shape; the bool mask."""
    check_2d(returns, "returns")
    if values.shape != returns.shape:
        raise ValueError(f"values has shape {tuple(values.shape)} but returns has shape {tuple(returns.shape)}")
    return bool_mask(mask, returns, like_name="returns")


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    """1 - Var[R - V] / Var[R] over valid tokens (1 = perfect critic, 0 = no better than a constant,
    < 0 = worse). Returns nan when Var[R] is 0 to the inputs' precision (explained variance is
    undefined): returns built as A + V (GAE) in float32 from equal rewards differ by rounding, about
    eps * max(|R|, |V|), and a ratio over that variance is noise (it reached -1e14). values, returns,
    mask [B, T] -> 0-dim tensor."""
    m = _value_pair_mask(values, returns, mask)
    check_nonempty(m)
    check_finite(values, "values", m)
    check_finite(returns, "returns", m)
    v, r = values[m].double(), returns[m].double()
    var_r = r.var(unbiased=False)
    ev = 1.0 - (r - v).var(unbiased=False) / var_r
    # the rounding floor: a spread of 64 ulps of the largest magnitude involved
    floor = (64 * torch.finfo(returns.dtype).eps * torch.maximum(r.abs().max(), v.abs().max())) ** 2
    return torch.where(var_r > floor, ev, torch.full_like(ev, float("nan"))).float()


def value_bias(values: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    """mean_b (V(s_0,b) - G_0,b) over the rows whose first response token is valid: the critic's
    error on the value of the prompt itself, the baseline GAE subtracts at the response's first
    token (with gamma = lambda = 1 that token's advantage is exactly G_0 - V(s_0)). Explained
    variance misses a critic whose values are all shifted together (a constant value has explained
    variance 0 whatever the constant); this shows the shift: 0 for a calibrated baseline.
    values, returns, mask [B, T] -> 0-dim tensor."""
    first = _value_pair_mask(values, returns, mask)[:, 0]
    if not bool(first.any()):
        raise ValueError("value_bias: no valid first response token (mask[:, 0] is all 0)")
    check_finite(values[:, :1], "values", first[:, None])
    check_finite(returns[:, :1], "returns", first[:, None])
    return (values[first, 0].double() - returns[first, 0].double()).mean().float()


@torch.no_grad()
def gradient_variance(grads: Sequence[Tensor] | Tensor) -> dict[str, Tensor]:
    """Variance of a policy-gradient estimate from K gradient estimates on K disjoint splits of a batch.

    Let g_k (k = 1..K) be the gradient of the loss on split k (flattened, [D]) and g_bar = mean_k g_k,
    the full-batch gradient (for equal-size splits). Returns
      trace_var     = sum_d Var_k[g_k,d]  (unbiased, K - 1): total variance of one split's estimate
      mean_sq_norm  = ||g_bar||^2
      relative      = trace_var / (K * ||g_bar||^2 + tiny)
    Var[g_bar] = trace_var / K, so ``relative`` is the noise-to-signal ratio of the full-batch gradient:
    << 1 means the batch gradient points reliably, >= 1 means it is mostly noise. Compare baselines
    (none / group / critic) on the same batch and splits. Since E||g_bar||^2 = ||E g||^2 + E[trace_var]/K,
    ``relative`` is about 1 when the true gradient is 0 (pure noise), and about 0 when noise is negligible.
    """
    G = grads if isinstance(grads, Tensor) else torch.stack([g.reshape(-1) for g in grads])
    if G.dim() != 2 or G.shape[0] < 2:
        raise ValueError(f"grads must be K >= 2 flattened gradients, got shape {tuple(G.shape)}")
    check_finite(G, "grads")
    G = G.double()
    K = G.shape[0]
    trace_var = G.var(dim=0, unbiased=True).sum()
    mean_sq_norm = G.mean(dim=0).pow(2).sum()
    relative = trace_var / (K * mean_sq_norm + torch.finfo(torch.float64).tiny)
    return {"trace_var": trace_var, "mean_sq_norm": mean_sq_norm, "relative": relative}
