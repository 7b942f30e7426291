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
    values = torch.rand(B, T, generator=g) if p.critic or p.estimator == "vine" else None  # vine: MC values
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


# ---------------------------------------------------------------- new algorithms and registries

NEW = {"gspo", "cispo", "dapo", "vapo", "trpo", "dpo", "vineppo", "ctrl_vine"}
CONTROLLED_CRITIC = {"ctrl_critic"}  # critic trained on lambda = 1 targets (lam_critic)
OLD = sorted(set(PRESETS) - NEW - CONTROLLED_CRITIC)


def test_new_fields_default_off_for_existing_presets():
    from rlvr.algorithms.presets import check_rollout  # noqa: F401  (public entry point exists)

    defaults = {f.name: f.default for f in dataclasses.fields(Preset) if f.name in (
        "policy_loss", "update_rule", "lam_critic", "lam_length_alpha", "value_warmup_steps", "seq_is",
        "dynamic_sampling", "overlong_buffer")}
    assert defaults == dict(policy_loss="ppo_clip", update_rule="first_order", lam_critic=None, lam_length_alpha=None,
                            value_warmup_steps=0, seq_is=None, dynamic_sampling=False, overlong_buffer=None)
    for name in OLD:
        p = PRESETS[name]
        assert all(getattr(p, k) == v for k, v in defaults.items()), name


def test_extensions_name_what_a_core_loop_would_ignore():
    assert all(PRESETS[name].extensions() == {} for name in OLD)
    assert PRESETS["gspo"].extensions() == {"policy_loss": "gspo"}
    assert PRESETS["cispo"].extensions() == {"policy_loss": "cispo"}
    assert PRESETS["trpo"].extensions() == {"update_rule": "trpo"}
    assert PRESETS["dpo"].extensions() == {"update_rule": "dpo"}
    assert PRESETS["dapo"].extensions() == {"dynamic_sampling": True, "overlong_buffer": 0.2}
    assert PRESETS["vapo"].extensions() == {"lam_critic": 1.0, "lam_length_alpha": 0.05, "value_warmup_steps": 50}
    assert PRESETS["vineppo"].extensions() == PRESETS["ctrl_vine"].extensions() == {"vine_k": 9}
    assert get_preset("grpo").with_overrides(seq_is="mask").extensions() == {"seq_is": "mask"}


def test_new_presets_choices():
    assert NEW <= set(PRESETS)
    gspo, cispo, dapo, vapo, trpo, dpo = (PRESETS[k] for k in ("gspo", "cispo", "dapo", "vapo", "trpo", "dpo"))
    assert gspo.policy_loss == "gspo" and gspo.uses_groups and gspo.clip_high > gspo.clip_low and gspo.clip_high < 1e-3
    assert cispo.policy_loss == "cispo" and cispo.clip_low is None and cispo.clip_high == 0.28
    assert dapo.dynamic_sampling and dapo.clip_high > dapo.clip_low and dapo.loss_agg == "token-mean"
    assert dapo.overlong_buffer == 0.2 and dapo.overlong_cache_len(20480) == 4096 and not dapo.needs_reference
    assert vapo.critic and vapo.lam_critic == 1.0 and vapo.lam_length_alpha == 0.05 and vapo.value_warmup_steps > 0
    assert dpo.update_rule == "dpo" and dpo.needs_reference and dpo.uses_groups and not dpo.critic
    assert trpo.update_rule == "trpo" and trpo.critic and not trpo.clipped


def test_trpo_differs_from_ppo_only_in_the_update_rule():
    assert diff(PRESETS["ppo"], PRESETS["trpo"]) == {
        "clip_low": (0.2, None), "clip_high": (0.2, None), "epochs": (2, 1), "update_rule": ("first_order", "trpo"),
        "trpo_fvp_fraction": (1.0, 0.2),  # a setting of the update rule only (ppo never reads it)
    }


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_runs_its_registered_policy_loss(name):
    from rlvr.algorithms import POLICY_LOSSES

    p = PRESETS[name]
    g = torch.Generator().manual_seed(0)
    mask = torch.arange(5)[None] < torch.tensor([5, 2, 4, 3])[:, None]
    old = torch.randn(4, 5, generator=g)
    logp = (old + 0.05 * torch.randn(4, 5, generator=g)).requires_grad_(True)
    adv = torch.randn(4, generator=g)
    loss, stats = POLICY_LOSSES[p.policy_loss](logp, old, adv, mask, p.clip_low, p.clip_high, p.dual_clip, p.loss_agg)
    loss.backward()
    assert torch.isfinite(loss) and logp.grad[mask].abs().sum() > 0 and (logp.grad[~mask] == 0).all()


