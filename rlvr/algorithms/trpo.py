"""TRPO: a natural-gradient step inside a KL trust region (Schulman et al. 2015, "Trust Region Policy
Optimization", sec. 6 and appendix C).

    maximise_theta  L(theta) = E[ pi_theta(a|s) / pi_old(a|s) * A ]   s.t.  KL(pi_old || pi_theta) <= delta

Linearise L (gradient g) and take the quadratic model of the KL (its Hessian at theta_old is the
Fisher matrix F); the solution is the direction x = F^{-1} g (conjugate gradient on Fisher-vector
products, never forming F) scaled to the trust-region boundary, beta = sqrt(2 delta / x^T F x), then a
backtracking line search on the true L and KL. Generic over a list of parameter tensors: the caller
supplies closures, so the same step works for a tiny test net and for the trainable blocks of an LM.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from .registry import UPDATE_RULES


def flat_grad(
    y: Tensor, params: Sequence[Tensor], create_graph: bool = False, retain_graph: bool | None = None
) -> Tensor:
    """d y / d params, flattened and concatenated ([D], D = total parameter count; unused params give 0)."""
    grads = torch.autograd.grad(y, params, create_graph=create_graph, retain_graph=retain_graph, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)])


def conjugate_gradient(Avp: Callable[[Tensor], Tensor], b: Tensor, iters: int = 10, tol: float = 1e-10) -> Tensor:
    """Solve A x = b for symmetric positive-definite A given only v -> A v (Hestenes & Stiefel 1952).

    r_0 = p_0 = b, x_0 = 0;  alpha_k = r_k.r_k / p_k.A p_k;  x += alpha p;  r -= alpha A p;
    p_{k+1} = r_{k+1} + (r_{k+1}.r_{k+1} / r_k.r_k) p_k. Exact after D iterations in exact arithmetic;
    stops early when r.r < tol. b [D] -> x [D].
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = r @ r
    for _ in range(iters):
        if float(rr) < tol:
            break
        Ap = Avp(p)
        alpha = rr / (p @ Ap)
        x += alpha * p
        r -= alpha * Ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def fisher_vector_product(
    kl_fn: Callable[[], Tensor], params: Sequence[Tensor], damping: float = 0.1
) -> Callable[[Tensor], Tensor]:
    """v -> (F + damping I) v with F = Hessian of ``kl_fn()`` = KL(pi_old || pi_theta) at the current theta.

    Double backprop (Pearlmutter 1994): F v = d/dtheta [ (d KL/d theta) . v ]. At theta = theta_old the
    KL's Hessian is the Fisher information matrix (TRPO appendix C.1). The gradient graph is built once
    and reused by every product. v [D] -> [D] in v's dtype; the damping keeps CG well-posed when F is singular.
    """
    cache: dict[str, Tensor] = {}

    def fvp(v: Tensor) -> Tensor:
        if "g" not in cache:
            cache["g"] = flat_grad(kl_fn(), params, create_graph=True)
        g = cache["g"]
        hv = flat_grad(g @ v.to(g.dtype), params, retain_graph=True)
        return hv.to(v.dtype) + damping * v

    return fvp


def natural_step(
    g: Tensor, fvp: Callable[[Tensor], Tensor], max_kl: float, cg_iters: int = 10
) -> tuple[Tensor, Tensor]:
    """The max-KL natural-gradient step s = beta x, x = F^{-1} g (by CG), beta = sqrt(2 delta / x^T F x).

    Its quadratic-model KL is 0.5 s^T F s = delta (TRPO appendix C). g [D] -> (s [D], x^T F x); s = 0 when
    x^T F x is not positive and finite.
    """
    x = conjugate_gradient(fvp, g, cg_iters)
    xFx = x @ fvp(x)
    if not (torch.isfinite(xFx) and xFx > 0):
        return torch.zeros_like(g), xFx
    return torch.sqrt(2 * max_kl / xFx) * x, xFx


