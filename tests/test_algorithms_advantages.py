"""Returns, GAE and group baselines: hand-computed cases, the GAE identities, ragged masks, bad input."""
import math

import pytest
import torch

from rlvr.algorithms import (
    ESTIMATORS,
    compute_gae,
    compute_group_advantages,
    compute_returns,
    estimate_advantages,
    outcome_rewards,
    whiten,
)


def ragged_batch(seed=0, B=6, T=9, holes=False):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(B, T, generator=g, dtype=torch.float64)
    values = torch.randn(B, T, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    if holes:  # interior gaps (e.g. tool output) and left padding
        mask = mask & (torch.rand(B, T, generator=g) > 0.3)
        mask[:, -1] |= ~mask.any(dim=1)
    return rewards, values, mask


def reference_gae(rewards, values, mask, gamma, lam):
    """Per-row reference: keep only the valid tokens, run textbook GAE on that sequence."""
    adv = torch.zeros_like(rewards)
    for b in range(rewards.shape[0]):
        idx = mask[b].nonzero().squeeze(1).tolist()
        r, v = rewards[b, idx].tolist(), values[b, idx].tolist()
        a_next, out = 0.0, []
        for k in reversed(range(len(idx))):
            v_next = v[k + 1] if k + 1 < len(idx) else 0.0
            a_next = r[k] + gamma * v_next - v[k] + gamma * lam * a_next
            out.append(a_next)
        adv[b, idx] = torch.tensor(out[::-1], dtype=rewards.dtype)
    return adv


def test_returns_hand_computed():
    rewards = torch.tensor([[1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 3.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    G = compute_returns(rewards, mask, gamma=0.5)
    # row 0: G2 = 2, G1 = 0 + 0.5*2 = 1, G0 = 1 + 0.5*1 = 1.5; row 1: 3 * 0.5^(3-t)
    expected = torch.tensor([[1.5, 1.0, 2.0, 0.0], [0.375, 0.75, 1.5, 3.0]])
    torch.testing.assert_close(G, expected)


def test_gae_hand_computed():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    values = torch.tensor([[0.5, 0.4, 0.3, 7.0, -7.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    adv, ret = compute_gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # delta2 = 1 + 0 - 0.3 = 0.7                 A2 = 0.7
    # delta1 = 0 + 0.9*0.3 - 0.4 = -0.13          A1 = -0.13 + 0.72*0.7   = 0.374
    # delta0 = 0 + 0.9*0.4 - 0.5 = -0.14          A0 = -0.14 + 0.72*0.374 = 0.12928
    expected = torch.tensor([[0.12928, 0.374, 0.7, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, torch.tensor([[0.62928, 0.774, 1.0, 0.0, 0.0]], dtype=torch.float64))


def test_gae_lambda0_is_one_step_td_residual():
    rewards, values, mask = ragged_batch(1)
    gamma = 0.97
    adv, _ = compute_gae(rewards, values, mask, gamma, lam=0.0)
    m = mask.double()
    v_next = torch.cat([values[:, 1:] * m[:, 1:], torch.zeros_like(values[:, :1])], dim=1)
    delta = (rewards + gamma * v_next - values) * m
    torch.testing.assert_close(adv, delta)


def test_gae_lambda1_is_discounted_return_minus_value():
    rewards, values, mask = ragged_batch(2)
    gamma = 0.9
    adv, ret = compute_gae(rewards, values, mask, gamma, lam=1.0)
    G = compute_returns(rewards, mask, gamma)
    torch.testing.assert_close(adv, (G - values) * mask)
    torch.testing.assert_close(ret, G)  # R = A + V = G when lambda = 1


@pytest.mark.parametrize("holes", [False, True])
@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.5), (0.99, 1.0)])
def test_gae_matches_per_row_reference(holes, gamma, lam):
    rewards, values, mask = ragged_batch(3, holes=holes)
    adv, ret = compute_gae(rewards, values, mask, gamma, lam)
    torch.testing.assert_close(adv, reference_gae(rewards, values, mask, gamma, lam))
    torch.testing.assert_close(ret, (adv + values) * mask)


def test_padding_values_do_not_leak():
    rewards, values, mask = ragged_batch(4, holes=True)
    adv, ret = compute_gae(rewards, values, mask, 0.95, 0.9)
    G = compute_returns(rewards, mask, 0.95)
    junk_r = torch.where(mask, rewards, torch.full_like(rewards, float("nan")))
    junk_v = torch.where(mask, values, torch.full_like(values, 1e6))
    adv2, ret2 = compute_gae(junk_r, junk_v, mask, 0.95, 0.9)
    torch.testing.assert_close(adv2, adv)
    torch.testing.assert_close(ret2, ret)
    torch.testing.assert_close(compute_returns(junk_r, mask, 0.95), G)
    assert (adv[~mask] == 0).all() and (G[~mask] == 0).all()


def test_left_padding_equals_right_padding():
    r = torch.tensor([[0.0, 0.5, 1.0, 0.0, 0.0]])
    v = torch.tensor([[0.1, 0.2, 0.3, 0.0, 0.0]])
    m = torch.tensor([[1, 1, 1, 0, 0]])
    adv_r, _ = compute_gae(r, v, m, 0.9, 0.7)
    adv_l, _ = compute_gae(r.roll(2, 1), v.roll(2, 1), m.roll(2, 1), 0.9, 0.7)
    torch.testing.assert_close(adv_l, adv_r.roll(2, 1))


def test_outcome_rewards_on_last_valid_token():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0], [0, 1, 1, 0]])
    out = outcome_rewards(torch.tensor([1.0, 2.0, 3.0, 4.0]), mask)
    expected = torch.tensor([[0, 0, 1.0, 0], [0, 0, 0, 2.0], [0, 0, 0, 0], [0, 0, 4.0, 0]])
    torch.testing.assert_close(out, expected)


# ---------------------------------------------------------------- group baselines


def test_grpo_hand_computed_and_groups_sum_to_zero():
    # two groups with arbitrary, interleaved ids
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0, 5.0, 2.0, 2.0])
    gids = torch.tensor([7, 7, 7, 7, -3, -3, -3])
    adv = compute_group_advantages(scores, gids, "grpo")
    # group 7: mean 0.5, unbiased std sqrt(1/3) -> +-0.5/0.57735 = +-0.866025
    s = math.sqrt(1 / 3)
    torch.testing.assert_close(adv[:4], torch.tensor([0.5, -0.5, -0.5, 0.5]) / (s + 1e-6))
    # group -3: mean 3, std sqrt((4+1+1)/2) = sqrt(3)
    torch.testing.assert_close(adv[4:], torch.tensor([2.0, -1.0, -1.0]) / (math.sqrt(3) + 1e-6))
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(40, generator=g)
    gids = torch.tensor([1000, 3, 55, 8] * 10)[torch.randperm(40, generator=g)]
    adv = compute_group_advantages(scores, gids, "grpo")
    for gid in gids.unique():
        assert abs(float(adv[gids == gid].sum())) < 1e-5


def test_dr_grpo_is_mean_only():
    scores = torch.tensor([1.0, 0.0, 0.0, 3.0, 1.0])
    gids = [2, 2, 2, 9, 9]
    adv = compute_group_advantages(scores, gids, "dr_grpo")
    torch.testing.assert_close(adv, torch.tensor([2 / 3, -1 / 3, -1 / 3, 1.0, -1.0]))


def test_rloo_is_leave_one_out_and_rescaled_mean():
    g = torch.Generator().manual_seed(1)
    scores = torch.rand(12, generator=g)
    gids = torch.tensor([5, 1, 5, 1, 5, 1, 5, 1, 9, 9, 9, 42])  # 42: a singleton
    adv = compute_group_advantages(scores, gids, "rloo")
    for i in range(12):
        others = scores[(gids == gids[i]) & (torch.arange(12) != i)]
        expected = 0.0 if len(others) == 0 else float(scores[i] - others.mean())
        assert float(adv[i]) == pytest.approx(expected, abs=1e-6)
        n = int((gids == gids[i]).sum())
        if n > 1:  # RLOO = n/(n-1) * (s - mean)
            mean = scores[gids == gids[i]].mean()
            assert float(adv[i]) == pytest.approx(n / (n - 1) * float(scores[i] - mean), abs=1e-6)


def test_singleton_groups_get_zero():
    scores = torch.tensor([0.3, 0.9])
    for method in ("grpo", "dr_grpo", "rloo"):
        assert torch.equal(compute_group_advantages(scores, [0, 1], method), torch.zeros(2))


def test_reinforce_pp_is_batch_whitening_ignoring_groups():
    g = torch.Generator().manual_seed(2)
    scores = torch.rand(16, generator=g)
    a = compute_group_advantages(scores, [0] * 8 + [1] * 8, "reinforce_pp")
    b = compute_group_advantages(scores, list(range(16)), "reinforce_pp")
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, (scores - scores.mean()) / (scores.std() + 1e-6))
    c = compute_group_advantages(scores, [0] * 8 + [1] * 8, "reinforce_pp_baseline")
    centered = scores - torch.cat([scores[:8].mean().expand(8), scores[8:].mean().expand(8)])
    torch.testing.assert_close(c, centered / (centered.std() + 1e-6))


