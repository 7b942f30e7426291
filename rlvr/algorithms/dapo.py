"""DAPO's reward shaping and batch bookkeeping (Yu et al. 2025, "DAPO: An Open-Source LLM
Reinforcement Learning System at Scale", arXiv:2503.14476, secs. 3.2 and 3.4).

Clip-higher is ``clip_high > clip_low`` in ``policy_loss`` and the token-level loss is
``loss_agg="token-mean"``; this module holds the two remaining pieces as pure functions:
  - the soft overlong punishment (a reward term from the response length), and
  - dynamic sampling's bookkeeping: which groups are mixed (not all-correct, not all-wrong), and
    how many more prompts to sample to refill the batch with mixed groups.
The sampling loop itself belongs to the trainer; it calls these between rollouts.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def overlong_penalty(lengths: Tensor, max_len: int, cache_len: int, factor: float = 1.0) -> Tensor:
    """Soft overlong punishment (DAPO eq. 13), with L_max = ``max_len``, L_cache = ``cache_len``:

      R(l) = 0                                    if l <= L_max - L_cache
           = ((L_max - L_cache) - l) / L_cache    if L_max - L_cache < l <= L_max   (linear, 0 to -1)
           = -1                                   if l > L_max
    times ``factor``; added to the verifier score. ``l`` counts generated tokens, and a response cut at
    the budget has l = L_max (penalty -1). lengths [B] (int or float) -> penalties [B] (float).
    """
    if not (isinstance(max_len, int) and isinstance(cache_len, int) and 0 < cache_len <= max_len):
        raise ValueError(f"need integers 0 < cache_len <= max_len, got cache_len={cache_len}, max_len={max_len}")
    if not (math.isfinite(factor) and factor >= 0):
        raise ValueError(f"factor must be a finite number >= 0, got {factor}")
    l = torch.as_tensor(lengths).to(torch.get_default_dtype())
    expected = max_len - cache_len
    ramp = ((expected - l) / cache_len).clamp(min=-1.0, max=0.0)  # 0 up to L_max - L_cache, then linear
    return factor * torch.where(l > max_len, torch.full_like(l, -1.0), ramp)


def group_spread(scores: Tensor, group_ids: Tensor | Sequence[int]) -> tuple[Tensor, Tensor]:
    """(inv [N], spread [G]): each sample's group index (groups in sorted id order) and each group's
    max - min score, the quantity behind DAPO eq. 11's filter (spread 0: every sample of the group
    scored the same, so a group baseline gives it zero advantage).

    scores [N], group_ids [N] (arbitrary ints). A singleton group has spread 0.
    """
    gids = torch.as_tensor(group_ids, device=scores.device)
    if scores.dim() != 1 or gids.shape != scores.shape:
        raise ValueError(f"need scores [N] and group_ids [N], got {tuple(scores.shape)} and {tuple(gids.shape)}")
    _, inv = torch.unique(gids, return_inverse=True)
    G = int(inv.max()) + 1 if inv.numel() else 0
    s = scores.to(torch.get_default_dtype()) if not scores.is_floating_point() else scores
    hi = torch.full((G,), -math.inf, dtype=s.dtype, device=s.device).scatter_reduce(0, inv, s, "amax")
    lo = torch.full((G,), math.inf, dtype=s.dtype, device=s.device).scatter_reduce(0, inv, s, "amin")
    return inv, hi - lo


def mixed_groups(scores: Tensor, group_ids: Tensor | Sequence[int], tol: float = 0.0) -> Tensor:
    """Dynamic sampling's filter (DAPO eq. 11, 0 < |{correct}| < G): True for samples whose group's
    scores are not all equal (max - min > tol), i.e. groups with a non-zero group-baseline advantage.

    scores [N], group_ids [N] (arbitrary ints) -> keep [N] bool. Singleton groups are never mixed.
    """
    inv, spread = group_spread(scores, group_ids)
    return (spread > tol)[inv]


def prompts_to_refill(have_groups: int, batch_groups: int, mixed_rate: float | None = None,
                      max_prompts: int | None = None) -> int:
    """How many more prompts to sample so the batch can be filled to ``batch_groups`` mixed groups.

    need = batch_groups - have_groups (0 if already full). With the observed fraction of mixed groups
    ``mixed_rate`` p in (0, 1] (e.g. from the rollouts so far), ask for ceil(need / p) prompts so one more
    round is expected to suffice; p = 0 or None asks for ``need``. ``max_prompts`` caps the request.
    The caller keeps the first ``batch_groups`` mixed groups and drops the surplus (DAPO Algorithm 1).
    """
    if have_groups < 0 or batch_groups < 1:
        raise ValueError(f"need have_groups >= 0 and batch_groups >= 1, got {have_groups}, {batch_groups}")
    need = max(batch_groups - have_groups, 0)
    if need == 0:
        return 0
    if mixed_rate is not None:
        if not (0 <= mixed_rate <= 1):
            raise ValueError(f"mixed_rate must lie in [0, 1], got {mixed_rate}")
        if mixed_rate > 0:
            need = math.ceil(need / mixed_rate)
    return need if max_prompts is None else min(need, max_prompts)
