"""One micro-batch's loss from a preset: the policy term, entropy bonus, KL terms and value loss.

Pure tensors in, (loss, stats) out; no models, no optimizers. The trainer's first-order update
batches the rollout, computes the current log-probs (and values) of each micro-batch, calls
``micro_batch_loss`` and backpropagates the result; the trust-region update uses the same function
(without values) as its surrogate. With ``agg`` totals of the mini-batch (``num_tokens``,
``num_seqs``) the micro-batch losses sum exactly to the mini-batch loss.

    L = L_pi(theta)                                  policy term, ``POLICY_LOSSES[preset.policy_loss]``
        - c_H  * agg(H_t)                            entropy bonus (preset.entropy_coef)
        + beta * agg(kl(pi_theta || pi_ref)_t)       reference KL in the loss (kl_placement "loss")
        + beta_old * agg(k3(pi_old || pi_theta)_t)   PPO's KL penalty (Schulman et al. 2017 eq. 8);
                                                     both KL terms are bounded per token by kl_clamp
        + w_V  * L_V                                 value loss (PPO2 clipping), w_V = 1 for a separate
                                                     critic (its own parameters), value_coef when the
                                                     critic shares the policy's trunk
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .kl import kl_estimate
from .losses import aggregate, first_order_loss, value_loss


def micro_batch_loss(
    preset: Any,
    mask: Tensor,
    *,
    logp: Tensor | None = None,
    old_logp: Tensor | None = None,
    advantages: Tensor | None = None,
    entropy: Tensor | None = None,
    ref_logp: Tensor | None = None,
    kl_coef: float = 0.0,
    kl_old_coef: float = 0.0,
    kl_clamp: float | None = None,
    is_weights: Tensor | None = None,
    values: Tensor | None = None,
    old_values: Tensor | None = None,
    returns: Tensor | None = None,
    value_clip: float | None = None,
    value_weight: float = 1.0,
    num_tokens: Tensor | float | None = None,
    num_seqs: Tensor | float | None = None,
    norm_len: int | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The loss of one micro-batch (equation in the module docstring) and its stats.

    ``preset``: a :class:`~rlvr.algorithms.presets.Preset` (policy_loss, clip_low/high, dual_clip,
    loss_agg, entropy_coef, kl_placement, kl_kind). All tensors are [b, T] on the micro-batch's rows;
    ``mask`` marks the trained tokens. ``logp`` None: no policy term (value warm-up: only the critic
    learns); ``values`` None: no value term. ``kl_coef`` / ``kl_old_coef`` are the controllers'
    current values (the KL to ``ref_logp`` enters only with kl_placement "loss"); ``kl_clamp``
    bounds each token's KL estimate in both terms (``kl_estimate``). ``is_weights``
    [b, T]: rollout/trainer importance weights (TIS and/or sequence-level), detached.
    Stats (floats): the policy loss's own (clip table, ratio, kl/old), loss/policy (the policy term
    alone), entropy, loss/kl, loss/value and the value loss's stats. The loss is a 0-d tensor (no
    graph when neither term is present).
    """
    p = preset
    totals = dict(num_tokens=num_tokens, num_seqs=num_seqs, norm_len=norm_len)
    stats: dict[str, float] = {}
    loss = torch.zeros((), device=mask.device)
    if logp is not None:
        loss, pst = first_order_loss(p.policy_loss, logp, old_logp, advantages, mask, p.clip_low, p.clip_high,
                                     p.dual_clip, p.loss_agg, is_weights, **totals)
        stats = {k: float(v) for k, v in pst.items()}
        stats["loss/policy"] = float(loss.detach())
        if entropy is not None:
            stats["entropy"] = float((entropy.detach() * mask).sum() / mask.sum().clamp(min=1))
            if p.entropy_coef:
                loss = loss - p.entropy_coef * aggregate(entropy, mask, p.loss_agg, **totals)
        if p.kl_placement == "loss" and ref_logp is not None:
            kl = aggregate(kl_estimate(logp, ref_logp, p.kl_kind, clamp=kl_clamp), mask, p.loss_agg, **totals)
            loss = loss + kl_coef * kl
            stats["loss/kl"] = float(kl.detach())
        if kl_old_coef:  # PPO-KL: penalise KL(pi_old || pi) instead of clipping (k3 bounded by kl_clamp)
            kl_old = kl_estimate(old_logp, logp, "k3", clamp=kl_clamp)
            loss = loss + kl_old_coef * aggregate(kl_old, mask, p.loss_agg, **totals)
    if values is not None:
        vloss, vst = value_loss(values, old_values, returns, mask, clip=value_clip, agg="token-mean",
                                num_tokens=num_tokens)
        loss = loss + value_weight * vloss
        stats["loss/value"] = float(vloss.detach())
        stats.update({k: float(v) for k, v in vst.items()})
    return loss, stats