@dataclass
class TRPOStats:
    accepted: bool  # a step was taken (else the parameters are unchanged)
    step_frac: float  # fraction of the max-KL step taken (backtrack_ratio ** k; 0 if rejected)
    kl: float  # KL(pi_old || pi) after the step (at the last tried step if rejected)
    improvement: float  # L(theta_new) - L(theta_old) (of the last tried step if rejected)
    expected_improvement: float  # g . s for the full step (linear model)
    backtracks: int  # shrinks before acceptance (or tried, if rejected)
    grad_norm: float  # |g|

    def to_dict(self) -> dict[str, float]:
        return {f"trpo/{k}": float(v) for k, v in asdict(self).items()}


def _set_flat(params: Sequence[Tensor], flat: Tensor) -> None:
    offset = 0
    with torch.no_grad():
        for p in params:
            n = p.numel()
            p.copy_(flat[offset : offset + n].view_as(p).to(p.dtype))
            offset += n


@UPDATE_RULES.register("trpo")
def trpo_step(
    params: Sequence[Tensor],
    surrogate_fn: Callable[[], Tensor],
    kl_fn: Callable[[], Tensor],
    *,
    max_kl: float = 0.01,
    cg_iters: int = 10,
    damping: float = 0.1,
    backtrack_ratio: float = 0.5,
    max_backtracks: int = 10,
    fvp: Callable[[Tensor], Tensor] | None = None,
    grad: Tensor | None = None,
) -> TRPOStats:
    """One TRPO update of ``params`` in place (Schulman et al. 2015, eq. 14 and appendix C).

    ``surrogate_fn()`` -> scalar L(theta) to MAXIMISE (e.g. mean r_t A_t = minus an unclipped policy loss);
    ``kl_fn()`` -> scalar mean KL(pi_old || pi_theta), 0 at theta_old (e.g. mean k3 over rollout tokens).
    Both are re-evaluated (under no_grad) at each trial point of the line search. ``fvp`` overrides the
    Fisher-vector product (default: ``fisher_vector_product(kl_fn, params, damping)``) and ``grad`` the
    flat gradient g = dL/dtheta [D] (default: backprop of ``surrogate_fn()``); with both given, the
    closures are only evaluated under no_grad, so a caller can accumulate g and F v over micro-batches.
    ``fvp`` is dropped before the line search (pass it without keeping a reference, and whatever graph
    it holds is freed then).
    Line search: try theta_old + backtrack_ratio^k s for k = 0..max_backtracks; accept the first with
    L(new) > L(old) and KL <= max_kl; if none qualifies the parameters are restored exactly.
    """
    params = list(params)
    if not (max_kl > 0 and 0 < backtrack_ratio < 1 and max_backtracks >= 0 and cg_iters >= 1 and damping >= 0):
        raise ValueError("need max_kl > 0, 0 < backtrack_ratio < 1, max_backtracks >= 0, cg_iters >= 1, damping >= 0")
    if grad is None:
        surr = surrogate_fn()
        g, surr_old = flat_grad(surr, params), float(surr.detach())
    else:
        with torch.no_grad():
            g, surr_old = grad.detach().reshape(-1), float(surrogate_fn())
    g = g.to(torch.promote_types(g.dtype, torch.float32))  # CG in at least float32
    grad_norm = float(g.norm())
    if not math.isfinite(grad_norm) or grad_norm == 0.0:
        return TRPOStats(False, 0.0, 0.0, 0.0, 0.0, 0, grad_norm)
    step, _ = natural_step(g, fvp or fisher_vector_product(kl_fn, params, damping), max_kl, cg_iters)
    fvp = None  # the line search needs no products: the graphs they keep are freed before it runs
    expected = float(g @ step)
    old = torch.cat([p.detach().reshape(-1) for p in params]).clone()  # exact copy, restored on rejection
    kl = improvement = 0.0
    for k in range(max_backtracks + 1):
        frac = backtrack_ratio**k
        _set_flat(params, old.to(step.dtype) + frac * step)
        with torch.no_grad():
            improvement = float(surrogate_fn()) - surr_old
            kl = float(kl_fn())
        if math.isfinite(improvement) and math.isfinite(kl) and improvement > 0 and kl <= max_kl:
            return TRPOStats(True, frac, kl, improvement, expected, k, grad_norm)
    _set_flat(params, old)
    return TRPOStats(False, 0.0, kl, improvement, expected, max_backtracks, grad_norm)
