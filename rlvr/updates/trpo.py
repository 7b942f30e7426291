"""The trust-region update rule (Schulman et al. 2015, TRPO; the math in :mod:`rlvr.algorithms.trpo`).

One policy step per batch over the trainable parameters theta:

    maximise  L(theta) = -micro_batch_loss (the unclipped ratio surrogate  agg(r_t A_t), plus any
                         entropy bonus / reference-KL term the preset puts in the loss)
    s.t.      KL(theta) = token-mean over the batch of k3(pi_old || pi_theta)_t <= delta = trpo_max_kl
              (in the line search each token's k3 is bounded by ``algorithm.kl_clamp``, as in
              ``kl_estimate``; the Fisher products use the unbounded k3, whose Hessian at theta_old is F)

g = grad L and Fisher-vector products F v = grad[(grad KL) . v] (the k3 estimate's Hessian at
theta_old is the empirical Fisher sum_t grad log pi_t grad log pi_t^T / n) are accumulated over
micro-batches, so any batch fits in memory. F is estimated on an evenly spaced subsample of the
batch's samples (``trpo_fvp_fraction``; the TRPO paper, appendix C.1, computes F v on 10% of the
data: an unbiased estimate of the same F at a fraction of the cost), and the graph of grad KL is built
once per step and kept across the conjugate-gradient iterations, so each product costs one
backward pass instead of a forward and two backwards. The natural direction F^{-1} g comes from conjugate
gradient and ``trpo_step`` scales it to the trust-region boundary and backtracks until L improves and
KL <= delta, else restores theta exactly. A critic takes the first-order value-loss steps first
(``first_order`` with the policy held fixed). Across processes g, F v, L and KL are averaged, so
every process takes the same decision.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from rlvr.algorithms import aggregate, kl_estimate, objective, trpo_step
from rlvr.algorithms.trpo import flat_grad

from .base import UpdateInputs, combine_stats, register
from .first_order import first_order_update

if TYPE_CHECKING:
    from rlvr.learner import Learner


def _mean_over_processes(learner: Learner, x: torch.Tensor) -> torch.Tensor:
    return learner.collective.mean_(x)


def _k3_kl(x: UpdateInputs, rows: Any, logp: torch.Tensor, num_tokens: Any, clamp: float | None = None) -> torch.Tensor:
    """Token-mean k3 estimate of KL(pi_old || pi) over ``rows``, normalised by ``num_tokens``; each
    token's estimate bounded by ``clamp`` (``kl_estimate``: verl's and OpenRLHF's bounds)."""
    return aggregate(kl_estimate(x.old_logp[rows], logp, "k3", clamp=clamp), x.mask[rows], "token-mean",
                     num_tokens=num_tokens)


def fisher_rows(n: int, fraction: float) -> torch.Tensor:
    """The samples whose tokens estimate F: ceil(fraction n) of n, evenly spaced over 0..n-1 (all for 1.0).

    Evenly spaced rather than random, so the choice uses no random state and covers every part of
    the batch (the samples of one prompt are adjacent, so the subsample spreads over prompts).
    """
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    m = max(1, min(n, math.ceil(fraction * n - 1e-9)))
    return torch.linspace(0, n - 1, m).round().long().unique()


