"""rlvr.algorithms.vine: split positions, MC values, per-step advantages (hand-computed cases and
identities), continuation requests and their budget; the vine presets."""
from __future__ import annotations

import pytest
import torch

from rlvr.algorithms import vine as V
from rlvr.algorithms.advantages import compute_gae, estimate_advantages, outcome_rewards


def lengths_mask(lengths, R):
    return torch.arange(R)[None, :] < torch.tensor(lengths)[:, None]


# ---------------------------------------------------------------- split positions


def test_split_every_m_tokens_always_includes_position_0():
    mask = lengths_mask([5, 3, 1, 0], 5)
    s = V.split_positions(mask, every=2)
    assert s.dtype == torch.bool and s.shape == (4, 5)
    assert s.tolist() == [[True, False, True, False, True],
                          [True, False, True, False, False],
                          [True, False, False, False, False],
                          [False] * 5]  # an empty response has no state to act from
    only0 = V.split_positions(mask)
    assert only0.tolist() == [[True] + [False] * 4] * 3 + [[False] * 5]


def test_split_at_step_boundaries_after_newline_tokens():
    NL, NL2 = 10, 11  # ids of tokens whose text contains a newline
    ids = torch.tensor([[1, NL, 2, NL2, 3],
                        [1, 2, NL, 0, 0],  # ends with a newline: the terminal state is not estimated
                        [NL, NL, 5, 0, 0],  # consecutive newlines: a step of one token
                        [4, 4, 4, 4, 4]])
    mask = lengths_mask([5, 3, 3, 5], 5)
    s = V.split_positions(mask, response_ids=ids, boundary_ids=[NL, NL2])
    assert s.nonzero().tolist() == [[0, 0], [0, 2], [0, 4], [1, 0], [2, 0], [2, 1], [2, 2], [3, 0]]
    # union with every-m
    s2 = V.split_positions(mask, every=4, response_ids=ids, boundary_ids=torch.tensor([NL]))
    assert s2[0].tolist() == [True, False, True, False, True] and s2[3].tolist() == [True, False, False, False, True]


def test_split_positions_refuse_bad_input():
    mask = lengths_mask([3], 4)
    with pytest.raises(ValueError, match="every must be an integer >= 1"):
        V.split_positions(mask, every=0)
    with pytest.raises(ValueError, match="both response_ids and boundary_ids"):
        V.split_positions(mask, boundary_ids=[1])
    with pytest.raises(ValueError, match="right-padded"):
        V.split_positions(torch.tensor([[0, 1, 1, 0]]), every=1)
    with pytest.raises(ValueError, match="response_ids has shape"):
        V.split_positions(mask, response_ids=torch.zeros(1, 3, dtype=torch.long), boundary_ids=[1])


def test_newline_token_ids_of_the_real_tokenizer(tokenizer):
    ids = set(V.newline_token_ids(tokenizer))
    nl = tokenizer.encode("a\nb", add_special_tokens=False)
    assert any(i in ids for i in nl)
    assert all("\n" in tokenizer.decode([i]) for i in list(ids)[:50])
    assert not any(i in ids for i in tokenizer.encode("hello world", add_special_tokens=False))


# ---------------------------------------------------------------- MC values


def test_mc_values_mean_of_k_continuations():
    flat = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0])  # 3 states x K=3
    torch.testing.assert_close(V.mc_values(flat, 3), torch.tensor([2 / 3, 0.0, 1.0]))
    torch.testing.assert_close(V.mc_values(flat.reshape(3, 3), 3), torch.tensor([2 / 3, 0.0, 1.0]))
    with pytest.raises(ValueError, match="not a multiple of k=2"):
        V.mc_values(flat, 2)
    with pytest.raises(ValueError, match="NaN"):
        V.mc_values(torch.tensor([1.0, float("nan")]), 2)


