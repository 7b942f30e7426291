"""The trust-region update rule (Schulman et al. 2015, TRPO; the math in :mod:`rlvr.algorithms.trpo`).

One policy step per batch over the trainable parameters theta:

    maximise  L(theta) = -micro_batch_loss (the unclipped ratio surrogate  agg(r_t A_t), plus any
                         entropy bonus / reference-KL term the preset puts in the loss)
    s.t.      KL(theta) = token-mean over the batch of k3(pi_old || pi_theta)_t <= delta = trpo_max_kl

g = grad L and Fisher-vector products F v = grad[(grad KL) . v] (the k3 estimate's Hessian at
theta_old is the empirical Fisher sum_t grad log pi_t grad log pi_t^T / n) are accumulated over
micro-batches, so any batch fits in memory; the natural direction F^{-1} g comes from conjugate
gradient and ``trpo_step`` scales it to the trust-region boundary and backtracks until L improves and
KL <= delta, else restores theta exactly. A critic takes the first-order value-loss steps first
(``first_order`` with the policy held fixed). Across processes g, F v, L and KL are averaged, so
every process takes the same decision.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from rlvr.algorithms import aggregate, kl_estimate, objective, trpo_step
from rlvr.algorithms.trpo import flat_grad

from .base import UpdateInputs, register
from .first_order import first_order_update


def _mean_over_processes(tr: Any, x: torch.Tensor) -> torch.Tensor:
    if tr.world > 1:
        torch.distributed.all_reduce(x)
        x /= tr.world
    return x


@register("trpo")
def trpo_update(tr: Any, x: UpdateInputs) -> dict[str, float]:
    """Critic steps (if any), then one natural-gradient policy step with line search.

    Metrics: the gradient pass's policy stats (entropy, clip table at ratio 1, loss/policy), the
    ``trpo/*`` stats of :class:`~rlvr.algorithms.trpo.TRPOStats` and grad_norm = |g|.
    """
    p, t = tr.preset, tr.cfg.trainer
    out: dict[str, float] = {}
    if tr.critic is not None:
        out.update(first_order_update(tr, dataclasses.replace(x, policy=False)))
    if not x.policy:
        return out
    mask, N = x.mask, x.mask.shape[0]
    totals = {"num_tokens": mask.sum().clamp(min=1), "num_seqs": (mask.sum(1) > 0).sum().clamp(min=1),
              "norm_len": tr.cfg.rollout.max_new_tokens}
    chunks = [slice(i, min(i + t.micro_batch_size, N)) for i in range(0, N, t.micro_batch_size)]
    params = [q for q in tr.policy.parameters() if q.requires_grad]

    def loss_of(rows: slice, logp: torch.Tensor, ent: torch.Tensor | None = None):
        return objective.micro_batch_loss(
            p, mask[rows], logp=logp, old_logp=x.old_logp[rows], advantages=x.adv[rows], entropy=ent,
            ref_logp=None if x.ref_logp is None else x.ref_logp[rows], kl_coef=tr.kl_ctl.value,
            kl_clamp=tr.cfg.algorithm.kl_clamp, is_weights=None if x.is_weights is None else x.is_weights[rows],
            **totals)

    def kl_of(rows: slice, logp: torch.Tensor) -> torch.Tensor:
        return aggregate(kl_estimate(x.old_logp[rows], logp, "k3"), mask[rows], "token-mean",
                         num_tokens=totals["num_tokens"])

    # g = dL/dtheta, accumulated over micro-batches (each loss is scaled by the batch totals)
    g = None
    stats: dict[str, list[float]] = {}
    for rows in chunks:
        logp, ent = tr._logprobs(tr.policy, x.batch, rows, entropy=True)
        loss, st = loss_of(rows, logp, ent)
        gi = flat_grad(-loss, params).float()
        g = gi if g is None else g + gi
        for k, v in st.items():
            stats.setdefault(k, []).append(v)
    g = _mean_over_processes(tr, g)

    @torch.no_grad()
    def surrogate() -> torch.Tensor:
        total = sum(-loss_of(rows, tr._logprobs(tr.policy, x.batch, rows))[0].float() for rows in chunks)
        return _mean_over_processes(tr, total.reshape(1))[0]

    @torch.no_grad()
    def kl() -> torch.Tensor:
        total = sum(kl_of(rows, tr._logprobs(tr.policy, x.batch, rows)).float() for rows in chunks)
        return _mean_over_processes(tr, total.reshape(1))[0]

    def fvp(v: torch.Tensor) -> torch.Tensor:
        """(F + damping I) v, one double-backward pass per micro-batch (math attention kernel:
        the fused kernels have no second derivative)."""
        hv = torch.zeros_like(v)
        with sdpa_kernel(SDPBackend.MATH):
            for rows in chunks:
                gk = flat_grad(kl_of(rows, tr._logprobs(tr.policy, x.batch, rows)), params, create_graph=True)
                hv += flat_grad(gk @ v.to(gk.dtype), params).to(v.dtype)
        return _mean_over_processes(tr, hv) + p.trpo_damping * v

    res = trpo_step(params, surrogate, kl, max_kl=p.trpo_max_kl, cg_iters=p.trpo_cg_iters, damping=p.trpo_damping,
                    backtrack_ratio=p.trpo_backtrack_ratio, max_backtracks=p.trpo_max_backtracks, fvp=fvp, grad=g)
    for k, v in stats.items():
        out[k] = sum(v) if k.startswith("loss/") else sum(v) / len(v)
    out.update(res.to_dict())
    out["grad_norm"] = res.grad_norm
    return out
