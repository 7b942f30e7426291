"""End-to-end trainer behaviour on a tiny random model with the real SmolLM2 tokenizer."""
import json
import math
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from procs import failure_text
from rlvr.algorithms.presets import PRESETS
from rlvr.errors import ConfigError
from rlvr.trainer import NonFiniteLossError, Trainer
from tiny import tiny_cfg

ROOT = Path(__file__).resolve().parents[1]


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_one_step_of_every_preset(tmp_path, preset):
    from rlvr.trainer import SUPPORTED_EXTENSIONS

    # value warm-up would leave the policy untouched in a 1-step run: start its updates at once
    cfg = tiny_cfg(tmp_path, **{"algorithm.preset": preset, "trainer.total_steps": 1,
                                **({"algorithm.value_warmup_steps": 0} if PRESETS[preset].critic else {})})
    if set(PRESETS[preset].extensions()) - SUPPORTED_EXTENSIONS:
        with pytest.raises(ConfigError, match="not run by this trainer"):
            Trainer(cfg)
        return
    trainer = Trainer(cfg)
    before = {n: p.detach().clone() for n, p in trainer.policy.named_parameters() if p.requires_grad}
    summary = trainer.train()
    rows = read_jsonl(cfg.trainer.output_dir + "/metrics.jsonl")
    assert len(rows) == 1
    m = rows[0]
    # Monte-Carlo values: their continuations count as samples too
    assert summary["steps"] == 1 and summary["samples"] == 8 + m.get("mc/continuations", 0)
    # every rule's keys, then its own: the clip table (first-order, TRPO at ratio 1), the trust
    # region's line search, the preference pairs
    own = {"first_order": ("clip/inside",), "trpo": ("clip/inside", "trpo/accepted", "trpo/kl"),
           "dpo": ("dpo/pairs", "dpo/groups_without_pair", "dpo/margin")}[PRESETS[preset].update_rule]
    for key in ("reward/mean", "accuracy", "entropy", "response_length/mean", "time/generate", "time/update",
                "tokens_per_s", "memory/peak_gb", "grad_norm", *own):
        assert key in m, key
    assert (trainer.critic is not None) == PRESETS[preset].critic
    if PRESETS[preset].critic:
        assert "loss/value" in m and "value/explained_variance" in m
        assert math.isfinite(m["value/bias"])
    elif not m.get("mc/continuations"):  # no values at all (Monte-Carlo values log it where s_0 is a split)
        assert "value/bias" not in m and "value/explained_variance" not in m
    # the policy actually moved (every preset takes at least one optimizer step)
    moved = any(not torch.equal(before[n], p) for n, p in trainer.policy.named_parameters() if n in before)
    assert moved
    assert (Path(cfg.trainer.output_dir) / "checkpoints" / "step_1" / "policy" / "config.json").is_file()


def test_critic_value_loss_falls_on_a_fixed_batch(tmp_path):
    cfg = tiny_cfg(tmp_path, **{"algorithm.preset": "ppo", "trainer.prompts_per_step": 4})
    trainer = Trainer(cfg)
    from rlvr.data import encode_prompt
    from rlvr.metrics import PhaseTimer
    from rlvr.rollout.base import SamplingParams

    examples = trainer.collector.step_examples(0)
    rollout = trainer.engine.generate([encode_prompt(trainer.tokenizer, e) for e in examples],
                                      SamplingParams(n=4, max_new_tokens=6, seed=0))
    batch = rollout.to_tensors(trainer.tokenizer.pad_token_id)
    scores = torch.tensor([float(i % 2) for i in range(len(rollout))])  # fixed, mixed targets
    losses = []
    for _ in range(8):
        # only the critic learns here: the policy (and thus the batch's old logprobs) stays fixed
        trainer.learner.optimizer.param_groups[0]["lr"] = 0.0
        m = trainer._learn(batch, scores, batch["response_mask"], PhaseTimer())
        losses.append(m["loss/value"])
    assert losses[-1] < 0.5 * losses[0], losses


def test_resume_is_exact(tmp_path):
    straight = tiny_cfg(tmp_path / "a", **{"trainer.total_steps": 4})
    Trainer(straight).train()
    ref = read_jsonl(Path(straight.trainer.output_dir) / "metrics.jsonl")

    interrupted = tiny_cfg(tmp_path / "b", **{"trainer.total_steps": 4})
    Trainer(interrupted).train(max_steps=2)  # stops after step 2 and checkpoints
    resumed = Trainer(interrupted, resume=True)
    assert resumed.step == 2
    resumed.train()
    got = read_jsonl(Path(interrupted.trainer.output_dir) / "metrics.jsonl")
    assert [r["step"] for r in got] == [1, 2, 3, 4]
    skip = ("time/", "tokens_per_s", "elapsed_s", "memory/", "train_s", "train_cpu_s")  # clocks
    for a, b in zip(ref, got):
        for k, v in a.items():
            if k.startswith(skip) or not isinstance(v, float):
                continue
            assert b[k] == pytest.approx(v, rel=1e-6, abs=1e-7), (a["step"], k)


