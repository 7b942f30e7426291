"""The comparison harness: fixed held-out items, controlled presets, logs that never mix attempts,
the frozen-prefix fast path, and the training-step fixes a fair PPO-vs-GRPO answer depends on."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rlvr import algorithms as A
from rlvr.algorithms.presets import CONTROLLED, PRESETS
from rlvr.config import from_dict, load_config
from rlvr.data import load_eval_examples
from rlvr.errors import ConfigError
from rlvr.metrics import PhaseTimer
from rlvr.trainer import Trainer
from tiny import tiny_cfg as tiny

ROOT = Path(__file__).resolve().parents[1]


def rows(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


# ----------------------------------------------------------------------------- held-out items
def test_eval_items_do_not_depend_on_the_training_seed(tmp_path):
    ids = []
    for seed in (0, 1, 2):
        cfg = tiny(tmp_path, **{"data.eval": "arithmetic:add2", "data.eval_limit": 64, "trainer.seed": seed})
        ids.append([e.id for e in load_eval_examples(cfg)])
    assert ids[0] == ids[1] == ids[2] and len(set(ids[0])) == 64
    other = tiny(tmp_path, **{"data.eval": "arithmetic:add2", "data.eval_limit": 64, "data.eval_seed": 5})
    assert [e.id for e in load_eval_examples(other)] != ids[0]  # the recipe decides the items


def test_trainer_evaluates_the_recipe_items_for_every_seed(tmp_path):
    seen = []
    for seed in (0, 1):
        cfg = tiny(tmp_path, **{"data.eval": "arithmetic:add2", "data.eval_limit": 8, "trainer.seed": seed,
                                "trainer.output_dir": str(tmp_path / f"s{seed}")})
        seen.append([e.id for e in Trainer(cfg).eval_examples])
    assert seen[0] == seen[1]


# ----------------------------------------------------------------------------- controlled presets
def test_controlled_presets_differ_only_in_the_baseline():
    from evals.compare import settings_that_differ

    cfg = load_config(ROOT / "recipes" / "quickstart.yaml")
    diff = settings_that_differ(cfg, CONTROLLED)
    assert set(diff) == {"algorithm.estimator", "algorithm.critic", "algorithm.lam_critic", "algorithm.vine_k"}
    assert diff["algorithm.estimator"] == {"ctrl_critic": "gae", "ctrl_group": "grpo", "ctrl_loo": "rloo",
                                           "ctrl_vine": "vine"}
    stock = settings_that_differ(cfg, ["ppo", "grpo"])  # the stock pair is confounded, and says so
    for key in ("algorithm.epochs", "algorithm.loss_agg", "algorithm.estimator", "algorithm.critic"):
        assert key in stock


def test_controlled_advantages_have_the_same_scale():
    """At 10% accuracy GRPO's unwhitened advantages are ~3x GAE's; the controlled presets whiten."""
    g = torch.Generator().manual_seed(0)
    scores = (torch.rand(64, generator=g) < 0.1).float()
    scores[::8] = 1.0  # every group mixed
    gid = torch.arange(64) // 8
    mask = torch.ones(64, 5)
    rew = A.outcome_rewards(scores, mask)
    values = torch.full((64, 5), 0.1)
    stds = {}
    for name in CONTROLLED:
        p = PRESETS[name]
        mc = p.mc_values  # Monte-Carlo values at the prompt's end only (one step): R - V(s_0)
        splits = torch.zeros_like(mask, dtype=torch.bool)
        splits[:, 0] = True
        adv, _ = p.advantages(rew, mask, values=values if p.critic or mc else None, group_ids=gid,
                              splits=splits if mc else None)
        stds[name] = float(adv[mask > 0].std())
    assert all(abs(s - 1.0) < 0.02 for s in stds.values()), stds


def test_compare_prints_the_settings_that_differ_and_accepts_overrides_after_options(tmp_path):
    out = tmp_path / "cmp"
    recipe = _write_recipe(tmp_path, steps=1)
    proc = subprocess.run([sys.executable, "-m", "rlvr.cli", "compare", str(recipe), "--controlled",
                           "--seeds", "1", "--out", str(out), "trainer.prompts_per_step=1",
                           "--no-base-eval", "rollout.max_new_tokens=3"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]  # overrides after options are accepted
    assert "settings that differ between the compared runs:" in proc.stdout
    assert "algorithm.estimator: ctrl_critic=gae, ctrl_group=grpo, ctrl_loo=rloo, ctrl_vine=vine" in proc.stdout
    manifest = json.loads((out / "compare.json").read_text())
    assert set(manifest["differences"]) == {"algorithm.estimator", "algorithm.critic", "algorithm.lam_critic",
                                            "algorithm.vine_k"}


# ----------------------------------------------------------------------------- logs never mix attempts
def test_fresh_start_sets_earlier_logs_aside(tmp_path):
    cfg = tiny(tmp_path)
    run = Path(cfg.trainer.output_dir)
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in range(1, 11)))
    Trainer(cfg).train()
    steps = [r["step"] for r in rows(run / "metrics.jsonl")]
    assert steps == [1, 2]
    assert len(rows(run / "attempts" / "1" / "metrics.jsonl")) == 10


def _write_recipe(tmp_path, steps):
    verifier = tmp_path / "parity.py"
    verifier.write_text("def score(completion, reference):\n    return float(len(completion) % 2 == 0)\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "model: {name: tiny-random}\ndata: {train: arithmetic:add2, train_limit: 64}\n"
        "rollout: {n: 4, max_new_tokens: 8}\n"
        f"reward: {{workers: 1, verifier: '{verifier}:score'}}\n"
        f"trainer: {{total_steps: {steps}, prompts_per_step: 4, micro_batch_size: 8, lr: 1.0e-3, tensorboard: false}}\n")
    return recipe


@pytest.mark.slow
def test_interrupted_compare_checkpoints_and_resumes_without_mixing_logs(tmp_path):
    recipe = _write_recipe(tmp_path, steps=60)
    out = tmp_path / "cmp"
    cmd = [sys.executable, "-m", "rlvr.cli", "compare", str(recipe), "--presets", "grpo", "--seeds", "1",
           "--out", str(out), "--no-base-eval"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    metrics = out / "grpo" / "seed0" / "metrics.jsonl"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 2):
            time.sleep(0.2)
        if not metrics.is_file():
            proc.kill()  # its run dies with it (PR_SET_PDEATHSIG), so nothing keeps training past the test
            pytest.fail(f"no step logged after 300 s\n{proc.communicate()[1][-2000:]}")
        proc.send_signal(signal.SIGINT)  # as a Ctrl-C would
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 2 and "interrupted during grpo/seed0" in err
    ckpts = list((out / "grpo" / "seed0" / "checkpoints").glob("step_*"))
    assert ckpts, "the child was not given the chance to checkpoint"
    stopped_at = max(int(p.name[5:]) for p in ckpts)
    assert [r["step"] for r in rows(metrics)] == list(range(1, stopped_at + 1))
    # continue to the end (a shorter budget so the test stays short)
    done = subprocess.run(cmd + [f"trainer.total_steps={stopped_at + 2}"], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [r["step"] for r in rows(metrics)] == list(range(1, stopped_at + 3))


def test_plain_progress_lines_when_stdout_is_not_a_terminal(tmp_path):
    recipe = _write_recipe(tmp_path, steps=2)
    proc = subprocess.run([sys.executable, "-m", "rlvr.cli", "train", str(recipe),
                           f"trainer.output_dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [x for x in proc.stdout.splitlines() if x.startswith("step ")]
    assert [x.split()[1] for x in lines] == ["1/2", "2/2"]
    assert "reward=" in lines[0]


# ----------------------------------------------------------------------------- step-level fixes
def _spy(trainer, name):
    calls = []
    real = getattr(trainer, name)

    def wrapper(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    setattr(trainer, name, wrapper)
    return calls


def _batch(trainer, N=8, R=3):
    """A hand-built batch: 2 groups of 4, prompt of 5 tokens, responses of R tokens."""
    g = torch.Generator().manual_seed(0)
    P = 5
    ids = torch.randint(10, 200, (N, P + R), generator=g)
    return {
        "input_ids": ids, "attention_mask": torch.ones(N, P + R, dtype=torch.long),
        "response_mask": torch.ones(N, R), "sampler_logprobs": torch.zeros(N, R),
        "finished": torch.ones(N, dtype=torch.bool), "group_ids": torch.arange(N) // 4,
    }


def test_overlong_mask_keeps_truncated_scores_in_the_group_statistics(tmp_path):
    cfg = tiny(tmp_path, **{"algorithm.preset": "dr_grpo", "algorithm.overlong": "mask"})
    tr = Trainer(cfg)
    batch = _batch(tr)
    scores = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    loss_mask = batch["response_mask"].clone()
    loss_mask[1] = 0  # sample 1 was truncated (its score, 1, still counts in its group's mean)
    calls = _spy(tr, "update_rule")
    tr._learn(batch, scores, loss_mask, PhaseTimer())
    adv = calls[0][0][1].adv  # the UpdateInputs handed to the update rule
    # group 0 mean is 0.5 with the truncated sample's real score (it was 0.25 when masked to 0)
    assert torch.allclose(adv[0], torch.full((3,), 0.5)) and torch.allclose(adv[2], torch.full((3,), -0.5))
    assert torch.equal(adv[1], torch.zeros(3))  # and it is not trained on


def test_overlong_penalty_applies_before_the_zero_std_filter(tmp_path):
    """Truncated samples get the penalty first; a group made mixed by it is not filtered."""
    cfg = tiny(tmp_path, **{"algorithm.overlong": "penalty", "algorithm.overlong_penalty": -1.0,
                            "algorithm.filter_zero_std_groups": True, "rollout.max_new_tokens": 2,
                            "trainer.total_steps": 1})
    tr = Trainer(cfg)
    m = tr.train_step()
    # a random tiny model almost never stops within 2 tokens: every sample is truncated, so every
    # group is all -1 (zero std) and filtered -- after the penalty, on the penalised scores
    assert m["truncation_rate"] == 1.0
    assert m["zero_std_groups"] == 1.0 and m.get("skipped_update") == 1.0


def test_dropout_is_off_in_every_pass_so_the_on_policy_ratio_is_one(tmp_path):
    cfg = tiny(tmp_path, **{"algorithm.preset": "grpo", "algorithm.kl_coef": 0.0})
    tr = Trainer(cfg)
    for mod in tr.policy.modules():  # a model trained with attention dropout
        if hasattr(mod, "attention_dropout"):
            mod.attention_dropout = 0.5
    seen = []
    from rlvr.algorithms import objective

    real = objective.first_order_loss  # the policy term of every micro-batch loss

    def spy(name, logp, old_logp, *args, **kw):
        seen.append((logp.detach().clone(), old_logp.clone(), args[0]))
        return real(name, logp, old_logp, *args, **kw)

    objective.first_order_loss = spy
    try:
        tr.train_step()
    finally:
        objective.first_order_loss = real
    logp, old, mask = seen[0][0], seen[0][1], seen[0][2]
    ratio = torch.exp(logp - old)[mask > 0]
    assert torch.allclose(ratio, torch.ones_like(ratio), atol=1e-5), ratio.max()


def test_lora_dropout_is_rejected():
    with pytest.raises(ConfigError, match="model.lora_dropout"):
        from_dict({"model": {"name": "tiny-random", "lora_r": 4, "lora_dropout": 0.3}})


def test_reuse_sampler_logprobs_needs_float32_and_logs_the_mismatch(tmp_path):
    with pytest.raises(ConfigError, match="float32"):
        Trainer(tiny(tmp_path, **{"model.dtype": "bfloat16", "trainer.reuse_sampler_logprobs": True}))
    tr = Trainer(tiny(tmp_path, **{"trainer.reuse_sampler_logprobs": True, "trainer.total_steps": 1}))
    m = tr.train_step()
    assert m["rollout/logprob_diff_max"] < 1e-3  # the embedded fp32 engine samples from the policy


def test_separate_critic_trains_in_train_mode_with_gradient_checkpointing(tmp_path):
    cfg = tiny(tmp_path, **{"algorithm.preset": "ppo", "model.gradient_checkpointing": True})
    tr = Trainer(cfg)
    assert tr.critic.trunk.is_gradient_checkpointing
    modes = []
    tr.critic.trunk.register_forward_pre_hook(lambda mod, args, kw: modes.append((mod.training, torch.is_grad_enabled())),
                                              with_kwargs=True)
    tr.train_step()
    assert any(train and grad for train, grad in modes)  # the update's passes: checkpointing engages
    assert all(not train for train, grad in modes if not grad)  # no-grad passes in eval mode


def test_equal_rewards_give_exactly_zero_group_advantages():
    s = torch.full((8,), 0.7, dtype=torch.float32)
    gid = torch.zeros(8, dtype=torch.long)
    for method in ("grpo", "dr_grpo", "rloo"):
        assert torch.equal(A.compute_group_advantages(s, gid, method), torch.zeros(8)), method


def test_k3_can_be_clamped():
    logp, ref = torch.tensor([0.0]), torch.tensor([20.0])
    assert A.kl_estimate(logp, ref, "k3") > 1e8
    assert A.kl_estimate(logp, ref, "k3", clamp=10.0) == 10.0


def test_value_head_starts_at_the_mean_score(tmp_path):
    tr = Trainer(tiny(tmp_path, **{"algorithm.preset": "ppo"}))
    batch = _batch(tr)
    scores = torch.tensor([1.0, 0, 0, 0, 1, 1, 0, 0])
    calls = _spy(tr, "update_rule")
    tr._learn(batch, scores, batch["response_mask"], PhaseTimer())
    values = calls[0][0][1].values
    assert abs(float(values.mean()) - 0.375) < 1e-4


def test_value_warmup_steps_train_only_the_critic(tmp_path):
    tr = Trainer(tiny(tmp_path, **{"algorithm.preset": "ppo", "algorithm.value_warmup_steps": 1}))
    before = {n: p.detach().clone() for n, p in tr.policy.named_parameters() if p.requires_grad}
    cbefore = {n: p.detach().clone() for n, p in tr.critic.named_parameters() if p.requires_grad}
    m = tr.train_step()
    assert m["value/warmup"] == 1.0
    assert all(torch.equal(p, before[n]) for n, p in tr.policy.named_parameters() if p.requires_grad)
    assert any(not torch.equal(p, cbefore[n]) for n, p in tr.critic.named_parameters() if p.requires_grad)
    tr.train_step()
    assert any(not torch.equal(p, before[n]) for n, p in tr.policy.named_parameters() if p.requires_grad)


def test_presets_the_loop_cannot_run_are_refused(tmp_path, monkeypatch):
    # an update rule known to the algorithms layer but with no driver in rlvr.updates
    monkeypatch.setitem(A.UPDATE_RULES, "natural_pg", lambda *args: None)
    monkeypatch.setitem(A.UPDATE_RULES.needs, "natural_pg", A.Needs())
    with pytest.raises(ConfigError, match="update_rule='natural_pg' has no driver"):
        Trainer(tiny(tmp_path, **{"algorithm.update_rule": "natural_pg"}))


def test_group_presets_need_groups(tmp_path):
    with pytest.raises(ConfigError, match="rollout.n"):
        tiny(tmp_path, **{"algorithm.preset": "grpo", "rollout.n": 1})


# ----------------------------------------------------------------------------- frozen-prefix fast path
@pytest.mark.parametrize("preset", ["grpo", "ppo"])
def test_frozen_prefix_cache_gives_the_same_step(tmp_path, preset):
    """Top-block passes from cached boundary states reproduce full passes (within float noise)."""
    out = {}
    for cache in (True, False):
        cfg = tiny(tmp_path, **{"algorithm.preset": preset, "model.trainable_layers": 1,
                                "trainer.frozen_prefix_cache": cache, "trainer.output_dir": str(tmp_path / str(cache))})
        tr = Trainer(cfg)
        assert (tr.learner.top_k == 1) == cache
        init = {n: p.detach().clone() for n, p in tr.policy.named_parameters() if p.requires_grad}
        m1, m2 = tr.train_step(), tr.train_step()
        moved = {n: p.detach() - init[n] for n, p in tr.policy.named_parameters() if p.requires_grad}
        out[cache] = (m1, m2, moved)
    for k in ("loss/policy", "reward/mean", "entropy", "grad_norm"):
        assert abs(out[True][0][k] - out[False][0][k]) < 1e-4, k
        assert abs(out[True][1][k] - out[False][1][k]) < 1e-3, k
    # two AdamW steps (lr 1e-3) move the trained weights by ~2e-3; the two paths agree far closer
    total = sum(float(d.abs().sum()) for d in out[False][2].values())
    gap = sum(float((d - out[True][2][n]).abs().sum()) for n, d in out[False][2].items())
    assert total > 0 and gap < 1e-3 * total, (gap, total)


def test_engine_captures_the_boundary_states(tmp_path):
    from rlvr.data import encode_prompt
    from rlvr.models import boundary_hidden, sequence_logprobs
    from rlvr.rollout.base import SamplingParams

    tr = Trainer(tiny(tmp_path, **{"model.trainable_layers": 1}))
    prompts = [encode_prompt(tr.tokenizer, ex) for ex in tr.train_examples[:3]]
    ro = tr.engine.generate(prompts, SamplingParams(n=3, temperature=1.0, max_new_tokens=6, seed=0, capture_block=1))
    b = ro.to_tensors(tr.tokenizer.pad_token_id)
    R = b["response_mask"].shape[1]
    with torch.no_grad():
        full = sequence_logprobs(tr.policy, b["input_ids"], b["attention_mask"], R)
        fast = sequence_logprobs(tr.policy, b["input_ids"], b["attention_mask"], R, boundary=(1, b["boundary_hidden"]))
        hb = boundary_hidden(tr.policy, b["input_ids"], b["attention_mask"], 1)
    m = b["response_mask"]
    assert float(((fast - full).abs() * m).max()) < 1e-4
    assert float(((full - b["sampler_logprobs"]).abs() * m).max()) < 1e-4
    for i, p in enumerate(ro.prompt_ids):  # every fed token's state, left-aligned like input_ids
        n = len(p) + len(ro.response_ids[i]) - 1
        P = b["input_ids"].shape[1] - R
        torch.testing.assert_close(b["boundary_hidden"][i, P - len(p): P - len(p) + n],
                                   hb[i, P - len(p): P - len(p) + n], atol=1e-4, rtol=1e-4)


def test_compare_runs_jobs_side_by_side_with_a_thread_share_each(tmp_path):
    """--jobs 2: two runs at a time, each with OMP_NUM_THREADS = cores / 2 (at least 1); every run
    finishes and the manifest lists them all."""
    import time as _time

    from evals.compare import run_children

    starts, ends = {}, {}
    code = "import os, time; print(os.environ.get('OMP_NUM_THREADS')); time.sleep(1.0)"
    tasks = [(f"t{i}", [sys.executable, "-c", code]) for i in range(4)]
    run_children(tasks, 2, lambda k, rc, i: ends.__setitem__(k, (_time.monotonic(), rc)),
                 on_start=lambda k: starts.__setitem__(k, _time.monotonic()))
    assert sorted(ends) == ["t0", "t1", "t2", "t3"] and all(rc == 0 for _, rc in ends.values())
    assert abs(starts["t1"] - starts["t0"]) < 0.8  # the first two ran together
    assert starts["t2"] >= min(ends["t0"][0], ends["t1"][0]) - 0.3  # the third waited for a slot


def test_periodic_evals_can_use_a_fixed_subset_of_the_held_out_items(tmp_path):
    """trainer.eval_every_limit: the evals during training score the first N held-out items, the
    final one all of them, and every run scores the same subset."""
    from rlvr.commands.train import harness_evaluator

    cfg = tiny(tmp_path, **{"trainer.total_steps": 2, "trainer.eval_every": 1, "trainer.eval_every_limit": 3,
                                "data.eval": "arithmetic:add2", "data.eval_limit": 8})
    Trainer(cfg, evaluator=harness_evaluator).train()
    evals = rows(Path(cfg.trainer.output_dir) / "eval.jsonl")
    assert [(e["step"], e["eval/n"]) for e in evals] == [(1, 3), (2, 8)]
    assert len(rows(Path(cfg.trainer.output_dir) / "eval_items.jsonl")) == 8


# ----------------------------------------------------------------------------- arms: named variants
ARMS = ("arms:\n  trpo_full: {preset: trpo, algorithm.trpo_fvp_fraction: 1.0}\n"
        "  grpo_lr: {preset: grpo, trainer.lr: 2.0e-3}\n")


def test_an_arm_applies_its_settings_between_the_recipe_and_the_command_line(tmp_path):
    recipe = _write_recipe(tmp_path, steps=1)
    recipe.write_text(recipe.read_text() + ARMS)
    plain = load_config(recipe)
    assert plain.arm is None and plain.trainer.lr == 1e-3 and set(plain.arms) == {"trpo_full", "grpo_lr"}
    arm = load_config(recipe, ["arm=trpo_full"])
    assert arm.algorithm.preset == "trpo" and arm.algorithm.overrides["trpo_fvp_fraction"] == 1.0
    assert load_config(recipe, ["arm=grpo_lr"]).trainer.lr == 2e-3  # the arm beats the recipe
    assert load_config(recipe, ["arm=grpo_lr", "trainer.lr=5e-4"]).trainer.lr == 5e-4  # the command line beats the arm
    with pytest.raises(ConfigError, match=r"^arm: unknown arm 'nope'; the recipe's arms: trpo_full, grpo_lr$"):
        load_config(recipe, ["arm=nope"])


@pytest.mark.parametrize("arms, message", [
    ("arms:\n  ppo: {preset: grpo}\n", r"^arms\.ppo: 'ppo' is a preset's name"),
    ("arms:\n  'a/b': {preset: grpo}\n", r"^arms\.a/b: an arm's name must be"),
    ("arms:\n  x: grpo\n", r"^arms\.x: expected a mapping of settings"),
    ("arms:\n  x: {lr: 1.0}\n", r"^arms\.x\.lr: expected 'preset' or a dotted setting"),
    ("arms:\n  x: {arms.y: 1.0}\n", r"^arms\.x\.arms\.y: expected 'preset' or a dotted setting of a section"),
    ("arms:\n  x: {trainer.lrr: 1.0}\n", r"^arms\.x: unknown key 'trainer\.lrr' \(did you mean 'lr'\?\)"),
    ("arms:\n  x: {preset: nosuch}\n", r"^arms\.x: algorithm\.preset: .*unknown preset 'nosuch'"),
    ("arms:\n  x: {trainer.lr: -1.0}\n", r"^arms\.x: trainer\.lr"),
    ("arms: [a, b]\n", r"^arms: expected a mapping"),
])
def test_a_bad_arm_is_refused_in_one_line_naming_it(tmp_path, arms, message):
    recipe = _write_recipe(tmp_path, steps=1)
    recipe.write_text(recipe.read_text() + arms)
    with pytest.raises(ConfigError, match=message) as e:
        load_config(recipe)
    assert "\n" not in str(e.value)


def test_compare_runs_arms_beside_presets_and_the_report_labels_them(tmp_path):
    """An arm added to a study by a later call (``--presets grpo``, then ``--presets grpo_lr``, as
    recipes/study_add2_algos.yaml does): the arm's runs live under its name, run with its settings;
    compare.json keeps both calls' runs, presets and commands, and the study's settings that differ
    are the arm's own; the later call's code check covers the runs already there; the report and
    plan label the runs by arm."""
    from evals.compare import settings_that_differ

    recipe = _write_recipe(tmp_path, steps=1)
    recipe.write_text(recipe.read_text() + ARMS)
    assert settings_that_differ(load_config(recipe), ["grpo", "grpo_lr"]) == {"trainer.lr": {"grpo": 1e-3, "grpo_lr": 2e-3}}
    out = tmp_path / "cmp"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def call(presets):
        cmd = [sys.executable, "-m", "rlvr.cli", "compare", str(recipe), "--presets", presets, "--seeds", "1",
               "--out", str(out), "--no-base-eval", "trainer.prompts_per_step=1", "rollout.max_new_tokens=3"]
        return cmd, subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)

    first, proc = call("grpo")
    assert proc.returncode == 0, proc.stderr[-2000:]
    second, proc = call("grpo_lr")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "trainer.lr: grpo=0.001, grpo_lr=0.002" in proc.stdout  # across the study, not only this call
    manifest = json.loads((out / "compare.json").read_text())
    assert manifest["presets"] == ["grpo", "grpo_lr"]
    assert manifest["runs"] == {"grpo/seed0": "done", "grpo_lr/seed0": "done"}
    assert set(manifest["code"]) == {"grpo/seed0", "grpo_lr/seed0"}
    assert [(i["presets"], i["command"][-9:]) for i in manifest["invocations"]] == [
        (["grpo"], first[-9:]), (["grpo_lr"], second[-9:])]
    assert manifest["differences"] == {"trainer.lr": {"grpo": 1e-3, "grpo_lr": 2e-3}}
    run = out / "grpo_lr" / "seed0"
    saved = load_config(run / "config.yaml")
    assert saved.arm == "grpo_lr" and saved.trainer.lr == 2e-3 and saved.algorithm.preset == "grpo"
    assert json.loads((run / "summary.json").read_text())["arm"] == "grpo_lr"
    report = subprocess.run([sys.executable, "-m", "rlvr.cli", "report", str(out), "--out", str(tmp_path / "rep")],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert report.returncode == 0, report.stderr[-2000:]
    runs = json.loads((tmp_path / "rep" / "summary.json").read_text())["runs"]
    assert sorted(r["preset"] for r in runs) == ["grpo", "grpo_lr"]
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "| trainer.lr |" in text and "| arm |" not in text  # the arm's setting differs; its label is no setting
    assert "| arms.grpo_lr.trainer.lr | 0.002 |" in text  # the arms the study defined, among what it held fixed
    # a run of other code already in the directory stops a call that adds a preset to the study
    (out / "grpo" / "seed0" / "provenance.json").write_text(json.dumps({"starts": [{"step": 0, "code": {
        "commit": "b" * 40, "dirty": False, "diff_sha256": None, "version": "0.1.0"}}]}))
    _, mixed = call("trpo_full")
    assert mixed.returncode != 0 and "grpo/seed0: bbbbbbbbbbbb" in mixed.stderr
    assert not (out / "trpo_full").exists()
    assert json.loads((out / "compare.json").read_text()) == manifest  # the refused call changed no record
    # an arm's own setting given for every run on the command line would make the arms identical
    clash = subprocess.run([sys.executable, "-m", "rlvr.cli", "compare", str(recipe), "--presets", "grpo,grpo_lr",
                            "--seeds", "1", "--out", str(tmp_path / "cmp2"), "--no-base-eval", "trainer.lr=1e-4"],
                           capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert clash.returncode != 0
    assert clash.stderr.strip().splitlines()[-1].endswith(
        "arms.grpo_lr sets trainer.lr, which the command line sets for every run; drop it from the command line or "
        "from the arm")
    unknown = subprocess.run([sys.executable, "-m", "rlvr.cli", "compare", str(recipe), "--presets", "grpo,lr2",
                              "--seeds", "1", "--out", str(tmp_path / "cmp3")],
                             capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert unknown.returncode != 0 and "the recipe's arms: trpo_full, grpo_lr" in unknown.stderr

