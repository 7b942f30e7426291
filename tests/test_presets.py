"""Presets: every preset builds and runs; the ladder turns on exactly one fix per rung; validation."""
import dataclasses

import pytest
import torch

from rlvr.algorithms import (
    LADDER,
    PRESETS,
    AdaptiveKLController,
    DoublingKLController,
    FixedKLController,
    Preset,
    get_preset,
    make_kl_controller,
    make_old_kl_controller,
    outcome_rewards,
    policy_loss,
)
from rlvr.errors import ConfigError

REQUIRED = {"ppo", "ppo_kl", "grpo", "dr_grpo", "rloo", "reinforce_pp", *LADDER}


def diff(a: Preset, b: Preset) -> dict:
    return {
        f.name: (getattr(a, f.name), getattr(b, f.name))
        for f in dataclasses.fields(Preset)
        if f.name not in ("name", "description") and getattr(a, f.name) != getattr(b, f.name)
    }


def test_all_presets_exist_and_are_named_by_their_key():
    assert REQUIRED <= set(PRESETS)
    for name, p in PRESETS.items():
        assert p.name == name and p.description
        assert get_preset(name) is p


def test_get_preset_unknown_lists_valid_names():
    with pytest.raises(ValueError, match="unknown preset 'ppo2'") as info:
        get_preset("ppo2")
    assert all(name in str(info.value) for name in PRESETS)


def test_ladder_turns_on_one_fix_per_rung():
    assert LADDER == ["reinforce", "reinforce_baseline", "a2c", "a2c_gae", "ppo_noclip", "ppo"]
    expected = [
        {"estimator": ("mc", "batch_mean")},  # + baseline
        {"estimator": ("batch_mean", "td"), "critic": (False, True)},  # + learned critic (TD residual)
        {"estimator": ("td", "gae")},  # + GAE(lambda)
        {"epochs": (1, 2)},  # + K > 1 importance-sampled epochs
        {"clip_low": (None, 0.2), "clip_high": (None, 0.2)},  # + clip
    ]
    for (a, b), want in zip(zip(LADDER, LADDER[1:]), expected):
        assert diff(PRESETS[a], PRESETS[b]) == want, (a, b)


def test_ppo_kl_differs_from_ppo_only_in_the_trust_region():
    d = diff(PRESETS["ppo"], PRESETS["ppo_kl"])
    assert set(d) == {"clip_low", "clip_high", "kl_old_coef", "kl_old_target"}
    assert PRESETS["ppo_kl"].clip_low is None and PRESETS["ppo_kl"].kl_old_coef > 0


def test_family_choices():
    ppo, grpo, dr, rloo, rpp = (PRESETS[k] for k in ("ppo", "grpo", "dr_grpo", "rloo", "reinforce_pp"))
    assert ppo.critic and ppo.estimator == "gae" and ppo.epochs > 1 and ppo.clip_low == 0.2
    assert not grpo.critic and grpo.uses_groups and grpo.kl_placement == "loss" and grpo.kl_kind == "k3"
    assert dr.loss_agg == "seq-mean-token-sum-norm" and dr.kl_placement == "none" and not dr.needs_reference
    assert rloo.uses_groups and rloo.estimator == "rloo"
    assert rpp.kl_placement == "reward" and rpp.kl_kind == "k1" and not rpp.uses_groups


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_runs_its_estimator_and_loss(name):
    p = PRESETS[name]
    g = torch.Generator().manual_seed(0)
    B, T = 8, 6
    mask = torch.arange(T)[None] < torch.tensor([6, 3, 5, 1, 6, 2, 4, 6])[:, None]
    rewards = outcome_rewards((torch.rand(B, generator=g) > 0.5).float(), mask)
    values = torch.rand(B, T, generator=g) if p.critic else None
    adv, returns = p.advantages(rewards, mask, values=values, group_ids=torch.arange(B) // 4)
    assert adv.shape == (B, T) and torch.isfinite(adv).all() and (adv[~mask] == 0).all()
    old = torch.randn(B, T, generator=g)
    logp = (old + 0.1 * torch.randn(B, T, generator=g)).requires_grad_(True)
    loss, stats = policy_loss(logp, old, adv, mask, p.clip_low, p.clip_high, p.dual_clip, p.loss_agg)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logp.grad).all() and "clip/inside" in stats


def test_with_overrides_returns_validated_copy():
    p = get_preset("grpo")
    q = p.with_overrides(clip_high=0.28, epochs=2)
    assert (q.clip_high, q.epochs) == (0.28, 2) and (p.clip_high, p.epochs) == (0.2, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "overrides,field",
    [
        (dict(clipp_low=0.1), "clipp_low"),
        (dict(gamma=1.5), "gamma"),
        (dict(lam=-0.1), "lam"),
        (dict(epochs=0), "epochs"),
        (dict(epochs=1.5), "epochs"),
        (dict(clip_low=None), "clip_high"),
        (dict(clip_low=1.0), "clip_low"),
        (dict(dual_clip=0.9), "dual_clip"),
        (dict(estimator="gae"), "critic"),
        (dict(estimator="q_learning"), "estimator"),
        (dict(kl_kind="k4"), "kl_kind"),
        (dict(kl_placement="everywhere"), "kl_placement"),
        (dict(adaptive_kl=True), "kl_target"),
        (dict(adaptive_kl=True, kl_target=0.01), "kl_horizon"),
        (dict(loss_agg="sum"), "loss_agg"),
        (dict(kl_coef=-1.0), "kl_coef"),
        (dict(kl_old_target=0.01), "kl_old_coef"),
        (dict(critic="yes"), "critic"),
        (dict(entropy_coef=float("nan")), "entropy_coef"),
    ],
)
def test_bad_overrides_raise_value_error_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field) as info:
        get_preset("grpo").with_overrides(**overrides)
    assert isinstance(info.value, ConfigError)


def test_kl_controllers_from_presets():
    assert isinstance(make_kl_controller(get_preset("grpo")), FixedKLController)
    assert make_kl_controller(get_preset("grpo")).value == 0.001
    assert make_kl_controller(get_preset("dr_grpo")).value == 0.0
    ada = get_preset("ppo").with_overrides(adaptive_kl=True, kl_target=0.05, kl_horizon=10000)
    assert isinstance(make_kl_controller(ada), AdaptiveKLController)
    old = make_old_kl_controller(get_preset("ppo_kl"))
    assert isinstance(old, DoublingKLController) and old.value == 1.0 and old.target == 0.01
    assert make_old_kl_controller(get_preset("ppo")).value == 0.0
