"""Update rules run by the trainer on a real (tiny random) model: TRPO's trust region, DPO from
verifier pairs and from a file, DAPO's dynamic sampling, and the rule registry."""
import json
import math
from pathlib import Path

import pytest
import torch

import verifiers
from rlvr import algorithms as A
from rlvr.config import from_dict
from rlvr.errors import ConfigError, DataError
from rlvr.trainer import Trainer
from rlvr.updates import UPDATES


@verifiers.register("test_updates_parity")
def _parity(completion: str, reference) -> float:
    """Mixed rewards for a random-weight model: 1 for an even-length completion."""
    return float(len(completion) % 2 == 0)


@verifiers.register("test_updates_half_mixed")
def _half_mixed(completion: str, reference) -> float:
    """Length parity for about half of the prompts, 0 for the others (their groups are all-wrong)."""
    return float(len(completion) % 2 == 0) if sum(map(ord, str(reference))) % 2 == 0 else 0.0


def tiny(tmp_path, verifier="test_updates_parity", **over):
    tree = {
        "model": {"name": "tiny-random"},
        "data": {"train": "arithmetic:add2", "train_limit": 64},
        "rollout": {"n": 4, "max_new_tokens": 6, "micro_batch_size": 16},
        "reward": {"workers": 0, "verifier": verifier},
        "trainer": {"total_steps": 2, "prompts_per_step": 2, "micro_batch_size": 3, "lr": 1e-3,
                    "critic_lr": 1e-3, "output_dir": str(tmp_path / "run"), "progress": False,
                    "tensorboard": False},
    }
    return from_dict(tree, [f"{k}={v}" for k, v in over.items()])


def spy_update(tr):
    """Record the UpdateInputs of every update (the batch, pi_old, advantages... the rule sees)."""
    seen = []
    real = tr.update_rule

    def wrapper(learner, inputs):
        seen.append(inputs)
        return real(learner, inputs)

    tr.update_rule = wrapper
    return seen


def trainable(tr):
    return {n: p.detach().clone() for n, p in tr.policy.named_parameters() if p.requires_grad}


def test_every_update_rule_has_a_driver():
    assert set(UPDATES) == set(A.UPDATE_RULES)


# ----------------------------------------------------------------------------- TRPO
def _surrogate_and_kl(tr, x):
    """L = token-mean r_t A_t (the unclipped surrogate) and token-mean k3(pi_old || pi) on the batch."""
    N = x.mask.shape[0]
    logp = tr.learner.no_grad_pass(lambda s: tr.learner.logprobs(tr.policy, x.batch, s), N)
    loss, _ = A.policy_loss(logp, x.old_logp, x.adv, x.mask, None, None, agg="token-mean")
    kl = A.aggregate(A.kl_estimate(x.old_logp, logp, "k3"), x.mask, "token-mean")
    return -float(loss), float(kl)


@pytest.mark.parametrize("critic", [True, False])
def test_trpo_step_stays_in_the_trust_region_and_improves_the_surrogate(tmp_path, critic):
    over = {"algorithm.preset": "trpo", "algorithm.trpo_max_kl": 0.005}
    if not critic:  # TRPO without a critic: a group baseline
        over.update({"algorithm.estimator": "grpo", "algorithm.critic": False})
    tr = Trainer(tiny(tmp_path, **over))
    seen = spy_update(tr)
    before = trainable(tr)
    m = tr.train_step()
    x = seen[0]
    surr, kl = _surrogate_and_kl(tr, x)
    surr_old = float(A.aggregate(x.adv, x.mask, "token-mean"))  # r = 1 at theta_old
    if m["trpo/accepted"]:
        assert kl <= 0.005 * (1 + 1e-4), kl
        assert surr > surr_old, (surr, surr_old)
        assert m["trpo/kl"] == pytest.approx(kl, rel=1e-3, abs=1e-7)
        assert m["trpo/improvement"] == pytest.approx(surr - surr_old, rel=1e-3, abs=1e-7)
        assert any(not torch.equal(before[n], p) for n, p in trainable(tr).items())
    else:
        assert all(torch.equal(before[n], p) for n, p in trainable(tr).items())
    assert (trainer_has_critic := tr.critic is not None) == critic
    if trainer_has_critic:
        assert "loss/value" in m and "value/grad_norm" in m  # the critic takes first-order steps


