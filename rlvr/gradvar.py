"""The gradient-variance diagnostic (``trainer.gradvar_every``): how noisy the policy gradient of
one batch is under each baseline, measured on the learner's policy without changing it."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from rlvr import algorithms as A

if TYPE_CHECKING:
    from rlvr.learner import Learner


def gradient_variance(learner: Learner, batch: dict, scores: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Relative variance of the policy-gradient estimate on this batch under each baseline.

    The batch's groups are split into K disjoint parts; for each baseline b the vanilla PG
    gradient g_k = grad of -(1/|T_k|) sum_t A^b_t log pi(a_t|s_t) is computed on part k, and
    ``A.gradient_variance`` reports tr Var[g] / (K ||mean g||^2): the noise-to-signal ratio of
    the full-batch estimate. Baselines: none (A = R), group (A = R - group mean), critic (GAE
    with the current critic; presets with a critic only).
    """
    cfg, preset = learner.cfg, learner.preset
    N = mask.shape[0]
    gid = batch["group_ids"]
    uniq = torch.unique(gid)
    K = min(cfg.trainer.gradvar_splits, len(uniq))
    if K < 2 or mask.sum() == 0:
        return {}
    s = scores.to(mask.device)
    baselines = {"none": s[:, None] * mask,
                 "group": A.compute_group_advantages(s, gid, "dr_grpo")[:, None] * mask}
    if learner.critic is not None:
        values = learner.no_grad_pass(lambda r: learner.values(batch, r), N) * mask
        rewards = A.outcome_rewards(s, batch["response_mask"]) * mask
        baselines["critic"] = A.compute_gae(rewards, values, mask, preset.gamma, preset.lam)[0]
    params = [q for q in learner.policy.parameters() if q.requires_grad]
    parts = torch.chunk(uniq, K)
    mb = cfg.trainer.micro_batch_size
    out = {}
    for name, adv in baselines.items():
        grads = []
        for part in parts:
            rows = torch.isin(gid, part).nonzero().squeeze(1)
            for q in params:
                q.grad = None
            denom = mask[rows].sum().clamp(min=1)
            for u in range(0, len(rows), mb):
                r = rows[u:u + mb]
                logp = learner.logprobs(learner.policy, batch, r)
                (-(adv[r] * logp * mask[r]).sum() / denom).backward()
            grads.append(torch.cat([(q.grad if q.grad is not None else torch.zeros_like(q)).flatten()
                                    for q in params]).float().cpu())
        g = A.gradient_variance(grads)
        out[f"gradvar/{name}"] = float(g["relative"])
    for q in params:
        q.grad = None
    return out