def test_check_rollout_group_size():
    from rlvr.algorithms import check_rollout

    with pytest.raises(ConfigError, match=r"preset grpo needs rollout.n >= 2 \(group baseline\), got 1"):
        check_rollout(get_preset("grpo"), 1)
    with pytest.raises(ConfigError, match=r"preset dpo needs rollout.n >= 2 \(preference pairs inside a group\)"):
        check_rollout(get_preset("dpo"), 1)
    with pytest.raises(ConfigError, match="dynamic sampling"):
        check_rollout(get_preset("ppo").with_overrides(dynamic_sampling=True), 1)
    for name in ("ppo", "reinforce", "trpo", "vapo", "reinforce_pp"):
        check_rollout(get_preset(name), 1)  # no groups needed
    for name in PRESETS:
        check_rollout(get_preset(name), 8, max_new_tokens=16)
    with pytest.raises(ConfigError, match="overlong_buffer=1.0 covers the whole generation budget"):
        check_rollout(get_preset("dapo").with_overrides(overlong_buffer=1.0), 8, max_new_tokens=16)
    with pytest.raises(ConfigError, match="rollout.n"):
        check_rollout(get_preset("ppo"), 0)


def test_registries_state_needs_and_keep_old_names():
    from rlvr.algorithms import ESTIMATORS, UPDATE_RULES, Registry
    from rlvr.algorithms.advantages import CRITIC_ESTIMATORS, GROUP_ESTIMATORS

    assert CRITIC_ESTIMATORS == ("td", "gae")
    assert GROUP_ESTIMATORS == ("grpo", "dr_grpo", "rloo", "reinforce_pp_baseline")
    assert ESTIMATORS.needs["gae"].critic and not ESTIMATORS.needs["gae"].groups
    assert set(UPDATE_RULES) == {"first_order", "trpo", "dpo"}
    reg = Registry("thing")
    f = reg.register("a", groups=True)(lambda: 1)
    reg.register("a", groups=True)(f)  # same function again: fine
    with pytest.raises(ValueError, match="thing 'a' is already registered"):
        reg.register("a")(lambda: 2)
    assert reg.names_needing("groups") == ("a",)


@pytest.mark.parametrize(
    "base,overrides,field",
    [
        ("grpo", dict(policy_loss="ppo2"), "policy_loss"),
        ("grpo", dict(update_rule="sgd"), "update_rule"),
        ("grpo", dict(lam_critic=1.0), "lam_critic"),  # needs a critic estimator
        ("ppo", dict(lam_critic=1.5), "lam_critic"),
        ("ppo", dict(lam_length_alpha=0.0), "lam_length_alpha"),
        ("grpo", dict(value_warmup_steps=5), "value_warmup_steps"),
        ("grpo", dict(seq_is="clip"), "seq_is"),
        ("grpo", dict(seq_is_low=3.0), "seq_is_low"),
        ("grpo", dict(overlong_buffer=0.0), "overlong_buffer"),
        ("grpo", dict(dynamic_sampling=1), "dynamic_sampling"),
        ("grpo", dict(policy_loss="gspo", dual_clip=3.0), "dual_clip"),
        ("ppo", dict(update_rule="trpo"), "clip_low"),  # the trust region replaces the clip
        ("trpo", dict(kl_old_coef=1.0), "kl_old_coef"),
        ("trpo", dict(trpo_max_kl=0.0), "trpo_max_kl"),
        ("trpo", dict(trpo_cg_iters=0), "trpo_cg_iters"),
        ("trpo", dict(trpo_backtrack_ratio=1.0), "trpo_backtrack_ratio"),
        ("trpo", dict(trpo_fvp_fraction=0.0), "trpo_fvp_fraction"),
        ("trpo", dict(trpo_fvp_fraction=1.5), "trpo_fvp_fraction"),
        ("dpo", dict(dpo_beta=-0.1), "dpo_beta"),
        ("dpo", dict(dpo_max_pairs_per_group=0), "dpo_max_pairs_per_group"),
        ("dpo", dict(estimator="gae", critic=True), "critic"),
        ("grpo", dict(clip_high=None), "clip_low"),  # ppo_clip: both bounds or neither
    ],
)
def test_bad_new_fields_raise_naming_the_field(base, overrides, field):
    with pytest.raises(ConfigError, match=field):
        get_preset(base).with_overrides(**overrides)


def test_cispo_may_leave_one_side_open():
    p = get_preset("cispo").with_overrides(clip_low=0.2, clip_high=None)
    assert (p.clip_low, p.clip_high) == (0.2, None)
