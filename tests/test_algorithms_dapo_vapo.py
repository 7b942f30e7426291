"""DAPO's overlong penalty and dynamic-sampling bookkeeping; VAPO's decoupled and length-adaptive GAE."""
import math

import pytest
import torch

from rlvr.algorithms import (
    compute_gae,
    compute_returns,
    decoupled_gae,
    get_preset,
    length_adaptive_lambda,
    mixed_groups,
    outcome_rewards,
    overlong_penalty,
    prompts_to_refill,
)

# ---------------------------------------------------------------- DAPO


def test_overlong_penalty_piecewise_linear():
    # L_max = 20, L_cache = 4: free up to 16, linear to -1 at 20, -1 beyond
    lengths = torch.tensor([0, 16, 17, 18, 20, 21, 100])
    got = overlong_penalty(lengths, max_len=20, cache_len=4)
    torch.testing.assert_close(got, torch.tensor([0.0, 0.0, -0.25, -0.5, -1.0, -1.0, -1.0]))
    torch.testing.assert_close(overlong_penalty(lengths, 20, 4, factor=0.5), 0.5 * got)
    with pytest.raises(ValueError, match="cache_len"):
        overlong_penalty(lengths, 20, 21)


def test_mixed_groups_marks_groups_with_different_scores():
    scores = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.3, 0.3, 1.0])
    gids = [4, 4, 2, 2, 9, 9, 1, 1, 8]  # all-correct | mixed | all-wrong | equal partial | singleton
    assert mixed_groups(scores, gids).tolist() == [False, False, True, True, False, False, False, False, False]
    assert mixed_groups(torch.tensor([0.30, 0.31]), [0, 0], tol=0.05).tolist() == [False, False]


def test_group_spread_and_the_zero_std_filter_agree_with_mixed_groups():
    from types import SimpleNamespace

    from rlvr.algorithms import group_spread
    from rlvr.shaping import zero_std_filter

    scores = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.3, 0.3, 1.0])
    gids = torch.tensor([4, 4, 2, 2, 9, 9, 1, 1, 8])
    inv, spread = group_spread(scores, gids)
    assert inv.tolist() == [2, 2, 1, 1, 4, 4, 0, 0, 3]  # groups in sorted id order: 1, 2, 4, 8, 9
    assert spread.tolist() == [0.0, 1.0, 0.0, 0.0, 0.0]
    cfg = SimpleNamespace(algorithm=SimpleNamespace(filter_zero_std_groups=True))
    keep, m = zero_std_filter(cfg, scores, gids)
    assert keep.tolist() == mixed_groups(scores, gids).tolist()
    assert m == pytest.approx({"zero_std_groups": 0.8, "filtered_samples": 7 / 9})
    with pytest.raises(ValueError, match="group_ids"):
        group_spread(scores, gids[:3])


def test_prompts_to_refill():
    assert prompts_to_refill(8, 8) == 0 and prompts_to_refill(10, 8) == 0
    assert prompts_to_refill(3, 8) == 5
    assert prompts_to_refill(3, 8, mixed_rate=0.25) == 20  # ceil(5 / 0.25)
    assert prompts_to_refill(3, 8, mixed_rate=0.3) == math.ceil(5 / 0.3)
    assert prompts_to_refill(3, 8, mixed_rate=0.0) == 5 and prompts_to_refill(3, 8, 0.1, max_prompts=16) == 16


def test_dynamic_sampling_loop_returns_a_full_batch_of_mixed_groups():
    """Simulated prompts: prompt k's group is all-correct if k % 3 == 0, all-wrong if k % 3 == 1, else mixed."""
    n, batch_groups, next_prompt = 4, 5, 0
    kept: list[tuple[int, torch.Tensor]] = []  # (prompt id, scores [n])
    seen = mixed = rounds = 0
    while True:
        rate = mixed / seen if seen else None
        ask = prompts_to_refill(len(kept), batch_groups, rate)
        if ask == 0:
            break
        rounds += 1
        prompts = list(range(next_prompt, next_prompt + ask))
        next_prompt += ask
        layout = {0: [1.0] * n, 1: [0.0] * n, 2: [1.0, 0.0, 0.0, 1.0]}
        scores = torch.cat([torch.tensor(layout[k % 3]) for k in prompts])
        gids = torch.tensor(prompts).repeat_interleave(n)
        keep = mixed_groups(scores, gids)
        for k in prompts:
            rows = gids == k
            if keep[rows].all():
                kept.append((k, scores[rows]))
        seen += ask
        mixed += int(keep.sum()) // n
    batch = kept[:batch_groups]  # the surplus is dropped
    assert len(batch) == batch_groups and all(k % 3 == 2 for k, _ in batch)
    assert all(0 < float(s.sum()) < n for _, s in batch)
    assert rounds == 2  # one round at need = 5, then ceil(need / observed rate) fills it


# ---------------------------------------------------------------- VAPO


def ragged(seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.arange(7)[None] < torch.tensor([7, 3, 5, 1])[:, None]
    rewards = outcome_rewards(torch.tensor([1.0, 0.0, 1.0, 1.0]), mask) + 0.1 * torch.randn(4, 7, generator=g) * mask
    values = torch.randn(4, 7, generator=g, dtype=torch.float32)
    return rewards, values, mask


def test_critic_lambda_one_targets_are_monte_carlo_returns():
    rewards, values, mask = ragged()
    adv, returns = decoupled_gae(rewards, values, mask, gamma=0.99, lam_actor=0.9, lam_critic=1.0)
    torch.testing.assert_close(returns, compute_returns(rewards, mask, 0.99))
    torch.testing.assert_close(adv, compute_gae(rewards, values, mask, 0.99, 0.9)[0])


def test_length_adaptive_lambda_per_row():
    mask = torch.arange(200)[None] < torch.tensor([200, 100, 40, 10, 0])[:, None]
    lam = length_adaptive_lambda(mask, alpha=0.05)
    torch.testing.assert_close(lam, torch.tensor([1 - 1 / 10, 1 - 1 / 5, 1 - 1 / 2, 0.0, 0.0]))


def test_per_row_lambda_gae_equals_rowwise_scalar_gae():
    rewards, values, mask = ragged(1)
    lam = length_adaptive_lambda(mask, alpha=0.5)  # lengths 7, 3, 5, 1 -> 5/7, 1/3, 3/5, 0
    adv, _ = compute_gae(rewards, values, mask, 0.95, lam)
    for b in range(4):
        row, _ = compute_gae(rewards[b : b + 1], values[b : b + 1], mask[b : b + 1], 0.95, float(lam[b]))
        torch.testing.assert_close(adv[b : b + 1], row)


def test_vapo_preset_uses_decoupled_and_adaptive_lambdas():
    p = get_preset("vapo")
    rewards, values, mask = ragged(2)
    adv, returns = p.advantages(rewards, mask, values=values)
    lam = length_adaptive_lambda(mask, p.lam_length_alpha)
    exp_adv, exp_ret = decoupled_gae(rewards, values, mask, p.gamma, lam, p.lam_critic)
    torch.testing.assert_close(adv, exp_adv)
    torch.testing.assert_close(returns, exp_ret)
    torch.testing.assert_close(returns, compute_returns(rewards, mask, p.gamma))