def test_rloo_baseline_is_unbiased_and_mean_baseline_is_not():
    """Score-function gradient of J = E_pi[R] for a softmax policy over 3 actions.

    Exact: dJ/dtheta = pi * (R - J). Estimate per group of n samples: (1/n) sum_i A_i (onehot(a_i) - pi).
    RLOO's leave-one-out baseline is independent of a_i, so the estimate is unbiased; subtracting
    the group mean (which contains a_i's own reward) shrinks it by (n-1)/n.
    Tolerance: 5 standard errors of the Monte-Carlo mean (estimated from the samples).
    """
    g = torch.Generator().manual_seed(123)
    theta = torch.tensor([0.3, -0.2, 0.8], dtype=torch.float64)
    R = torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64)
    pi = torch.softmax(theta, 0)
    exact = pi * (R - (pi * R).sum())
    G, n = 40000, 4
    actions = torch.multinomial(pi.expand(G, 3), n, replacement=True, generator=g)  # [G, n]
    scores = R[actions].reshape(-1)
    gids = torch.arange(G).repeat_interleave(n)
    score_fn = torch.nn.functional.one_hot(actions.reshape(-1), 3).double() - pi  # grad log pi(a)
    for method, factor in (("rloo", 1.0), ("dr_grpo", (n - 1) / n)):
        adv = compute_group_advantages(scores, gids, method)
        per_group = (adv[:, None] * score_fn).reshape(G, n, 3).mean(1)  # [G, 3]
        est, se = per_group.mean(0), per_group.std(0) / math.sqrt(G)
        assert ((est - factor * exact).abs() < 5 * se).all(), (method, est, factor * exact, se)
    # the two differ by far more than the noise: the shrinkage is detectable
    assert ((exact - (n - 1) / n * exact).abs() > 5 * se).any()