def test_trpo_rejected_step_leaves_the_weights_bit_identical(tmp_path, monkeypatch):
    import rlvr.updates.trpo as rule

    real = rule.kl_estimate
    # every trial point reports KL >= 1 > delta (a constant shift: g and F v are unchanged)
    monkeypatch.setattr(rule, "kl_estimate", lambda *a, **k: real(*a, **k) + 1.0)
    tr = Trainer(tiny(tmp_path, **{"algorithm.preset": "trpo"}))
    before = trainable(tr)
    critic_before = [p.detach().clone() for p in tr.critic.parameters() if p.requires_grad]
    m = tr.train_step()
    assert m["trpo/accepted"] == 0.0 and m["trpo/step_frac"] == 0.0 and m["trpo/grad_norm"] > 0
    assert all(torch.equal(before[n], p) for n, p in trainable(tr).items())
    critic_after = [p for p in tr.critic.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(critic_before, critic_after))  # the critic still learned


def test_fisher_rows_spread_evenly_over_the_batch():
    import rlvr.updates.trpo as rule

    assert torch.equal(rule.fisher_rows(8, 1.0), torch.arange(8))
    rows = rule.fisher_rows(64, 0.25)
    assert len(rows) == 16 and rows[0] == 0 and rows[-1] == 63 and bool((rows.diff() >= 4).all())
    assert torch.equal(rule.fisher_rows(64, 0.001), torch.tensor([0]))
    assert len(rule.fisher_rows(0, 0.2)) == 0


@pytest.mark.parametrize("head_trains", [True, False])
def test_trpo_fisher_products_build_one_graph_and_equal_double_backprop_of_the_kl(tmp_path, head_trains):
    """F v from the kept head-free graph equals the Hessian-vector product of the token-mean k3
    KL(pi_old || pi) at theta_old (built anew through the LM head for each v), on the subsample only."""
    import dataclasses

    import rlvr.updates.trpo as rule
    from torch.nn.attention import SDPBackend, sdpa_kernel

    over = {"algorithm.preset": "trpo"} if head_trains else {"algorithm.preset": "trpo", "model.trainable_layers": 1}
    tr = Trainer(tiny(tmp_path, **over))
    head = tr.policy.get_output_embeddings().weight
    assert head.requires_grad == head_trains  # tied embedding: trained only when every layer is
    seen = spy_update(tr)
    tr.train_step()
    x = seen[0]
    N = x.mask.shape[0]
    params = [q for q in tr.policy.parameters() if q.requires_grad]
    # theta_old := the current weights (the KL's minimum, where its Hessian is the Fisher matrix)
    x = dataclasses.replace(x, old_logp=tr.learner.no_grad_pass(lambda s: tr.learner.logprobs(tr.policy, x.batch, s), N))
    rows = rule.fisher_rows(N, 0.5)
    assert len(rows) == 4  # 8 samples; micro_batch_size 3 -> 2 micro-batches
    forwards = []
    real = tr.learner.logprobs
    tr.learner.logprobs = lambda *a, **k: forwards.append(1) or real(*a, **k)
    fvp = rule.fisher_product(tr.learner, x, rows, params, damping=0.0)
    gen = torch.Generator().manual_seed(0)
    vs = [torch.randn(sum(q.numel() for q in params), generator=gen) for _ in range(3)]
    out = [fvp(v) for v in vs]
    assert len(forwards) == 2  # one forward per micro-batch for all three products
    tr.learner.logprobs = real

    def kl_fn():  # the k3 KL on the same rows, in one piece, through the LM head
        logp = tr.learner.logprobs(tr.policy, x.batch, rows)
        return A.aggregate(A.kl_estimate(x.old_logp[rows], logp, "k3"), x.mask[rows], "token-mean")

    for v, o in zip(vs, out):
        with sdpa_kernel(SDPBackend.MATH):
            ref = A.fisher_vector_product(kl_fn, params, damping=0.0)(v)
        assert float(ref.norm()) > 0
        assert float((o - ref).norm()) <= 1e-4 * float(ref.norm()), float((o - ref).norm() / ref.norm())
        assert float(v @ o) > 0  # F is positive semi-definite
    assert float((fvp(vs[0]) - out[0]).abs().max()) == 0.0  # the kept graph is unchanged by use


def test_trpo_with_a_shared_trunk_critic_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="critic_shared_trunk"):
        tiny(tmp_path, **{"algorithm.preset": "trpo", "model.critic_shared_trunk": True})


# ----------------------------------------------------------------------------- DPO
def _chosen_rejected_logp(tr, x, pairs):
    N = x.mask.shape[0]
    logp = tr.learner.no_grad_pass(lambda s: tr.learner.logprobs(tr.policy, x.batch, s), N)
    seq = A.sequence_logp(logp, x.mask)
    return seq[pairs.chosen], seq[pairs.rejected]


