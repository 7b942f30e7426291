"""The first-order update rule: K epochs x mini-batches x micro-batches of the preset's loss.

Each micro-batch loss comes from :func:`rlvr.algorithms.objective.micro_batch_loss`, aggregated with
its mini-batch's token/sequence totals (``num_tokens`` / ``num_seqs``), so the micro-batch gradients
sum to exactly the mini-batch gradient; after each mini-batch the trainer all-reduces, clips and
steps (``learner.apply_gradients``). A non-finite micro-batch loss skips that optimizer step
(with FSDP2 the remaining micro-batches still run their backward passes: those are collectives).
With PPO's adaptive KL penalty (``kl_old_target``) the KL(pi_old || pi) after the epochs is
measured for its controller (``kl/old_after``). ``inputs.policy`` False (value warm-up): only the
critic learns; a value head on the policy's trunk gets the trunk's features without their graph,
and the policy's optimizer does not step.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from rlvr.algorithms import kl_estimate, objective
from rlvr.rollout.consistency import logprob_mismatch

from .base import UpdateInputs, combine_stats, register

if TYPE_CHECKING:
    from rlvr.learner import Learner


@torch.no_grad()
def kl_after_update(learner: Learner, x: UpdateInputs) -> float:
    """d = token-mean over the trained tokens of every process of k3(pi_old || pi_new), pi_new the
    policy after all epochs: what PPO's adaptive KL penalty compares with its target (Schulman et al.
    2017, sec. 4, eq. 8: "compute d = E_t[KL[pi_old(.|s_t), pi(.|s_t)]]" after the update). Each
    token's k3 is bounded by ``algorithm.kl_clamp`` (``kl_estimate``). One extra forward pass."""
    N = x.mask.shape[0]
    logp = learner.no_grad_pass(lambda rows: learner.logprobs(learner.policy, x.batch, rows), N)
    kl = kl_estimate(x.old_logp, logp, "k3", clamp=learner.cfg.algorithm.kl_clamp)
    return learner.global_mean(kl, x.mask)


@register("first_order")
def first_order_update(learner: Learner, x: UpdateInputs) -> dict[str, float]:
    """Run the preset's epochs over the batch in shuffled mini-batches; return the averaged stats.

    Micro-batch stats named ``loss/*`` are summed within a mini-batch (they are already scaled by the
    mini-batch totals), the others averaged; then every stat is averaged over mini-batches.
    """
    p, t = learner.preset, learner.cfg.trainer
    mask, policy = x.mask, x.policy
    N = mask.shape[0]
    mini = t.mini_batch_size or N
    norm_len = learner.cfg.rollout.max_new_tokens  # Dr. GRPO's constant normaliser: the budget
    value_weight = learner.cfg.algorithm.value_coef if learner.shared_critic else 1.0
    stats: dict[str, list[float]] = {}
    gen = torch.Generator().manual_seed(t.seed * 104729 + x.step)
    first_pass: list[tuple[torch.Tensor, torch.Tensor]] = []  # (rows, logp) before any optimizer step
    for epoch in range(p.epochs):
        order = torch.randperm(N, generator=gen).to(mask.device)
        for s in range(0, N, mini):
            mb_rows = order[s:s + mini]
            mb_mask = mask[mb_rows]
            totals = learner.minibatch_totals(mb_mask, norm_len)  # global counts (several processes)
            finite = True
            mb_stats: dict[str, list[float]] = {}
            for u in range(0, len(mb_rows), t.micro_batch_size):
                rows = mb_rows[u:u + t.micro_batch_size]
                logp = ent = hid = None
                if policy or learner.shared_critic:
                    if learner.shared_critic:
                        # value warm-up: the trunk's features without a graph, so only the value
                        # head learns (the policy is not moved through the shared trunk)
                        with torch.set_grad_enabled(policy):
                            logp, ent, hid = learner.logprobs(learner.policy, x.batch, rows, entropy=True, hidden=True)
                    else:
                        logp, ent = learner.logprobs(learner.policy, x.batch, rows, entropy=True)
                    if epoch == 0 and s == 0:
                        first_pass.append((rows, logp.detach()))
                v_new = None
                if learner.critic is not None:
                    # separate critic: its own parameters and optimizer; shared trunk: one backward
                    # of policy loss + value_coef * value loss through the common trunk
                    v_new = learner.critic(hid) if learner.shared_critic else learner.values(x.batch, rows)
                loss, st = objective.micro_batch_loss(
                    p, mask[rows], logp=logp if policy else None, old_logp=x.old_logp[rows],
                    advantages=x.adv[rows], entropy=ent, ref_logp=None if x.ref_logp is None else x.ref_logp[rows],
                    kl_coef=learner.kl_ctl.value, kl_old_coef=learner.kl_old_ctl.value if p.kl_old_coef else 0.0,
                    kl_clamp=learner.cfg.algorithm.kl_clamp, is_weights=None if x.is_weights is None else x.is_weights[rows],
                    values=v_new, old_values=None if x.values is None else x.values[rows],
                    returns=None if x.returns is None else x.returns[rows], value_clip=learner.cfg.algorithm.value_clip,
                    value_weight=value_weight, **totals)
                if not torch.isfinite(loss):
                    finite = False
                    if not learner.fsdp:
                        break
                    # FSDP2: every backward pass reduce-scatters (a collective), so each process runs
                    # all of them; the agreed skip in _apply_gradients discards these gradients
                if loss.requires_grad:
                    loss.backward()
                if finite:
                    # a micro-batch without trained tokens adds its (zero) loss pieces, but no means
                    # (its clip fractions, ratio mean, ... are 0 by convention, not measurements)
                    trained = bool(mask[rows].any())
                    for k, v in st.items():
                        if trained or k.startswith("loss/"):
                            mb_stats.setdefault(k, []).append(v)
            # loss pieces are already scaled by mini-batch totals: sum them; average the rest
            for k, v in combine_stats(mb_stats, summed=True).items():
                stats.setdefault(k, []).append(v)
            learner.apply_gradients(finite, stats, policy=policy)
    out = combine_stats(stats, summed=False)
    if policy and p.kl_old_target is not None:
        out["kl/old_after"] = kl_after_update(learner, x)
    if t.reuse_sampler_logprobs and first_pass:
        # pi_old was taken from the sampler: measure it against the trainer's own first pass
        rows = torch.cat([r for r, _ in first_pass])
        lp = torch.cat([lp for _, lp in first_pass])
        out.update(logprob_mismatch(x.batch["sampler_logprobs"][rows], lp, x.batch["response_mask"][rows]))
    return out