def fisher_product(learner: Learner, x: UpdateInputs, rows: torch.Tensor, params: list[torch.Tensor],
                   damping: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> (F + damping I) v, F = (1/n) sum_t grad log pi_t grad log pi_t^T over the n trained tokens of ``rows``.

    F is the Hessian at theta_old of the token-mean k3 KL(pi_old || pi) (TRPO appendix C.1): with
    d_t = log pi_t - log pi_old,t, the Hessian of e^d - 1 - d at d = 0 is grad d grad d^T. The LM head
    is usually frozen, so grad log pi_t = c_t^T dh_t/dtheta with c_t = d log pi_t / d h_t (h_t the trunk state
    that predicts token t, c_t one backward through the head, no graph kept). The products are
    Pearlmutter's double backprop on the same Hessian without the head:
        q(theta) = (1/2n) sum_t (c_t . (h_t(theta) - h_t(theta_old)))^2,   F v = grad[(grad q) . v]
    (q's Hessian at theta_old is exactly F: its residual is 0 there), so neither pass touches the
    [tokens, vocabulary] logits. Where the head itself trains (tied embeddings with every layer
    trained), q is the k3 KL itself, through the head. The graph of grad q (one forward and one backward per micro-batch of
    ``rows``, math attention kernel: the fused kernels have no second derivative) is built at the
    first product and reused by every later one; those graphs are the memory ``trpo_fvp_fraction``
    bounds. Across processes the products are averaged.
    """
    from rlvr.models import trunk_and_head

    head_trains = any(q.requires_grad for q in trunk_and_head(learner.policy)[1].parameters())
    mask, mb = x.mask, learner.cfg.trainer.micro_batch_size
    n_tokens = mask[rows].sum().clamp(min=1)
    chunks = [rows[i : i + mb] for i in range(0, len(rows), mb)]
    grads: list[torch.Tensor] = []

    def fvp(v: torch.Tensor) -> torch.Tensor:
        hv = torch.zeros_like(v)
        with sdpa_kernel(SDPBackend.MATH):
            for i, r in enumerate(chunks):
                if i == len(grads):
                    if head_trains:  # the k3 KL itself, through the head
                        logp = learner.logprobs(learner.policy, x.batch, r)
                        q = _k3_kl(x, r, logp, n_tokens)
                    else:
                        logp, h = learner.logprobs(learner.policy, x.batch, r, hidden=True)
                        (c,) = torch.autograd.grad(logp.sum(), h, retain_graph=True)  # [n, R, H], head only
                        d = ((h - h.detach()).float() * c.float()).sum(-1)  # 0, with gradient grad log pi_t
                        q = 0.5 * aggregate(d.square(), mask[r], "token-mean", num_tokens=n_tokens)
                    grads.append(flat_grad(q, params, create_graph=True))
                gk = grads[i]
                hv += flat_grad(gk @ v.to(gk.dtype), params, retain_graph=True).to(v.dtype)
        return _mean_over_processes(learner, hv) + damping * v

    return fvp


@register("trpo", fsdp=False, fsdp_why="its Fisher-vector products take autograd.grad, which FSDP does not reduce")
def trpo_update(learner: Learner, x: UpdateInputs) -> dict[str, float]:
    """Critic steps (if any), then one natural-gradient policy step with line search.

    Metrics: the gradient pass's policy stats (entropy, clip table at ratio 1, loss/policy), the
    ``trpo/*`` stats of :class:`~rlvr.algorithms.trpo.TRPOStats` and grad_norm = |g|.
    """
    p, t = learner.preset, learner.cfg.trainer
    out: dict[str, float] = {}
    bad_before = learner.bad_steps  # a critic step that is taken does not end a run of skipped policy steps
    if learner.critic is not None:
        out.update(first_order_update(learner, dataclasses.replace(x, policy=False)))
    if not x.policy:
        return out
    mask, N = x.mask, x.mask.shape[0]
    totals = {"num_tokens": mask.sum().clamp(min=1), "num_seqs": (mask.sum(1) > 0).sum().clamp(min=1),
              "norm_len": learner.cfg.rollout.max_new_tokens}
    chunks = [slice(i, min(i + t.micro_batch_size, N)) for i in range(0, N, t.micro_batch_size)]
    params = [q for q in learner.policy.parameters() if q.requires_grad]

    def loss_of(rows: slice, logp: torch.Tensor, ent: torch.Tensor | None = None):
        return objective.micro_batch_loss(
            p, mask[rows], logp=logp, old_logp=x.old_logp[rows], advantages=x.adv[rows], entropy=ent,
            ref_logp=None if x.ref_logp is None else x.ref_logp[rows], kl_coef=learner.kl_ctl.value,
            kl_clamp=learner.cfg.algorithm.kl_clamp, is_weights=None if x.is_weights is None else x.is_weights[rows],
            **totals)


    # g = dL/dtheta, accumulated over micro-batches (each loss is scaled by the batch totals)
    g = None
    stats: dict[str, list[float]] = {}
    for rows in chunks:
        logp, ent = learner.logprobs(learner.policy, x.batch, rows, entropy=True)
        loss, st = loss_of(rows, logp, ent)
        gi = flat_grad(-loss, params).float()
        g = gi if g is None else g + gi
        trained = bool(mask[rows].any())  # a chunk without trained tokens has no means to add
        for k, v in st.items():
            if trained or k.startswith("loss/"):
                stats.setdefault(k, []).append(v)
    g = _mean_over_processes(learner, g)

    evaluated: dict[str, Any] = {}

    @torch.no_grad()
    def surrogate_and_kl() -> torch.Tensor:
        """[L, KL] at the current weights: one forward per micro-batch serves both closures (the line
        search asks for both at each trial point); recomputed only when a weight has changed since."""
        key = tuple(q._version for q in params)
        if evaluated.get("key") != key:
            total = torch.zeros(2, device=g.device)
            for rows in chunks:
                logp = learner.logprobs(learner.policy, x.batch, rows)
                kl_rows = _k3_kl(x, rows, logp, totals["num_tokens"], clamp=learner.cfg.algorithm.kl_clamp)
                total += torch.stack([-loss_of(rows, logp)[0].float(), kl_rows.float()])
            evaluated.update(key=key, value=_mean_over_processes(learner, total))
        return evaluated["value"]

    def surrogate() -> torch.Tensor:
        return surrogate_and_kl()[0]

    def kl() -> torch.Tensor:
        return surrogate_and_kl()[1]

    # the Fisher subsample is drawn from the samples that have trained tokens (g != 0 implies some)
    trained = (mask.sum(1) > 0).nonzero().squeeze(1)
    rows = trained[fisher_rows(len(trained), p.trpo_fvp_fraction)]
    # passed without a reference kept here: trpo_step frees the products' graphs before its line search
    res = trpo_step(params, surrogate, kl, max_kl=p.trpo_max_kl, cg_iters=p.trpo_cg_iters, damping=p.trpo_damping,
                    backtrack_ratio=p.trpo_backtrack_ratio, max_backtracks=p.trpo_max_backtracks,
                    fvp=fisher_product(learner, x, rows, params, p.trpo_damping), grad=g)
    out.update(combine_stats(stats, summed=True))
    out.update(res.to_dict())
    out["grad_norm"] = res.grad_norm
    if not math.isfinite(res.grad_norm):  # trpo_step took no step; count it like a skipped first-order step
        learner.bad_steps = max(learner.bad_steps, bad_before)
        learner.skip_step({}, "nonfinite_grad", "gradient norm")
        out["nonfinite_grad"] = 1.0
    else:
        learner.bad_steps = 0
    return out