def test_dpo_starts_at_log_2_and_raises_the_chosen_log_probs(tmp_path):
    tr = Trainer(tiny(tmp_path, **{"algorithm.preset": "dpo", "trainer.lr": 1e-4}))
    seen = spy_update(tr)
    m = tr.train_step()
    x = seen[0]
    pairs = A.verifier_pairs(x.scores, x.batch["group_ids"])
    assert m["dpo/pairs"] == len(pairs.chosen) > 0
    assert m["dpo/groups_without_pair"] == pairs.groups_without_pair / pairs.groups
    # one mini-batch: the loss logged is the loss at the first step, where pi == pi_ref
    assert m["loss/policy"] == pytest.approx(math.log(2), abs=1e-5)
    assert m["dpo/margin"] == pytest.approx(0.0, abs=1e-4)
    ref_w = A.sequence_logp(x.ref_logp, x.mask)[pairs.chosen]
    ref_l = A.sequence_logp(x.ref_logp, x.mask)[pairs.rejected]
    new_w, new_l = _chosen_rejected_logp(tr, x, pairs)
    assert float((new_w - ref_w).sum()) > 0  # the chosen completions became more likely
    assert float(((new_w - ref_w) - (new_l - ref_l)).mean()) > 0  # and the preference margin grew
    loss_after = float(A.dpo_loss(new_w, new_l, ref_w, ref_l, beta=tr.preset.dpo_beta)[0])
    assert loss_after < math.log(2)


def test_dpo_reports_groups_without_a_pair_and_skips_without_any(tmp_path):
    @verifiers.register("test_updates_zero")
    def _zero(completion: str, reference) -> float:
        return 0.0

    tr = Trainer(tiny(tmp_path, verifier="test_updates_zero", **{"algorithm.preset": "dpo"}))
    before = trainable(tr)
    m = tr.train_step()
    assert m["dpo/pairs"] == 0.0 and m["dpo/groups_without_pair"] == 1.0
    assert all(torch.equal(before[n], p) for n, p in trainable(tr).items())


def _write_pairs(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_offline_dpo_from_a_jsonl(tmp_path):
    rows = [{"prompt": f"What is {a} + {a}?", "chosen": f"The answer is {2 * a}.", "rejected": f"It is {2 * a + 1}."}
            for a in range(5)]
    path = _write_pairs(tmp_path / "pairs.jsonl", rows)
    cfg = tiny(tmp_path, **{"algorithm.preset": "dpo", "data.pairs": str(path), "trainer.prompts_per_step": 3,
                            "rollout.max_new_tokens": 16})
    tr = Trainer(cfg)
    seen = spy_update(tr)
    before = trainable(tr)
    m = tr.train_step()
    x = seen[0]
    assert x.batch["group_ids"].tolist() == [0, 0, 1, 1, 2, 2] and x.scores.tolist() == [1, 0] * 3
    assert m["dpo/pairs"] == 3.0 and m["dpo/groups_without_pair"] == 0.0
    assert m["loss/policy"] == pytest.approx(math.log(2), abs=1e-5)
    assert any(not torch.equal(before[n], p) for n, p in trainable(tr).items())
    # the completions are the file's text, tokenised, each ending in EOS
    tok = tr.tokenizer
    first = x.batch["input_ids"][0, -x.mask.shape[1]:][x.batch["response_mask"][0] > 0].tolist()
    assert first[-1] == tok.eos_token_id and tok.decode(first[:-1]) in {r["chosen"] for r in rows}
    summary = tr.train()  # and through the loop
    assert summary["steps"] == 2


def test_offline_dpo_bad_row_is_reported_with_file_and_line(tmp_path):
    path = _write_pairs(tmp_path / "pairs.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"},
                                                   {"prompt": "p", "chosen": "a"}])
    with pytest.raises(DataError, match=r"pairs.jsonl:2: missing field 'rejected'"):
        Trainer(tiny(tmp_path, **{"algorithm.preset": "dpo", "data.pairs": str(path)}))