def test_whiten():
    x = torch.tensor([[1.0, 2.0, 3.0, 99.0], [4.0, 5.0, -99.0, -99.0]])
    m = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    w = whiten(x, m)
    valid = w[m.bool()]
    assert abs(float(valid.mean())) < 1e-6 and float(valid.std()) == pytest.approx(1.0, abs=1e-6)
    assert (w[~m.bool()] == 0).all()
    w2 = whiten(x, m, shift_mean=False)
    assert float(w2[m.bool()].mean()) == pytest.approx(3.0, abs=1e-5)  # mean of 1..5 kept


# ---------------------------------------------------------------- dispatcher


def test_estimate_advantages_dispatch_consistency():
    rewards, values, mask = ragged_batch(5)
    gids = torch.tensor([0, 0, 1, 1, 2, 2])
    G = compute_returns(rewards, mask, 0.9)
    for est in ESTIMATORS:
        adv, ret = estimate_advantages(est, rewards, mask, values=values, group_ids=gids, gamma=0.9, lam=0.7)
        assert adv.shape == rewards.shape and torch.isfinite(adv).all()
        assert (adv[~mask] == 0).all()
    adv, _ = estimate_advantages("mc", rewards, mask, gamma=0.9)
    torch.testing.assert_close(adv, G)
    adv, _ = estimate_advantages("batch_mean", rewards, mask, gamma=0.9)
    assert abs(float(adv[mask].sum())) < 1e-9  # a constant baseline: centred over valid tokens
    adv, ret = estimate_advantages("td", rewards, mask, values=values, gamma=0.9, lam=0.7)
    torch.testing.assert_close(adv, compute_gae(rewards, values, mask, 0.9, 0.0)[0])
    adv, _ = estimate_advantages("grpo", rewards, mask, group_ids=gids)
    seq = (rewards * mask).sum(1)
    expected = compute_group_advantages(seq, gids, "grpo")[:, None] * mask
    torch.testing.assert_close(adv, expected)
    adv, _ = estimate_advantages("reinforce_pp", rewards, mask, gamma=0.9)
    torch.testing.assert_close(adv, whiten(G, mask))


# ---------------------------------------------------------------- bad input


def test_bad_inputs_raise_value_error():
    r = torch.zeros(2, 3)
    m = torch.ones(2, 3)
    with pytest.raises(ValueError, match="values"):
        compute_gae(r, torch.zeros(2, 4), m, 1.0, 1.0)
    with pytest.raises(ValueError, match="mask"):
        compute_returns(r, torch.ones(3, 3), 1.0)
    bad = r.clone()
    bad[0, 1] = float("nan")
    with pytest.raises(ValueError, match="rewards contains NaN"):
        compute_returns(bad, m, 1.0)
    bad[0, 1] = float("inf")
    with pytest.raises(ValueError, match="rewards"):
        compute_gae(bad, r, m, 1.0, 1.0)
    with pytest.raises(ValueError, match="scores contains NaN"):
        compute_group_advantages(torch.tensor([0.0, float("nan")]), [0, 0], "grpo")
    with pytest.raises(ValueError, match="unknown method 'ppo'"):
        compute_group_advantages(torch.tensor([0.0, 1.0]), [0, 0], "ppo")
    with pytest.raises(ValueError, match="group_ids"):
        compute_group_advantages(torch.tensor([0.0, 1.0]), [0, 0, 1], "rloo")
    with pytest.raises(ValueError, match="no valid tokens"):
        whiten(r, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="no valid tokens"):
        estimate_advantages("mc", r, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="unknown estimator"):
        estimate_advantages("bogus", r, m)
    with pytest.raises(ValueError, match="needs values"):
        estimate_advantages("gae", r, m)
    with pytest.raises(ValueError, match="needs group_ids"):
        estimate_advantages("rloo", r, m)
