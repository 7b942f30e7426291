"""FSDP2 through accelerate on CPU: 2 gloo processes started by ``accelerate launch --config_file
recipes/accelerate/fsdp2_cpu.yaml`` (trainer.distributed=auto picks FSDP2 from it), compared with
one unsharded process on the same samples (the harness of tests/test_distributed.py).

One launch of each kind serves every check (process start-up dominates on a 2-core machine):

* 1 process (DDP path, unsharded): one GRPO step and one PPO step (critic, reference, frozen lower
  block) on recorded rollouts;
* 2 FSDP2 processes: the gathered weights (what a rollout engine receives) equal the unsharded ones;
  the same two steps replayed give the same losses, gradient norms and updated weights; PPO then
  saves a checkpoint and takes a second step with the embedded engine generating (gathered);
* 2 FSDP2 processes again: resume from that checkpoint, the second step is the same, bit for bit.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from procs import failure_text

from test_distributed import (RECIPE, REWARDS, _env, _finish, _free_port, _launcher, _no_leftover_ranks,  # noqa: F401
                              _run_launch, _train, read_jsonl)

ROOT = Path(__file__).resolve().parents[1]
# seconds per launch (a few tens on an idle 2-core machine; raise it on a machine shared with other work)
TIMEOUT = float(os.environ.get("RLVR_FSDP_TEST_TIMEOUT", "600"))

SCRIPT = '''
import sys
import torch
from replay import record_or_replay
from rlvr.config import load_config
from rlvr.fsdp import full_model_state, full_tensors
from rlvr.rollout.vllm import hf_weights
from rlvr.trainer import Trainer

recipe, rec, out, per_rank, phase = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
PRESETS = {"grpo": [], "ppo": ["model.trainable_layers=1"]}


def full(tr, model):
    if tr.fsdp:
        return full_model_state(model)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def snapshot(tr, m):
    state = full(tr, tr.policy)
    if tr.critic is not None:
        state |= {"critic." + k: v for k, v in full(tr, tr.critic).items()}
    return {"metrics": {k: v for k, v in m.items() if isinstance(v, float)}, "state": state}


if phase == "resume":  # a fresh launch continues the PPO run from its step-1 checkpoint
    cfg = load_config(recipe, ["algorithm.preset=ppo", *PRESETS["ppo"], f"trainer.prompts_per_step={per_rank}",
                               f"trainer.output_dir={out}/ppo"])
    tr = Trainer(cfg, resume=True)
    assert tr.fsdp and tr.step == 1, (tr.fsdp, tr.step)
    snap = snapshot(tr, tr.train_step())
    if tr.is_main:
        torch.save(snap, f"{out}/ppo_resumed.pt")
    sys.exit(0)

for name, extra in PRESETS.items():
    cfg = load_config(recipe, [f"algorithm.preset={name}", *extra, f"trainer.prompts_per_step={per_rank}",
                               f"trainer.output_dir={out}/{name}"])
    tr = Trainer(cfg)
    assert tr.fsdp == (tr.world > 1), (tr.fsdp, tr.world)
    # what a rollout engine receives: HF names, full tensors, gathered one at a time
    sent = {k: v.clone() for k, v in full_tensors(hf_weights(tr.sampling_model).items())}
    real = tr.engine
    record_or_replay(tr, f"{rec}/{name}.pkl", per_rank)  # 1 process records, 2 replay their halves
    snap = snapshot(tr, tr.train_step())
    snap["sent"] = sent
    if tr.fsdp and name == "ppo":  # checkpoint, then a step that samples from the sharded policy itself
        tr.save(1.0)
        tr.engine = real
        snap["next"] = snapshot(tr, tr.train_step())
    if tr.is_main:
        torch.save(snap, f"{out}/{name}.pt")
'''


def _fsdp_launch(*args: str) -> list[str]:
    return [_launcher(), "launch", "--config_file", str(ROOT / "recipes" / "accelerate" / "fsdp2_cpu.yaml"),
            "--num_processes", "2", "--main_process_port", str(_free_port()), *args]


def _assert_same_state(two: dict, one: dict, what: str) -> None:
    """Equal up to summation order. FSDP reduces gradients per micro-batch and shard, one process
    sums them at once; Adam's step lr * m / (sqrt(v) + eps) turns a last-bit difference of an
    entry whose gradient is near eps into a visible one, and PPO's second epoch steps from those
    weights. And the trainable blocks run each prompt once (packed rows whose length depends on
    which prompts a process holds), so the two runs' block GEMMs have different shapes and round
    differently too. So: every entry within lr / 2 (a wrong update is off by about lr), and all
    but about 1 in 500 entries of each tensor within 1e-5 (measured: 3 of 2,048 in one tensor)."""
    assert set(two) ^ set(one) <= {"lm_head.weight"}, what  # a tied head may be listed once
    for k, v in one.items():
        if k not in two:
            continue
        torch.testing.assert_close(two[k], v, rtol=0, atol=5e-3, msg=f"{what}: {k}")
        off = int(((two[k] - v).abs() > 1e-5).sum())
        assert off <= max(1, v.numel() // 500), (what, k, off)


def check_steps(one: Path, two: Path) -> None:
    """The 2-process FSDP2 records in ``two`` against the 1-process records in ``one``."""
    for name in ("grpo", "ppo"):
        a, b = torch.load(one / f"{name}.pt"), torch.load(two / f"{name}.pt")
        # gathered full weights are the unsharded ones, exactly, under the same HF names
        assert b["sent"].keys() == a["sent"].keys()
        for k, v in a["sent"].items():
            assert torch.equal(b["sent"][k], v), (name, k)
        for k in ("loss/policy", "loss/value", "grad_norm", "value/grad_norm"):
            if k in a["metrics"]:
                # (PPO's second epoch starts from weights equal as above: 5e-5, not float precision)
                assert b["metrics"][k] == pytest.approx(a["metrics"][k], rel=5e-5, abs=1e-6), (name, k)
        assert "grad_norm" in b["metrics"] and (name != "ppo" or "value/grad_norm" in b["metrics"])
        moved = max(float((v - a["sent"][k]).abs().max()) for k, v in a["state"].items() if k in a["sent"])
        assert moved > 5e-3, name  # Adam's first step moves weights by about lr = 1e-2
        _assert_same_state(b["state"], a["state"], name)

    # the consolidated checkpoint: rlvr eval's HF export and the trainer state hold the full weights
    from safetensors.torch import load_file

    ckpt = two / "ppo" / "checkpoints" / "step_1"
    saved = torch.load(two / "ppo.pt")["state"]
    export = load_file(ckpt / "policy" / "model.safetensors")
    for k, v in export.items():
        assert torch.equal(v, saved[k]), k
    st = torch.load(ckpt / "trainer_state.pt", weights_only=True)
    # trainable_layers=1: the top block and the final norm, as one process saves them
    assert set(st["policy"]) == {k for k in saved if k.startswith("model.layers.1.")} | {"model.norm.weight"}
    for k, v in st["policy"].items():
        assert torch.equal(v, saved[k]), k
    assert isinstance(next(iter(st["optimizer"]["state"])), int)  # torch.optim's layout, as one process saves


def check_resume(two: Path) -> None:
    """The resumed launch's step 2 against the uninterrupted run's: exactly equal."""
    cont, res = torch.load(two / "ppo.pt")["next"], torch.load(two / "ppo_resumed.pt")
    for k in ("loss/policy", "loss/value", "grad_norm", "value/grad_norm", "reward/mean"):
        assert res["metrics"][k] == cont["metrics"][k], k
    assert res["state"].keys() == cont["state"].keys()
    for k, v in cont["state"].items():
        assert torch.equal(res["state"][k], v), k
    saved = torch.load(two / "ppo.pt")["state"]
    moved = max(float((v - saved[k]).abs().max()) for k, v in cont["state"].items() if k in saved)
    assert moved > 1e-3  # the second step did train


@pytest.mark.slow
def test_fsdp2_two_processes_equal_one_process_and_resume_exactly(tmp_path):
    (tmp_path / "rank_rewards.py").write_text(
        REWARDS + "\ndef parity(completion, reference):\n    return float(len(completion) % 2)\n")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE.replace("REWARDS:FN", f"{tmp_path / 'rank_rewards.py'}:parity")
                      .replace("lr: 1.0e-3", "lr: 1.0e-2"))
    script = tmp_path / "step.py"
    script.write_text(SCRIPT)
    rec, one, two = tmp_path / "rec", tmp_path / "one", tmp_path / "two"
    rec.mkdir()
    env = _env(tmp_path)
    run = subprocess.run([sys.executable, str(script), str(recipe), str(rec), str(one), "4", "train"],
                         env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert run.returncode == 0, failure_text(run.stderr)
    run = _run_launch(_fsdp_launch(str(script), str(recipe), str(rec), str(two), "2", "train"), env, TIMEOUT)
    assert run.returncode == 0, failure_text(run.stderr)
    check_steps(one, two)
    # resume in a fresh 2-process launch: the next step equals the uninterrupted run's, exactly
    run = _run_launch(_fsdp_launch(str(script), str(recipe), str(rec), str(two), "2", "resume"), env, TIMEOUT)
    assert run.returncode == 0, failure_text(run.stderr)
    check_resume(two)

@pytest.mark.slow
def test_fsdp2_nonfinite_loss_on_one_rank_skips_the_step_on_both(tmp_path):
    """`rlvr train` under FSDP2 (embedded engine sampling from the gathered policy, the final
    checkpoint consolidated): rank 1's loss overflows, rank 0's does not; both still run every
    backward pass (each is a collective) and agree to skip the optimizer step."""
    proc, out = _train(tmp_path, "rank1_only", "algorithm.preset=dr_grpo", "trainer.max_bad_steps=10",
                       "trainer.distributed=fsdp2", weight="3.0e+38")
    rc, _, err = _finish(proc, TIMEOUT)
    assert rc == 0, err[-3000:]
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    bad = [r for r in rows if r.get("nonfinite_loss")]
    assert bad, "rank 1's loss was expected to overflow"
    assert all(r["nonfinite_loss"] == 1.0 and "grad_norm" not in r for r in bad)
    assert (out / "checkpoints" / "step_2" / "policy" / "model.safetensors").is_file()


def test_distributed_setting_errors_name_the_field(tmp_path, monkeypatch):
    """One-line errors: an unknown trainer.distributed, an FSDP1 launch config, DDP asked for under
    an FSDP launch, and what FSDP2 does not run (LoRA, TRPO, DPO, the gradient-variance diagnostic)."""
    from rlvr.config import from_dict
    from rlvr.errors import ConfigError
    from rlvr.trainer import Trainer

    base = {"model": {"name": "tiny-random"}, "data": {"train": "arithmetic:add2", "train_limit": 8},
            "reward": {"workers": 0}, "trainer": {"output_dir": str(tmp_path), "progress": False,
                                                  "tensorboard": False, "device": "cpu"}}
    with pytest.raises(ConfigError, match=r"^trainer\.distributed must be auto, ddp or fsdp2$"):
        from_dict(base, ["trainer.distributed=zero3"])
    cases = [
        (["trainer.distributed=fsdp2", "model.lora_r=4"], r"^model\.lora_r: LoRA is not supported"),
        (["trainer.distributed=fsdp2", "algorithm.preset=trpo"], r"^algorithm\.update_rule=trpo is not supported"),
        (["trainer.distributed=fsdp2", "algorithm.preset=dpo"], r"^algorithm\.update_rule=dpo is not supported"),
        (["trainer.distributed=fsdp2", "trainer.gradvar_every=1"], r"^trainer\.gradvar_every is not supported"),
    ]
    for overrides, msg in cases:
        with pytest.raises(ConfigError, match=msg):
            Trainer(from_dict(base, overrides))
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "1")
    with pytest.raises(ConfigError, match=r"^accelerate config: fsdp_version must be 2"):
        Trainer(from_dict(base, []))
    monkeypatch.setenv("FSDP_VERSION", "2")
    with pytest.raises(ConfigError, match=r"^trainer\.distributed=ddp, but accelerate launch was given an FSDP"):
        Trainer(from_dict(base, ["trainer.distributed=ddp"]))