def test_offline_pairs_need_a_pairwise_preset(tmp_path):
    path = _write_pairs(tmp_path / "pairs.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}])
    with pytest.raises(ConfigError, match="data.pairs needs a pairwise preset"):
        tiny(tmp_path, **{"algorithm.preset": "grpo", "data.pairs": str(path)})


# ----------------------------------------------------------------------------- DAPO
def test_dapo_dynamic_sampling_returns_a_full_batch_of_mixed_groups(tmp_path):
    cfg = tiny(tmp_path, verifier="test_updates_half_mixed",
               **{"algorithm.preset": "dapo", "trainer.prompts_per_step": 4, "algorithm.dynamic_sampling_max_rounds": 8})
    tr = Trainer(cfg)
    seen = spy_update(tr)
    rounds = []
    for _ in range(2):
        samples_before = tr.samples
        m = tr.train_step()
        x = seen[-1]
        gid = x.batch["group_ids"]
        assert len(torch.unique(gid)) == 4 and len(gid) == 16  # a full batch: 4 groups of n = 4
        assert bool(A.mixed_groups(x.scores, gid).all())  # every group mixed (after the soft penalty too)
        assert m["dapo/batch_fill"] == 1.0
        generated = tr.samples - samples_before
        assert generated >= 16 and (generated > 16) == (m["dapo/rounds"] > 0)  # dropped samples still count
        rounds.append(m["dapo/rounds"])
    assert max(rounds) >= 1  # about half the groups are all-wrong: refills were needed


def test_dapo_without_refills_trains_on_the_mixed_groups_it_has(tmp_path):
    cfg = tiny(tmp_path, verifier="test_updates_half_mixed",
               **{"algorithm.preset": "dapo", "trainer.prompts_per_step": 8, "algorithm.dynamic_sampling_max_rounds": 0})
    tr = Trainer(cfg)
    seen = spy_update(tr)
    m = tr.train_step()
    assert m["dapo/rounds"] == 0.0 and m["dapo/batch_fill"] < 1.0
    gid = seen[0].batch["group_ids"]
    assert len(torch.unique(gid)) == round(8 * m["dapo/batch_fill"]) and bool(A.mixed_groups(seen[0].scores, gid).all())
    assert tr.samples == 32


def test_dapo_soft_overlong_penalty_enters_the_scores(tmp_path):
    # every tiny-model sample runs to the 6-token budget: L_cache = round(0.5 * 6) = 3, penalty
    # ((6 - 3) - 6) / 3 = -1 on every sample
    cfg = tiny(tmp_path, **{"algorithm.preset": "dapo", "algorithm.overlong_buffer": 0.5,
                            "algorithm.dynamic_sampling": False})
    tr = Trainer(cfg)
    seen = spy_update(tr)
    m = tr.train_step()
    lengths = seen[0].batch["response_mask"].sum(1)
    want = A.overlong_penalty(lengths, 6, 3)
    assert m["overlong/penalty_mean"] == pytest.approx(float(want.mean()))
    assert set(seen[0].scores.tolist()) <= {0.0 + float(w) for w in want} | {1.0 + float(w) for w in want}


# ----------------------------------------------------------------------------- the studies' entry points
def test_ladder_runs_trpo_as_the_comparator_of_ppo():
    import argparse

    from evals.compare import settings_that_differ
    from rlvr.algorithms.presets import LADDER
    from rlvr.commands.compare import plan
    from rlvr.config import load_config

    presets, seeds = plan(argparse.Namespace(ladder=True, controlled=False, presets="", seeds=2))
    assert presets == [*LADDER, "trpo", "grpo"] and seeds == [0, 1]
    cfg = load_config(Path(__file__).resolve().parents[1] / "recipes" / "ladder.yaml")
    diff = settings_that_differ(cfg, ["ppo", "trpo"])  # same estimator, critic and reward KL as ppo
    assert {"algorithm.update_rule", "algorithm.epochs", "algorithm.clip_low", "algorithm.clip_high"} <= set(diff)
    assert not {"algorithm.estimator", "algorithm.critic", "algorithm.kl_coef", "algorithm.lam"} & set(diff)
    new = "trpo,dpo,dapo,vapo,gspo,cispo"
    assert plan(argparse.Namespace(ladder=False, controlled=False, presets=new, seeds=1))[0] == new.split(",")


@pytest.mark.slow
def test_compare_runs_trpo_and_dpo_through_rlvr_train(tmp_path):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        "model: {name: tiny-random}\n"
        "data: {train: 'arithmetic:add2', train_limit: 64, eval: 'arithmetic:add2', eval_limit: 4}\n"
        "rollout: {n: 4, max_new_tokens: 6}\n"
        "reward: {workers: 0}\n"
        "trainer: {total_steps: 1, prompts_per_step: 2, micro_batch_size: 4, lr: 1.0e-3, critic_lr: 1.0e-3,"
        " progress: false, tensorboard: false}\n")
    out = tmp_path / "cmp"
    res = subprocess.run([sys.executable, "-m", "rlvr.cli", "compare", str(recipe), "--presets", "trpo,dpo",
                          "--seeds", "1", "--out", str(out), "--no-base-eval"], capture_output=True, text=True,
                         timeout=900, env={**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    for preset in ("trpo", "dpo"):
        summary = json.loads((out / preset / "seed0" / "summary.json").read_text())
        assert summary["preset"] == preset and summary["steps"] == 1
        assert summary["final_eval/pass@1"] is not None  # the command layer wired the evals harness in


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["trpo", "dpo", "dapo"])
def test_one_step_on_smollm2(tmp_path, smollm2_path, preset):
    cfg = from_dict({
        "model": {"name": smollm2_path, "trainable_layers": 4},
        "data": {"train": "arithmetic:add2", "train_limit": 16},
        "rollout": {"n": 4, "max_new_tokens": 16, "micro_batch_size": 8},
        "reward": {"workers": 0, "verifier": "test_updates_parity"},
        "algorithm": {"preset": preset},
        "trainer": {"total_steps": 1, "prompts_per_step": 2, "micro_batch_size": 4, "lr": 1e-5,
                    "critic_lr": 1e-5, "output_dir": str(tmp_path / "run"), "progress": False,
                    "tensorboard": False},
    })
    tr = Trainer(cfg)
    assert tr.learner.top_k == 4  # the frozen-prefix fast path is on for every pass of the rule
    before = trainable(tr)
    m = tr.train_step()
    moved = any(not torch.equal(before[n], p) for n, p in trainable(tr).items())
    if preset == "trpo":
        assert moved == bool(m["trpo/accepted"])
        assert not moved or m["trpo/kl"] <= tr.preset.trpo_max_kl * (1 + 1e-4)
    elif preset == "dpo":
        assert m["dpo/pairs"] == 0 or (moved and m["loss/policy"] == pytest.approx(math.log(2), abs=1e-3))
    else:
        assert moved and m["dapo/batch_fill"] > 0 and "overlong/penalty_mean" in m


def _count_generated(tr):
    """Record (samples, response tokens) of every batch the engine generates."""
    seen = []
    real = tr.engine.generate

    def wrapper(prompts, params):
        ro = real(prompts, params)
        seen.append((len(ro), ro.num_tokens))
        return ro

    tr.engine.generate = wrapper
    return seen


@pytest.mark.parametrize("verifier", ["test_updates_half_mixed", "test_updates_never"])
def test_dapo_counts_every_generated_sample_and_token(tmp_path, verifier):
    """With no mixed group within the refill cap the refill rounds were not counted (budgets matched
    on samples/tokens then favoured dapo); every generated sample and token counts."""
    verifiers.register("test_updates_never", lambda completion, reference: 0.0, overwrite=True)
    cfg = tiny(tmp_path, verifier=verifier, **{"algorithm.preset": "dapo", "trainer.prompts_per_step": 4,
                                               "algorithm.dynamic_sampling_max_rounds": 3})
    tr = Trainer(cfg)
    seen = _count_generated(tr)
    rounds = 0.0
    for _ in range(2):
        first = len(seen)
        m = tr.train_step()
        rounds += m["dapo/rounds"]
        # throughput over every generated token too (it was the kept batch's tokens only)
        step_tokens = sum(k for _, k in seen[first:])
        assert m["tokens_per_s"] == pytest.approx(step_tokens / m["time/generate"], rel=1e-6)
    assert len(seen) == 2 + rounds and rounds >= 1
    assert tr.samples == sum(n for n, _ in seen) and tr.tokens == sum(k for _, k in seen)
    if verifier == "test_updates_never":
        assert rounds == 6 and tr.samples == 16 * 2 + 4 * 4 * 6  # every round refills 4 prompts x n = 4


# ----------------------------------------------------------------------------- PPO-KL
@pytest.mark.parametrize("lr,rule", [(1e-4, "double"), (5e-5, "keep"), (1e-6, "halve")])
def test_ppo_kl_controller_follows_the_kl_after_the_update(tmp_path, lr, rule):
    """Schulman et al. 2017 eq. 8: after the epochs, d = KL[pi_old, pi_new] decides beta. It was fed
    the mean of the KLs seen before each optimizer step (the first exactly 0): measured at lr 1e-4,
    d = 0.046 but 0.006 fed, so beta was halved where the rule doubles it."""
    tr = Trainer(tiny(tmp_path, **{"algorithm.preset": "ppo_kl", "trainer.lr": lr, "trainer.micro_batch_size": 4}))
    seen = spy_update(tr)
    beta, target = tr.learner.kl_old_ctl.value, tr.preset.kl_old_target
    m = tr.train_step()
    x = seen[0]
    N = x.mask.shape[0]
    logp = tr.learner.no_grad_pass(lambda s: tr.learner.logprobs(tr.policy, x.batch, s), N)
    kl = float(A.aggregate(A.kl_estimate(x.old_logp, logp, "k3", clamp=tr.cfg.algorithm.kl_clamp), x.mask,
                           "token-mean"))
    assert m["kl/old_after"] == pytest.approx(kl, rel=1e-4, abs=1e-9)
    if rule == "double":
        assert kl > 1.5 * target and tr.learner.kl_old_ctl.value == 2 * beta, (kl, m.get("kl/old"))
    elif rule == "keep":
        assert target / 1.5 <= kl <= 1.5 * target and tr.learner.kl_old_ctl.value == beta, (kl, m.get("kl/old"))
    else:
        assert kl < target / 1.5 and tr.learner.kl_old_ctl.value == beta / 2
    assert m["kl/old_coef"] == tr.learner.kl_old_ctl.value


def test_kl_to_pi_old_is_clamped_in_the_ppo_kl_penalty_and_the_trpo_line_search(tmp_path):
    """k3 reaches 4.9e8 at a log-ratio of 20; the trust-region terms bound it per token like the
    reference KL (algorithm.kl_clamp, verl's low_var_kl)."""
    from rlvr.algorithms import objective
    import rlvr.updates.trpo as rule

    tr = Trainer(tiny(tmp_path, **{"algorithm.preset": "ppo_kl"}))
    old = torch.zeros(1, 3)
    new = torch.tensor([[20.0, 0.0, 0.0]], requires_grad=True)  # one token e^20 times likelier now
    mask = torch.ones(1, 3)
    loss, _ = objective.micro_batch_loss(tr.preset, mask, logp=new, old_logp=old, advantages=torch.zeros(1, 3),
                                         kl_old_coef=1.0, kl_clamp=10.0, num_tokens=3.0)
    assert float(loss) == pytest.approx(10.0 / 3, rel=1e-5)
    x = type("X", (), {"old_logp": old, "mask": mask})()
    assert float(rule._k3_kl(x, slice(None), new, 3.0, clamp=10.0)) == pytest.approx(10.0 / 3, rel=1e-5)


def test_dpo_drops_pairs_with_a_side_that_has_no_trained_token(tmp_path):
    """overlong=mask zeroes a truncated completion's loss mask: its side then contributed 0 and the
    pair trained the other side alone, while dpo/pairs still counted it."""
    long = " ".join(["and then"] * 20)
    rows = [{"prompt": "What is 1 + 1?", "chosen": f"The answer is 2 {long}.", "rejected": "It is 3."},
            {"prompt": "What is 2 + 2?", "chosen": "4", "rejected": f"It is 5 {long}."},
            {"prompt": "What is 3 + 3?", "chosen": "6", "rejected": "7"}]
    path = _write_pairs(tmp_path / "pairs.jsonl", rows)
    over = {"algorithm.preset": "dpo", "data.pairs": str(path), "algorithm.overlong": "mask",
            "rollout.max_new_tokens": 8, "trainer.lr": 1e-4}
    tr = Trainer(tiny(tmp_path, **over, **{"trainer.prompts_per_step": 3}))
    seen = spy_update(tr)
    m = tr.train_step()
    x = seen[0]
    assert int((x.mask.sum(1) == 0).sum()) == 2  # the two truncated sides (the pairs come shuffled)
    assert m["dpo/pairs"] == 1.0 and m["dpo/dropped_pairs"] == 2.0
    assert m["loss/policy"] == pytest.approx(math.log(2), abs=1e-5)
    # only truncated pairs: nothing to train on, the policy stays as it was
    path = _write_pairs(tmp_path / "pairs.jsonl", rows[:2])
    tr = Trainer(tiny(tmp_path, **over, **{"trainer.prompts_per_step": 2}))
    before = trainable(tr)
    m = tr.train_step()
    assert m["dpo/pairs"] == 0.0 and m["dpo/dropped_pairs"] == 2.0
    assert all(torch.equal(before[n], p) for n, p in trainable(tr).items())
