"""Policy/value losses and aggregation: autograd checks of the clip cells, dual clip, clip-higher."""
import math

import pytest
import torch

from rlvr.algorithms import aggregate, entropy_from_logits, policy_loss, truncated_is_weights, value_loss


def tokens(ratios, advs, old=-1.0):
    """One sequence whose tokens have the given ratios r = pi/pi_old and advantages. logp requires grad."""
    r = torch.tensor([ratios], dtype=torch.float64)
    old_logp = torch.full_like(r, old)
    logp = (old_logp + r.log()).requires_grad_(True)
    adv = torch.tensor([advs], dtype=torch.float64)
    return logp, old_logp, adv, torch.ones_like(r, dtype=torch.bool)


# ---------------------------------------------------------------- aggregation


def test_aggregate_modes_hand_computed():
    l = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, -50.0, 7.0, 7.0]])  # masked entries are junk
    m = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    assert float(aggregate(l, m, "token-mean")) == pytest.approx((1 + 2 + 3 + 4) / 4)  # 2.5
    assert float(aggregate(l, m, "seq-mean-token-mean")) == pytest.approx((6 / 3 + 4 / 1) / 2)  # 3
    assert float(aggregate(l, m, "seq-mean-token-sum")) == pytest.approx((6 + 4) / 2)  # 5
    assert float(aggregate(l, m, "seq-mean-token-sum-norm")) == pytest.approx((6 + 4) / (2 * 4))  # T = 4
    assert float(aggregate(l, m, "seq-mean-token-sum-norm", norm_len=10)) == pytest.approx(10 / 20)


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"])
def test_aggregate_micro_batches_sum_to_full_batch(mode):
    g = torch.Generator().manual_seed(0)
    l = torch.randn(6, 5, generator=g)
    m = torch.arange(5)[None] < torch.tensor([5, 1, 3, 2, 4, 5])[:, None]
    full = aggregate(l, m, mode)
    parts = sum(
        aggregate(l[s], m[s], mode, num_tokens=m.sum(), num_seqs=6, norm_len=5)
        for s in (slice(0, 2), slice(2, 3), slice(3, 6))
    )
    torch.testing.assert_close(parts, full)


# ---------------------------------------------------------------- policy loss