@pytest.mark.filterwarnings("error:Detected call of `lr_scheduler.step\\(\\)`:UserWarning")
def test_nonfinite_loss_skips_then_stops(tmp_path, monkeypatch):
    from rlvr.algorithms import objective

    real = objective.first_order_loss  # the trainer's policy term goes through the preset's policy loss

    def nan_loss(*args, **kw):
        loss, stats = real(*args, **kw)
        return loss * float("nan"), stats

    cfg = tiny_cfg(tmp_path, **{"trainer.total_steps": 10, "trainer.max_bad_steps": 2})
    trainer = Trainer(cfg)
    before = {n: p.detach().clone() for n, p in trainer.policy.named_parameters()}
    monkeypatch.setattr(objective, "first_order_loss", nan_loss)
    with pytest.raises(NonFiniteLossError, match="2 consecutive non-finite"):
        trainer.train()
    rows = read_jsonl(Path(cfg.trainer.output_dir) / "metrics.jsonl")
    assert len(rows) == 1 and rows[0]["nonfinite_loss"] == 1.0  # step 1 logged before the stop
    for n, p in trainer.policy.named_parameters():  # no update was applied
        assert torch.equal(before[n], p), n


def test_the_gradient_variance_diagnostic_is_logged_and_does_not_change_training(tmp_path):
    """gradvar/* is logged for every baseline (the critic's too), and runs that differ only in
    trainer.gradvar_every train the same policy and critic, bit for bit (the diagnostic takes
    gradients and drops them; sampling and shuffling use per-step seeded generators, so nothing it
    does moves them), so a report may mark that setting as having no effect on what is compared.
    Leaving its gradients in place makes this fail."""
    finals = []
    for every in (0, 1):
        cfg = tiny_cfg(tmp_path / f"gv{every}", **{"algorithm.preset": "ppo", "trainer.gradvar_every": every})
        trainer = Trainer(cfg)
        trainer.train()
        rows = read_jsonl(Path(cfg.trainer.output_dir) / "metrics.jsonl")
        for k in ("gradvar/none", "gradvar/group", "gradvar/critic"):
            assert all((k in r and r[k] is not None and r[k] >= 0) if every else k not in r for r in rows), k
        finals.append(({n: p.detach().clone() for n, p in trainer.policy.named_parameters()},
                       {n: p.detach().clone() for n, p in trainer.critic.named_parameters()},
                       [(r["reward/mean"], r["loss/policy"]) for r in rows]))
    (p0, c0, m0), (p1, c1, m1) = finals
    assert m0 == m1
    for a, b in ((p0, p1), (c0, c1)):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bad_data_row_is_reported_with_file_and_line(tmp_path):
    from rlvr.errors import DataError

    data = tmp_path / "rows.jsonl"
    data.write_text('{"question": "1+1?", "answer": "#### 2"}\n{"question": "no answer"}\n')
    cfg = tiny_cfg(tmp_path, **{"data.train": str(data)})
    with pytest.raises(DataError, match=r"rows.jsonl:2"):
        Trainer(cfg)


@pytest.mark.slow
def test_cli_train_and_accelerate_two_processes(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        "model: {name: tiny-random}\n"
        "data: {train: 'arithmetic:add2', train_limit: 64}\n"
        "rollout: {n: 4, max_new_tokens: 6}\n"
        "reward: {workers: 0}\n"
        "trainer: {total_steps: 2, prompts_per_step: 2, micro_batch_size: 4, lr: 1.0e-3,"
        " progress: false, tensorboard: false}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    out = tmp_path / "ddp"
    # accelerate 1.x starts several CPU processes through its torchrun path (--multi_gpu); with
    # no GPU the processes form a gloo group (DistributedType.MULTI_CPU)
    cmd = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "rlvr.cli", "train", str(recipe),
           f"trainer.output_dir={out}"]
    from test_distributed import _run_launch

    res = _run_launch(cmd, env, 600)
    assert res.returncode == 0, failure_text(res.stderr)
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[-1]["samples"] == 2 * 2 * 2 * 4  # steps x processes x prompts x n
    assert json.loads((out / "summary.json").read_text())["samples"] == 32


