"""GSPO and CISPO losses, the policy-loss registry, and sequence-level importance weights."""
import math

import pytest
import torch

from rlvr.algorithms import (
    POLICY_LOSSES,
    cispo_loss,
    first_order_loss,
    gspo_loss,
    policy_loss,
    sequence_is_weights,
    sequence_log_ratio,
    truncated_is_weights,
)

MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)


def batch(seed=0, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    old = torch.randn(3, 4, generator=g, dtype=torch.float64) - 1.0
    logp = (old + scale * torch.randn(3, 4, generator=g, dtype=torch.float64)).requires_grad_(True)
    return logp, old


# ---------------------------------------------------------------- GSPO


def test_gspo_ratio_is_exp_of_mean_token_log_ratio():
    logp, old = batch()
    junk = old.clone()
    junk[~MASK] = float("nan")  # padding never leaks
    log_s = sequence_log_ratio(logp, junk, MASK)
    for b in range(3):
        n = int(MASK[b].sum())
        expected = (logp[b, :n] - old[b, :n]).mean()
        torch.testing.assert_close(log_s[b], expected)
    _, stats = gspo_loss(logp, old, torch.ones(3, dtype=torch.float64), MASK, None, None)
    torch.testing.assert_close(stats["ratio/mean"], log_s.detach().exp().mean())


def test_gspo_gradient_equals_sequence_objective():
    """GSPO-token with one advantage per row and seq-mean-token-mean == -(1/B) sum_b min(s_b A_b, clip(s_b) A_b)."""
    logp, old = batch(scale=0.01)
    adv = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    lo, hi = 3e-3, 4e-3
    loss, _ = gspo_loss(logp, old, adv, MASK, lo, hi, agg="seq-mean-token-mean")
    (grad,) = torch.autograd.grad(loss, logp)
    logp2 = logp.detach().clone().requires_grad_(True)
    s = sequence_log_ratio(logp2, old, MASK).exp()
    ref = -torch.minimum(s * adv, s.clamp(1 - lo, 1 + hi) * adv).mean()
    (grad_ref,) = torch.autograd.grad(ref, logp2)
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(grad, grad_ref)
    assert (grad[~MASK] == 0).all()


@pytest.mark.parametrize(
    "log_s,adv,clipped",
    [(0.1, 1.0, True), (0.1, -1.0, False), (-0.1, 1.0, False), (-0.1, -1.0, True), (0.0, 1.0, False)],
)
def test_gspo_clip_cells_at_sequence_level(log_s, adv, clipped):
    """Like PPO's four cells, decided on s: zero gradient only for (A>0, s>1+eps) and (A<0, s<1-eps)."""
    old = torch.full((1, 3), -1.0, dtype=torch.float64)
    shifts = torch.tensor([[log_s - 0.2, log_s, log_s + 0.2]], dtype=torch.float64)  # mean = log_s
    logp = (old + shifts).requires_grad_(True)
    mask = torch.ones(1, 3, dtype=torch.bool)
    loss, stats = gspo_loss(logp, old, torch.tensor([adv], dtype=torch.float64), mask, 0.05, 0.05)
    (grad,) = torch.autograd.grad(loss, logp)
    s = math.exp(log_s)
    if clipped:
        assert (grad == 0).all() and float(stats["clip/frac"]) == 1.0
    else:  # unclipped: d/dlogp_t of -s A / 1 row = -s A / |y| on every token
        torch.testing.assert_close(grad, torch.full_like(grad, -s * adv / 3))
        assert float(stats["clip/frac"]) == 0.0


def test_gspo_at_ratio_one_is_sequence_mean_policy_gradient():
    old = torch.randn(3, 4, dtype=torch.float64)
    logp = old.clone().requires_grad_(True)
    adv = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    loss, _ = gspo_loss(logp, old, adv, MASK)
    (grad,) = torch.autograd.grad(loss, logp)
    n = MASK.sum(1, keepdim=True)
    torch.testing.assert_close(grad, torch.where(MASK, -adv[:, None] / n / 3, torch.zeros_like(grad)))


# ---------------------------------------------------------------- CISPO


def test_cispo_clipped_tokens_keep_a_gradient():
    """Ratios 1.5 (above 1+0.28) and 0.5 (below 1-0.2): PPO zeroes the gradient in its clipped cells,
    CISPO gives -w A / N with w the truncated weight, on every token."""
    r = torch.tensor([[1.5, 0.5, 1.1, 1.5]], dtype=torch.float64)
    adv = torch.tensor([[1.0, -1.0, 2.0, -1.0]], dtype=torch.float64)
    old = torch.full_like(r, -1.0)
    logp = (old + r.log()).requires_grad_(True)
    mask = torch.ones_like(r, dtype=torch.bool)
    loss, stats = cispo_loss(logp, old, adv, mask, clip_low=0.2, clip_high=0.28)
    (grad,) = torch.autograd.grad(loss, logp)
    w = torch.tensor([[1.28, 0.8, 1.1, 1.28]], dtype=torch.float64)
    torch.testing.assert_close(grad, -w * adv / 4)
    assert (grad != 0).all()
    torch.testing.assert_close(loss, (-w * adv).mean())  # value = the truncated-weight surrogate
    assert float(stats["clip/frac"]) == pytest.approx(3 / 4)
    ppo, _ = policy_loss(logp, old, adv, mask, 0.2, 0.28)
    (g_ppo,) = torch.autograd.grad(ppo, logp)
    assert g_ppo[0, 0] == 0 and g_ppo[0, 1] == 0  # the contrast: PPO drops these tokens


def test_cispo_none_bound_is_unbounded_side():
    r = torch.tensor([[0.01, 5.0]], dtype=torch.float64)
    old = torch.zeros_like(r) - 2.0
    logp = (old + r.log()).requires_grad_(True)
    adv = torch.ones_like(r)
    loss, _ = cispo_loss(logp, old, adv, torch.ones_like(r, dtype=torch.bool), clip_low=None, clip_high=0.28)
    (grad,) = torch.autograd.grad(loss, logp)
    torch.testing.assert_close(grad, torch.tensor([[-0.01, -1.28]], dtype=torch.float64) / 2)


@pytest.mark.parametrize("name", ["ppo_clip", "gspo", "cispo"])
def test_registered_losses_share_the_signature_and_rank_at_ratio_one(name):
    """At r = 1 every registered policy loss has the REINFORCE gradient up to its aggregation."""
    old = torch.randn(3, 4, dtype=torch.float64)
    logp = old.clone().requires_grad_(True)
    adv = torch.randn(3, 4, dtype=torch.float64)
    adv = adv.mean(1, keepdim=True).expand(3, 4) * MASK  # one advantage per row (GSPO's setting)
    loss, stats = first_order_loss(name, logp, old, adv, MASK, 0.2, 0.2, None, "seq-mean-token-mean")
    (grad,) = torch.autograd.grad(loss, logp)
    n = MASK.sum(1, keepdim=True)
    torch.testing.assert_close(grad, torch.where(MASK, -adv / n / 3, torch.zeros_like(grad)))
    assert POLICY_LOSSES[name] is not None and {"clip/frac", "clip/dual", "ratio/mean", "kl/old"} <= set(stats)


@pytest.mark.parametrize("fn", [gspo_loss, cispo_loss])
def test_new_losses_reject_dual_clip(fn):
    logp, old = batch()
    with pytest.raises(ValueError, match="dual"):
        fn(logp, old, torch.ones(3, dtype=torch.float64), MASK, 0.2, 0.2, 3.0)


# ---------------------------------------------------------------- sequence-level IS


def test_sequence_is_weights_truncate_and_mask():
    old = torch.zeros(3, 4, dtype=torch.float64)
    # per-row mean log-ratio old - rollout: log 3 (row 0), log 1.5 (row 1), log 0.25 (row 2)
    rollout = torch.tensor(
        [[0.0, -2 * math.log(3), -math.log(3), -math.log(3)],
         [-math.log(1.5), -math.log(1.5), 9.0, 9.0],
         [math.log(4), math.log(4), math.log(4), float("nan")]],
        dtype=torch.float64,
    )
    w = sequence_is_weights(old, rollout, MASK, "truncate", high=2.0)
    rows = torch.tensor([2.0, 1.5, 0.25], dtype=torch.float64)
    torch.testing.assert_close(w, torch.where(MASK, rows[:, None].expand(3, 4), torch.zeros_like(w)))
    w = sequence_is_weights(old, rollout, MASK, "mask", low=0.5, high=2.0)
    rows = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(w, torch.where(MASK, rows[:, None].expand(3, 4), torch.zeros_like(w)))
    assert not w.requires_grad


def test_sequence_is_weight_is_geometric_mean_of_token_weights():
    g = torch.Generator().manual_seed(3)
    old = torch.randn(3, 4, generator=g, dtype=torch.float64)
    rollout = old + 0.1 * torch.randn(3, 4, generator=g, dtype=torch.float64)
    tok = truncated_is_weights(old, rollout, MASK, cap=1e6)
    seq = sequence_is_weights(old, rollout, MASK, "truncate", high=1e6)
    for b in range(3):
        n = int(MASK[b].sum())
        torch.testing.assert_close(seq[b, 0], tok[b, :n].log().mean().exp())