@pytest.mark.parametrize(
    "kw",
    [dict(), dict(clip_low=0.2, clip_high=0.28), dict(dual_clip=3.0), dict(clip_low=None, clip_high=None)],
)
def test_gradient_at_ratio_one_is_vanilla_policy_gradient(kw):
    g = torch.Generator().manual_seed(1)
    old = torch.randn(3, 5, generator=g, dtype=torch.float64)
    logp = old.clone().requires_grad_(True)  # r = 1 everywhere
    adv = torch.randn(3, 5, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    loss, _ = policy_loss(logp, old, adv, mask, **kw)
    (grad,) = torch.autograd.grad(loss, logp)
    logp2 = old.clone().requires_grad_(True)
    reinforce = -(adv * logp2 * mask).sum() / mask.sum()  # REINFORCE surrogate, token mean
    (grad2,) = torch.autograd.grad(reinforce, logp2)
    torch.testing.assert_close(grad, grad2)
    torch.testing.assert_close(loss, -(adv * mask).sum() / mask.sum())


def test_clip_zeroes_gradient_only_in_the_two_moved_enough_cells():
    # cells: (A>0, r>1.2) (A>0, r<0.8) (A<0, r>1.2) (A<0, r<0.8), then two tokens inside the band
    ratios = [1.5, 0.5, 1.5, 0.5, 1.1, 0.9]
    advs = [1.0, 2.0, -1.0, -2.0, 3.0, -3.0]
    logp, old, adv, mask = tokens(ratios, advs)
    loss, stats = policy_loss(logp, old, adv, mask, clip_low=0.2, clip_high=0.2)
    (grad,) = torch.autograd.grad(loss, logp)
    n = len(ratios)
    # d(-A r)/d logp = -A r ; clipped cells are constant in logp
    expected = [0.0, -2.0 * 0.5 / n, 1.0 * 1.5 / n, 0.0, -3.0 * 1.1 / n, 3.0 * 0.9 / n]
    torch.testing.assert_close(grad[0], torch.tensor(expected, dtype=torch.float64))
    # loss: -min(rA, clip(r)A) per token
    per_tok = [-1.2 * 1, -0.5 * 2, 1.5 * 1, 0.8 * 2, -1.1 * 3, 0.9 * 3]
    assert float(loss.detach()) == pytest.approx(sum(per_tok) / n)
    for cell in ("pos_high", "pos_low", "neg_high", "neg_low"):
        assert float(stats[f"clip/{cell}"]) == pytest.approx(1 / n)
    assert float(stats["clip/inside"]) == pytest.approx(2 / n)
    assert float(stats["clip/frac"]) == pytest.approx(2 / n)
    assert float(stats["ratio/max"]) == pytest.approx(1.5)
    assert float(stats["ratio/mean"]) == pytest.approx(sum(ratios) / n)
    k3 = sum((r - 1) - math.log(r) for r in ratios) / n
    assert float(stats["kl/old"]) == pytest.approx(k3)


def test_unclipped_loss_keeps_gradient_everywhere_and_reports_default_band():
    ratios = [1.5, 0.5, 1.5, 0.5]
    logp, old, adv, mask = tokens(ratios, [1.0, 2.0, -1.0, -2.0])
    loss, stats = policy_loss(logp, old, adv, mask, clip_low=None, clip_high=None)
    (grad,) = torch.autograd.grad(loss, logp)
    torch.testing.assert_close(grad[0], -adv[0] * torch.tensor(ratios, dtype=torch.float64) / 4)
    assert float(loss.detach()) == pytest.approx(-(1.5 * 1 + 0.5 * 2 - 1.5 * 1 - 0.5 * 2) / 4)
    assert float(stats["clip/pos_high"]) == 0.25 and float(stats["clip/neg_low"]) == 0.25  # 0.2 band


def test_dual_clip_caps_loss_for_negative_advantages():
    # A<0 with r=5 (> c=3): loss capped at -c*A = 3 and gradient zero; r=2 (< c): unchanged; A>0 untouched
    logp, old, adv, mask = tokens([5.0, 2.0, 5.0], [-1.0, -1.0, 1.0])
    loss, stats = policy_loss(logp, old, adv, mask, dual_clip=3.0)
    (grad,) = torch.autograd.grad(loss, logp)
    assert float(loss.detach()) == pytest.approx((3.0 + 2.0 - 1.2) / 3)
    torch.testing.assert_close(grad[0], torch.tensor([0.0, 2.0 / 3, 0.0], dtype=torch.float64))
    assert float(stats["clip/dual"]) == pytest.approx(1 / 3)
    loss_nodual, _ = policy_loss(logp, old, adv, mask)
    assert float(loss_nodual.detach()) == pytest.approx((5.0 + 2.0 - 1.2) / 3)


def test_clip_higher_is_asymmetric():
    # band [0.8, 1.28]: A>0 with r=1.25 still learns, r=1.3 is clipped; A<0 with r=0.79 is clipped
    logp, old, adv, mask = tokens([1.25, 1.3, 0.79, 0.81], [1.0, 1.0, -1.0, -1.0])
    loss, stats = policy_loss(logp, old, adv, mask, clip_low=0.2, clip_high=0.28)
    (grad,) = torch.autograd.grad(loss, logp)
    torch.testing.assert_close(grad[0], torch.tensor([-1.25 / 4, 0.0, 0.0, 0.81 / 4], dtype=torch.float64))
    assert float(stats["clip/pos_high"]) == 0.25 and float(stats["clip/neg_low"]) == 0.25
    # the symmetric 0.2 band would clip r = 1.25 too
    _, sym = policy_loss(logp, old, adv, mask, clip_low=0.2, clip_high=0.2)
    assert float(sym["clip/pos_high"]) == 0.5


def test_sequence_advantages_broadcast_and_padding_ignored():
    g = torch.Generator().manual_seed(2)
    old = torch.randn(2, 4, generator=g)
    logp = old + 0.3 * torch.randn(2, 4, generator=g)
    adv_seq = torch.tensor([1.0, -2.0])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    a, sa = policy_loss(logp, old, adv_seq, mask)
    b, sb = policy_loss(logp, old, adv_seq[:, None].expand(2, 4), mask)
    torch.testing.assert_close(a, b)
    junk = torch.where(mask.bool(), logp, torch.full_like(logp, 80.0))  # would overflow if read
    c, sc = policy_loss(junk, old, adv_seq, mask)
    torch.testing.assert_close(a, c)
    assert sc["ratio/max"] == sa["ratio/max"] and torch.isfinite(c)


def test_tis_weights_scale_per_token_loss_and_are_detached():
    logp, old, adv, mask = tokens([1.0, 1.0], [1.0, 1.0])
    w = torch.tensor([[2.0, 0.5]], dtype=torch.float64, requires_grad=True)
    loss, stats = policy_loss(logp, old, adv, mask, tis_weights=w)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(-(2.0 + 0.5) / 2)
    assert w.grad is None
    torch.testing.assert_close(logp.grad[0], torch.tensor([-1.0, -0.25], dtype=torch.float64))
    assert float(stats["tis/mean"]) == pytest.approx(1.25)


def test_truncated_is_weights():
    old = torch.tensor([[-1.0, -1.0, -1.0]])
    rollout = torch.tensor([[-1.0, -2.0, 0.0]])
    w = truncated_is_weights(old, rollout, torch.tensor([[1, 1, 0]]), cap=2.0)
    torch.testing.assert_close(w, torch.tensor([[1.0, 2.0, 0.0]]))  # e^1 capped at 2; masked -> 0


def test_policy_loss_bad_inputs():
    x = torch.zeros(2, 3)
    m = torch.ones(2, 3)
    with pytest.raises(ValueError, match="old_logp"):
        policy_loss(x, torch.zeros(2, 4), x, m)
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(x, x, torch.zeros(3), m)
    with pytest.raises(ValueError, match="advantages contains NaN"):
        policy_loss(x, x, torch.tensor([0.0, float("nan")]), m)
    with pytest.raises(ValueError, match="no valid tokens"):
        policy_loss(x, x, x, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="unknown mode"):
        policy_loss(x, x, x, m, agg="sum")
    with pytest.raises(ValueError, match="dual_clip"):
        policy_loss(x, x, x, m, dual_clip=0.5)
    with pytest.raises(ValueError, match="mask"):
        policy_loss(x, x, x, torch.ones(2, 2))


# ---------------------------------------------------------------- value loss and entropy


def test_value_loss_unclipped_and_clipped():
    v = torch.tensor([[1.0, 1.0, 0.0]], requires_grad=True)
    old = torch.tensor([[0.0, 0.0, 0.0]])
    R = torch.tensor([[2.0, 0.5, 9.0]])
    m = torch.tensor([[1, 1, 0]])
    loss, stats = value_loss(v, old, R, m)
    assert float(loss.detach()) == pytest.approx(0.5 * (1.0 + 0.25) / 2)
    assert float(stats["value/clipfrac"]) == 0.0
    # clip 0.2: token 0: V_clip = 0.2, (0.2-2)^2 = 3.24 > 1 -> clipped term (constant in V);
    # token 1: V_clip = 0.2, (0.2-0.5)^2 = 0.09 < 0.25 -> unclipped term
    loss, stats = value_loss(v, old, R, m, clip=0.2)
    assert float(loss.detach()) == pytest.approx(0.5 * (3.24 + 0.25) / 2)
    assert float(stats["value/clipfrac"]) == 0.5
    loss.backward()
    torch.testing.assert_close(v.grad, torch.tensor([[0.0, 0.5 / 2, 0.0]]))  # d 0.5(V-R)^2 = V-R = 0.5


def test_entropy_from_logits():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(4, 7, 11, generator=g, dtype=torch.float64) * 3
    expected = torch.distributions.Categorical(logits=z).entropy()
    torch.testing.assert_close(entropy_from_logits(z), expected)
    assert float(entropy_from_logits(torch.zeros(5))) == pytest.approx(math.log(5))
    big = torch.tensor([1e4, 1e4 - 1.0, -1e4])  # huge logits: no overflow
    ent = entropy_from_logits(big)
    p = torch.softmax(torch.tensor([0.0, -1.0]), 0)
    assert float(ent) == pytest.approx(float(-(p * p.log()).sum()), rel=1e-5)
    masked = torch.tensor([0.0, 0.0, float("-inf")], requires_grad=True)
    ent = entropy_from_logits(masked)
    ent.backward()
    assert float(ent.detach()) == pytest.approx(math.log(2)) and torch.isfinite(masked.grad).all()
    assert entropy_from_logits(torch.zeros(2, 3, dtype=torch.bfloat16)).dtype == torch.float32