def test_values_at_splits_row_major():
    s = torch.tensor([[True, False, True], [True, True, False]])
    out = V.values_at_splits(s, torch.tensor([0.1, 0.2, 0.3, 0.4]))
    torch.testing.assert_close(out, torch.tensor([[0.1, 0.0, 0.2], [0.3, 0.4, 0.0]]))
    with pytest.raises(ValueError, match=r"\[M=4\]"):
        V.values_at_splits(s, torch.tensor([0.1]))


# ---------------------------------------------------------------- advantages


def _case():
    """Row 0: 5 tokens, splits 0, 2, 4, V = 0.5, 0.25, 1.0, reward 1. Row 1: 3 tokens, splits 0, 2,
    V = 0.75, 0.5, reward 0."""
    mask = lengths_mask([5, 3], 5)
    splits = torch.tensor([[1, 0, 1, 0, 1], [1, 0, 1, 0, 0]]).bool()
    values = torch.tensor([[0.5, 9.0, 0.25, 9.0, 1.0], [0.75, 9.0, 0.5, 9.0, 9.0]])  # 9: never read
    rewards = outcome_rewards(torch.tensor([1.0, 0.0]), mask)
    return rewards, mask, values, splits


def test_step_advantages_by_hand_gamma_1():
    rewards, mask, values, splits = _case()
    adv, ret = V.vine_advantages(rewards, mask, values, splits, gamma=1.0)
    # row 0: step [0,2): 0.25 - 0.5; step [2,4): 1.0 - 0.25; last step [4,5): R - V(s_4) = 1 - 1
    # row 1: step [0,2): 0.5 - 0.75; last step [2,3): 0 - 0.5
    torch.testing.assert_close(adv, torch.tensor([[-0.25, -0.25, 0.75, 0.75, 0.0],
                                                  [-0.25, -0.25, -0.5, 0.0, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[0.25, 0.25, 1.0, 1.0, 1.0],
                                                  [0.5, 0.5, 0.0, 0.0, 0.0]]))


def test_step_advantages_by_hand_gamma_half():
    rewards, mask, values, splits = _case()
    adv, _ = V.vine_advantages(rewards, mask, values, splits, gamma=0.5)
    # row 0: step 0 spans 2 tokens: 0.5^2 * 0.25 - 0.5 = -0.4375; step 1: 0.25 * 1.0 - 0.25 = 0;
    # last: 1 - 1 = 0. row 1: 0.25 * 0.5 - 0.75 = -0.625; last: 0 - 0.5
    torch.testing.assert_close(adv, torch.tensor([[-0.4375, -0.4375, 0.0, 0.0, 0.0],
                                                  [-0.625, -0.625, -0.5, 0.0, 0.0]]))


def test_token_rewards_inside_a_step_are_summed():
    """A per-token KL penalty of -0.1 on each of 3 tokens and the score 1 on the last; splits 0, 2."""
    mask = lengths_mask([3], 3)
    rewards = torch.tensor([[-0.1, -0.1, 0.9]])
    values = torch.tensor([[0.4, 0.0, 0.6]])
    adv, _ = V.vine_advantages(rewards, mask, values, torch.tensor([[True, False, True]]))
    # step [0,2): -0.1 - 0.1 + 0.6 - 0.4 = 0.0; step [2,3): 0.9 - 0.6 = 0.3
    torch.testing.assert_close(adv, torch.tensor([[0.0, 0.0, 0.3]]))


def test_one_split_is_reinforce_with_an_mc_baseline():
    g = torch.Generator().manual_seed(0)
    lengths = [7, 3, 1, 5]
    mask = lengths_mask(lengths, 7)
    R = (torch.rand(4, generator=g) > 0.5).float()
    v0 = torch.rand(4, generator=g)
    splits = V.split_positions(mask)  # position 0 only
    values = V.values_at_splits(splits, v0)
    adv, _ = V.vine_advantages(outcome_rewards(R, mask), mask, values, splits)
    torch.testing.assert_close(adv, torch.where(mask, (R - v0)[:, None].expand(4, 7), torch.zeros(())))


def test_step_advantages_telescope_to_reward_minus_v0():
    g = torch.Generator().manual_seed(1)
    lengths = [9, 6, 4, 1, 8]
    mask = lengths_mask(lengths, 9)
    ids = torch.randint(0, 4, (5, 9), generator=g)
    splits = V.split_positions(mask, response_ids=ids, boundary_ids=[0]) | V.split_positions(mask, every=3)
    R = torch.rand(5, generator=g)
    values = V.values_at_splits(splits, torch.rand(int(splits.sum()), generator=g))
    adv, _ = V.vine_advantages(outcome_rewards(R, mask), mask, values, splits)
    per_step = torch.where(splits, adv, torch.zeros(())).sum(dim=1)  # one advantage per step
    torch.testing.assert_close(per_step, R - values[:, 0])
    # every token carries its step's advantage, padding carries 0
    start = torch.where(splits, torch.arange(9), -1).cummax(1).values.clamp(min=0)
    torch.testing.assert_close(adv, torch.where(mask, adv.gather(1, start), torch.zeros(())))
    assert (adv[~mask] == 0).all()


def test_split_at_every_token_is_the_td_residual():
    g = torch.Generator().manual_seed(2)
    mask = lengths_mask([6, 2, 4], 6)
    rewards = torch.randn(3, 6, generator=g)
    values = torch.randn(3, 6, generator=g)
    adv, _ = V.vine_advantages(rewards, mask, values, mask, gamma=0.9)
    torch.testing.assert_close(adv, compute_gae(rewards, values, mask, 0.9, 0.0)[0])
    # the estimator registry's "vine": splits default to every valid token; explicit splits are passed on
    adv2, _ = estimate_advantages("vine", rewards, mask, values=values, gamma=0.9)
    torch.testing.assert_close(adv2, adv)
    rewards0, mask0, values0, splits0 = _case()
    adv3, _ = estimate_advantages("vine", rewards0, mask0, values=values0, splits=splits0)
    torch.testing.assert_close(adv3, V.vine_advantages(rewards0, mask0, values0, splits0)[0])
    with pytest.raises(ValueError, match="does not read splits"):
        estimate_advantages("gae", rewards0, mask0, values=values0, splits=splits0)
    with pytest.raises(ValueError, match="estimator 'vine' needs values"):
        estimate_advantages("vine", rewards0, mask0)


def test_vine_advantages_refuse_bad_splits():
    rewards, mask, values, splits = _case()
    no_s0 = splits.clone()
    no_s0[1, 0] = False
    with pytest.raises(ValueError, match="position 0"):
        V.vine_advantages(rewards, mask, values, no_s0)
    outside = splits.clone()
    outside[1, 4] = True
    with pytest.raises(ValueError, match="within the mask"):
        V.vine_advantages(rewards, mask, values, outside)
    bad = values.clone()
    bad[0, 2] = float("nan")
    with pytest.raises(ValueError, match="values contains NaN"):
        V.vine_advantages(rewards, mask, bad, splits)
    bad[0, 2], bad[0, 1] = 0.25, float("nan")  # not a split: never read
    V.vine_advantages(rewards, mask, bad, splits)


# ---------------------------------------------------------------- continuation requests and budget


def test_continuation_requests_prefixes_repeated_k_times():
    prompts = [[100, 101], [200]]
    responses = [[1, 2, 3, 4, 5], [6, 7, 8]]
    splits = torch.tensor([[1, 0, 1, 0, 1], [1, 0, 1, 0, 0]]).bool()
    req = V.continuation_requests(prompts, responses, splits, k=2)
    assert (req.sample, req.position) == ([0, 0, 0, 1, 1], [0, 2, 4, 0, 2])
    assert req.partials == [[], [1, 2], [1, 2, 3, 4], [], [6, 7]]
    assert req.prefixes() == [[100, 101], [100, 101, 1, 2], [100, 101, 1, 2, 3, 4], [200], [200, 6, 7]]
    assert req.repeated() == [p for p in req.prefixes() for _ in range(2)]
    assert len(req) == 5
    conts = [[9], [9, 9], [8], [], [7, 7, 7], [7], [1], [1, 1], [2], [2, 2]]
    full = V.completed_responses(req, conts)
    assert full[2] == [1, 2, 8] and full[4] == [1, 2, 3, 4, 7, 7, 7] and full[9] == [6, 7, 2, 2]
    with pytest.raises(ValueError, match=r"splits\[1, 2\]: sample 1 has only 2 response tokens"):
        V.continuation_requests(prompts, [[1, 2, 3, 4, 5], [6, 7]], splits, k=2)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        V.continuation_requests(prompts, responses, splits, k=0)


def test_budget_counts_every_continuation():
    req = V.continuation_requests([[100, 101], [200]], [[1, 2, 3], [6]], torch.tensor([[1, 1, 0], [1, 0, 0]]).bool(),
                                  k=3)
    conts = [[1], [1, 2], [], [5, 5, 5], [5], [5, 5], [9, 9, 9, 9], [9], [9, 9]]
    b = V.continuation_budget(req, conts)
    assert b == V.ContinuationBudget(states=3, samples=9, generated_tokens=1 + 2 + 0 + 3 + 1 + 2 + 4 + 1 + 2,
                                     prefix_tokens=2 + 3 + 1)
    assert b + b == V.ContinuationBudget(6, 18, 32, 12)
    assert V.max_continuation_tokens(req, max_new_tokens=4) == 3 * ((4 - 0) + (4 - 1) + (4 - 0))
    with pytest.raises(ValueError, match="8 continuations for 3 states x k=3"):
        V.continuation_budget(req, conts[:8])


# ---------------------------------------------------------------- presets


def test_vine_presets_differ_from_the_controlled_ones_only_in_the_baseline():
    import dataclasses

    from rlvr.algorithms.presets import PRESETS

    def diff(a, b):
        return {f.name: (getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
                if f.name not in ("name", "description") and getattr(a, f.name) != getattr(b, f.name)}

    vine = PRESETS["ctrl_vine"]
    assert diff(PRESETS["ctrl_group"], vine) == {"estimator": ("grpo", "vine"), "vine_k": (None, 9)}
    assert diff(PRESETS["ctrl_critic"], vine) == {"estimator": ("gae", "vine"), "critic": (True, False),
                                                  "lam_critic": (1.0, None), "vine_k": (None, 9)}
    assert diff(PRESETS["ppo"], PRESETS["vineppo"]) == {"estimator": ("gae", "vine"), "critic": (True, False),
                                                        "vine_k": (None, 9)}
    assert vine.extensions() == {"vine_k": 9} and not vine.uses_groups and not vine.critic


def test_vine_preset_fields_are_checked():
    from rlvr.algorithms.presets import get_preset
    from rlvr.errors import ConfigError

    with pytest.raises(ConfigError, match="vine_k=None must be set with estimator 'vine'"):
        get_preset("ctrl_vine").with_overrides(vine_k=None)
    with pytest.raises(ConfigError, match="vine_k=4 needs estimator 'vine', not 'grpo'"):
        get_preset("ctrl_group").with_overrides(vine_k=4)
    with pytest.raises(ConfigError, match="vine_k=0 must be an integer >= 1"):
        get_preset("ctrl_vine").with_overrides(vine_k=0)
    with pytest.raises(ConfigError, match="vine_split='words' is not one of lines, every"):
        get_preset("ctrl_vine").with_overrides(vine_split="words")
    with pytest.raises(ConfigError, match="vine_every=None must be set exactly when vine_split is 'every'"):
        get_preset("ctrl_vine").with_overrides(vine_split="every")
    assert get_preset("ctrl_vine").with_overrides(vine_split="every", vine_every=8).vine_every == 8


def test_vine_preset_advantages_through_the_preset():
    from rlvr.algorithms.presets import get_preset

    rewards, mask, values, splits = _case()
    p = get_preset("vineppo")
    adv, _ = p.advantages(rewards, mask, values=values, splits=splits)
    torch.testing.assert_close(adv, V.vine_advantages(rewards, mask, values, splits)[0])
