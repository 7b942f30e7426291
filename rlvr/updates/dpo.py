"""The pairwise update rule: DPO on verifier pairs (Rafailov et al. 2023; the math in
:mod:`rlvr.algorithms.dpo`).

Online, each group (the n completions of one prompt) gives pairs (a higher- vs a lower-scored
completion, ``verifier_pairs``); offline (``data.pairs``) every group is one (chosen, rejected) pair
from the file, scored 1 and 0. For each pair, with summed sequence log-probs log pi(y) and the frozen
reference's log pi_ref(y) (taken once per step, before any update):

    L = -log sigmoid(beta [(log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))])

averaged over a mini-batch of pairs (micro-batches of pairs accumulate exactly), then the trainer's
optimizer step. Groups without a pair (all scores equal) are reported as ``dpo/groups_without_pair``
(a fraction of the step's groups); a pair with a side that has no trained token (a completion
truncated under ``algorithm.overlong: mask``) is dropped and counted as ``dpo/dropped_pairs``; a
step without any pair leaves the policy as it is.

With several processes each forms the pairs of its own groups; they agree on the number of
mini-batches (the largest pair count decides) and the loss is the mean over the union of their
pairs, so a process with fewer or no pairs never leaves the others waiting in a collective.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from rlvr.algorithms import Pairs, dpo_loss, sequence_logp, verifier_pairs

from .base import UpdateInputs, register

if TYPE_CHECKING:
    from rlvr.learner import Learner


def _drop_empty_sides(pairs: Pairs, mask: torch.Tensor) -> tuple[Pairs, int]:
    """The pairs whose chosen and rejected completions both have a trained token, and how many were
    dropped. A side with none (a truncated completion under ``algorithm.overlong: mask``, a padding
    row) has log pi(y) = 0 = log pi_ref(y) for good, so its pair would train the other side alone."""
    has = mask.sum(1) > 0
    ok = has[pairs.chosen] & has[pairs.rejected]
    return pairs._replace(chosen=pairs.chosen[ok], rejected=pairs.rejected[ok]), int((~ok).sum())


@register("dpo", fsdp=False, fsdp_why="each process has its own number of pairs, so of backward passes")
def dpo_update(learner: Learner, x: UpdateInputs) -> dict[str, float]:
    """``preset.epochs`` passes over the step's pairs in shuffled mini-batches of pairs
    (``trainer.mini_batch_size`` // 2 pairs, micro-batches of ``trainer.micro_batch_size`` // 2 pairs,
    i.e. about as many sequences as the first-order rule). Metrics: loss/policy (the DPO loss),
    dpo/{margin,accuracy,chosen_reward,rejected_reward} (``dpo_loss``), dpo/pairs (the pairs trained
    on), dpo/dropped_pairs (pairs with a side that has no trained token, see ``_drop_empty_sides``),
    entropy, grad_norm."""
    p, t = learner.preset, learner.cfg.trainer
    pairs = verifier_pairs(x.scores, x.batch["group_ids"], p.dpo_max_pairs_per_group)
    pairs, dropped = _drop_empty_sides(pairs, x.mask)
    P = int(pairs.chosen.numel())
    out = {"dpo/pairs": float(P), "dpo/dropped_pairs": float(dropped),
           "dpo/groups_without_pair": pairs.groups_without_pair / max(1, pairs.groups)}
    # every process runs the same mini-batches (each one ends in collectives): as many as the process
    # with the most pairs needs; one with fewer pairs takes part with an empty share
    counts = [P] if learner.world == 1 else [int(c) for c in learner.collective.gather_floats([float(P)])[:, 0].tolist()]
    P_max = max(counts)
    if P_max == 0 or not x.policy:
        return out
    mask = x.mask
    ref_w = sequence_logp(x.ref_logp[pairs.chosen], mask[pairs.chosen])  # [P]
    ref_l = sequence_logp(x.ref_logp[pairs.rejected], mask[pairs.rejected])
    mini = max(1, (t.mini_batch_size or 2 * P_max) // 2)
    micro = max(1, t.micro_batch_size // 2)
    gen = torch.Generator().manual_seed(t.seed * 104729 + x.step)
    stats: dict[str, list[float]] = {}
    for _ in range(p.epochs):
        order = torch.randperm(P, generator=gen).to(mask.device)
        for s in range(0, P_max, mini):
            mb = order[s:s + mini]
            # pairs in this mini-batch over all processes; each process's loss is world x its share of
            # their mean, so the averaged all-reduce gives the mean over the union (as one process would)
            n_global = sum(min(mini, max(0, c - s)) for c in counts)
            finite = True
            mb_stats: dict[str, list[float]] = {}
            for u in range(0, len(mb), micro):
                idx = mb[u:u + micro]
                k = len(idx)
                rows = torch.cat([pairs.chosen[idx], pairs.rejected[idx]])  # one pass for both sides
                logp, ent = learner.logprobs(learner.policy, x.batch, rows, entropy=True)
                seq = sequence_logp(logp, mask[rows])
                loss, st = dpo_loss(seq[:k], seq[k:], ref_w[idx], ref_l[idx], beta=p.dpo_beta)
                loss = loss * (k * learner.world / n_global)  # micro-batch means -> the mini-batch mean
                if not torch.isfinite(loss):
                    finite = False
                    break
                loss.backward()
                st = {name: float(v) for name, v in st.items() if name != "dpo/pairs"}
                st["loss/policy"] = float(loss.detach())
                st["entropy"] = float((ent.detach() * mask[rows]).sum() / mask[rows].sum().clamp(min=1))
                for name, v in st.items():
                    mb_stats.setdefault(name, []).append(v)
            for name, v in mb_stats.items():
                stats.setdefault(name, []).append(sum(v) if name.startswith("loss/") else sum(v) / len(v))
            learner.apply_gradients(finite, stats)
    out.update({name: sum(v) / len(v) for name, v in stats.items() if v})
    return out
