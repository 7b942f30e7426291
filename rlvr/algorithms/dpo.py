"""DPO from verifier pairs: pair formation inside groups and the pairwise loss (Rafailov et al. 2023,
"Direct Preference Optimization: Your Language Model is Secretly a Reward Model", eq. 7).

Online use: sample n completions per prompt, score them with the verifier, ``verifier_pairs`` picks
(chosen, rejected) index pairs inside each group, then ``dpo_loss`` on the summed sequence
log-probs of the policy and the frozen reference. Offline pairs come from ``rlvr.pairs``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import bool_mask, check_2d, check_finite
from .registry import UPDATE_RULES


class Pairs(NamedTuple):
    chosen: Tensor  # [P] int64 indices into the batch
    rejected: Tensor  # [P]
    groups: int  # number of groups (prompts) seen
    groups_without_pair: int  # groups whose scores are all equal (or singletons): nothing to prefer


def verifier_pairs(
    scores: Tensor, group_ids: Tensor | Sequence[int], max_pairs_per_group: int | None = None, margin: float = 0.0
) -> Pairs:
    """Preference pairs inside each group from verifier scores.

    Within a group, sort by score (ties by batch index); pair the k-th highest with the k-th lowest,
    k = 0, 1, ..., while score_high - score_low > ``margin``; each sample is used at most once. For 0/1
    scores this pairs min(#correct, #incorrect) correct samples with as many incorrect ones (a correct
    vs an incorrect answer to the same prompt). ``max_pairs_per_group`` caps k. Groups are visited in
    order of first appearance. scores [N], group_ids [N] -> Pairs (indices on scores' device).
    """
    gids = torch.as_tensor(group_ids).tolist()
    s = scores.detach().cpu().tolist()
    if scores.dim() != 1 or len(gids) != len(s):
        raise ValueError(f"need scores [N] and group_ids [N], got {tuple(scores.shape)} and {len(gids)} ids")
    if max_pairs_per_group is not None and max_pairs_per_group < 1:
        raise ValueError(f"max_pairs_per_group must be >= 1 or None, got {max_pairs_per_group}")
    members: dict[int, list[int]] = {}
    for i, g in enumerate(gids):
        members.setdefault(int(g), []).append(i)
    chosen: list[int] = []
    rejected: list[int] = []
    empty = 0
    for idx in members.values():
        order = sorted(idx, key=lambda i: (-s[i], i))  # best first
        k_max = len(order) // 2 if max_pairs_per_group is None else min(len(order) // 2, max_pairs_per_group)
        k = 0
        while k < k_max and s[order[k]] - s[order[-1 - k]] > margin:
            chosen.append(order[k])
            rejected.append(order[-1 - k])
            k += 1
        empty += k == 0
    dev = scores.device
    as_idx = lambda xs: torch.tensor(xs, dtype=torch.long, device=dev)  # noqa: E731
    return Pairs(as_idx(chosen), as_idx(rejected), len(members), empty)


def sequence_logp(logp: Tensor, mask: Tensor) -> Tensor:
    """log pi(y | x) = sum_t log pi(y_t | x, y_<t) over valid tokens. logp, mask [B, T] -> [B]."""
    check_2d(logp, "logp")
    m = bool_mask(mask, logp, like_name="logp")
    return torch.where(m, logp, torch.zeros((), dtype=logp.dtype, device=logp.device)).sum(dim=1)


@UPDATE_RULES.register("dpo", groups=True, reference=True, why="preference pairs inside a group")
def dpo_loss(
    chosen_logp: Tensor, rejected_logp: Tensor, ref_chosen_logp: Tensor, ref_rejected_logp: Tensor, beta: float = 0.1
) -> tuple[Tensor, dict[str, Tensor]]:
    """DPO loss (Rafailov et al. 2023, eq. 7), mean over pairs:

      h = beta * [ (log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l)) ]
      L = -log sigmoid(h)
    Inputs are summed sequence log-probs [P] (``sequence_logp``); the reference ones are detached.
    At pi = pi_ref, h = 0 and L = log 2; dL/d log pi(y_w) = -beta sigmoid(-h) / P < 0 (raises y_w).
    Stats: dpo/margin (mean h / beta), dpo/accuracy (fraction with h > 0), dpo/chosen_reward and
    dpo/rejected_reward (mean beta * (log pi - log pi_ref), the implicit rewards), dpo/pairs.
    """
    for name, x in (("rejected_logp", rejected_logp), ("ref_chosen_logp", ref_chosen_logp),
                    ("ref_rejected_logp", ref_rejected_logp)):
        if x.shape != chosen_logp.shape:
            raise ValueError(f"{name} has shape {tuple(x.shape)} but chosen_logp has {tuple(chosen_logp.shape)}")
    if chosen_logp.dim() != 1 or chosen_logp.numel() == 0:
        raise ValueError(f"need at least one pair: chosen_logp must be [P] with P >= 1, got {tuple(chosen_logp.shape)}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    check_finite(ref_chosen_logp, "ref_chosen_logp")
    check_finite(ref_rejected_logp, "ref_rejected_logp")
    reward_w = beta * (chosen_logp - ref_chosen_logp.detach())  # [P]
    reward_l = beta * (rejected_logp - ref_rejected_logp.detach())
    h = reward_w - reward_l
    loss = -F.logsigmoid(h).mean()
    with torch.no_grad():
        stats = {
            "dpo/margin": (h / beta).mean(),
            "dpo/accuracy": (h > 0).to(h.dtype).mean(),
            "dpo/chosen_reward": reward_w.mean(),
            "dpo/rejected_reward": reward_l.mean(),
            "dpo/pairs": torch.tensor(float(h.numel()), dtype=h.dtype, device=h.device),
        }
    return loss, stats