def test_ppo_with_a_shared_trunk_critic(tmp_path):
    from rlvr.models import ValueHead

    cfg = tiny_cfg(tmp_path, **{"algorithm.preset": "ppo", "model.critic_shared_trunk": True,
                                "trainer.total_steps": 2})
    trainer = Trainer(cfg)
    assert isinstance(trainer.critic, ValueHead)
    head_before = [p.detach().clone() for p in trainer.critic.parameters()]
    trainer.train()
    rows = read_jsonl(Path(cfg.trainer.output_dir) / "metrics.jsonl")
    assert all("loss/value" in r and "value/grad_norm" in r for r in rows)
    assert any(not torch.equal(a, b) for a, b in zip(head_before, trainer.critic.parameters()))


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_value_warmup_with_a_shared_trunk_moves_only_the_value_head(tmp_path, weight_decay):
    """The value loss's gradient reached the policy through the shared trunk (and its optimizer
    stepped): during warm-up the policy must stay bitwise as it was; afterwards it learns."""
    cfg = tiny_cfg(tmp_path, **{"algorithm.preset": "ppo", "model.critic_shared_trunk": True,
                                "algorithm.value_warmup_steps": 2, "trainer.weight_decay": weight_decay})
    trainer = Trainer(cfg)
    policy_before = {n: p.detach().clone() for n, p in trainer.policy.named_parameters()}
    head_before = [p.detach().clone() for p in trainer.critic.parameters()]
    for _ in range(2):
        m = trainer.train_step()
        assert m["value/warmup"] == 1.0 and "loss/value" in m and "value/grad_norm" in m
        assert "grad_norm" not in m  # no policy optimizer step
    assert all(torch.equal(p, policy_before[n]) for n, p in trainer.policy.named_parameters())
    assert any(not torch.equal(a, b) for a, b in zip(head_before, trainer.critic.parameters()))
    m = trainer.train_step()
    assert "value/warmup" not in m and "grad_norm" in m
    assert any(not torch.equal(p, policy_before[n]) for n, p in trainer.policy.named_parameters())


def _poison_gradient(param):
    """A finite loss whose gradient is inf in one entry (what an overflow in a backward pass gives)."""
    def hook(grad):
        grad = grad.clone()
        grad.view(-1)[0] = float("inf")
        return grad
    return param.register_hook(hook)


@pytest.mark.parametrize("where,preset", [("policy", "ppo"), ("critic", "ppo"), ("policy", "trpo")])
def test_inf_gradient_with_a_finite_loss_skips_the_step_and_counts_it(tmp_path, where, preset):
    cfg = tiny_cfg(tmp_path, **{"algorithm.preset": preset, "algorithm.value_warmup_steps": 0,
                                "algorithm.epochs": 1,
                                "trainer.total_steps": 10, "trainer.max_bad_steps": 2})
    trainer = Trainer(cfg)
    model = trainer.policy if where == "policy" else trainer.critic
    _poison_gradient(next(q for q in model.parameters() if q.requires_grad))
    before = {n: p.detach().clone() for n, p in trainer.policy.named_parameters()}
    with pytest.raises(NonFiniteLossError, match="2 consecutive non-finite"):
        trainer.train()
    (row,) = read_jsonl(Path(cfg.trainer.output_dir) / "metrics.jsonl")
    assert row["nonfinite_grad"] == 1.0 and row.get("nonfinite_loss") is None
    assert math.isfinite(row["loss/policy"])
    if trainer.critic is None:
        return
    for n, p in trainer.policy.named_parameters():  # no update was applied, nothing became NaN
        assert torch.equal(before[n], p), n
    assert all(torch.isfinite(q).all() for q in trainer.critic.parameters())


@pytest.mark.parametrize("preset", ["grpo", "trpo"])
def test_a_micro_batch_without_trained_tokens_leaves_the_ratio_stats_alone(tmp_path, preset):
    """ratio/max of an all-masked micro-batch is -inf, its means 0: neither may reach the step's log."""
    from rlvr.data import encode_prompt
    from rlvr.metrics import PhaseTimer
    from rlvr.rollout.base import SamplingParams

    cfg = tiny_cfg(tmp_path, **{"algorithm.preset": preset, "algorithm.value_warmup_steps": 0})
    trainer = Trainer(cfg)
    examples = trainer.collector.step_examples(0)
    rollout = trainer.engine.generate([encode_prompt(trainer.tokenizer, e) for e in examples],
                                      SamplingParams(n=4, max_new_tokens=6, seed=0))
    batch = rollout.to_tensors(trainer.tokenizer.pad_token_id)
    scores = torch.tensor([float(i % 2) for i in range(len(rollout))])
    mask = batch["response_mask"].clone()
    mask[1:] = 0  # one trained row: of the two micro-batches of 4, one has no trained token
    m = trainer._learn(batch, scores, mask, PhaseTimer())
    assert m["ratio/max"] == pytest.approx(1.0, abs=1e-4)  # on-policy: every ratio is 1
    assert m["ratio/mean"] == pytest.approx(1.0, abs=1e-4) and m["clip/inside"] == pytest.approx(1.0)
    json.dumps(m, allow_nan=False)  # every value a number the metrics log can hold
