"""Full training steps with ``rollout.engine: vllm`` (skipped when vLLM is not importable)."""
import json

import pytest
import torch

import verifiers
from rlvr.config import from_dict


@verifiers.register("test_even_length")
def even_length(completion: str, reference) -> float:
    """Mixed rewards whatever the model knows: 1 for an even-length completion."""
    return float(len(completion) % 2 == 0)


@pytest.fixture()
def vllm_env(tmp_path, monkeypatch):
    pytest.importorskip("vllm")
    monkeypatch.setenv("VLLM_CACHE_ROOT", str(tmp_path / "vllm"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.parametrize("preset", ["grpo", "ppo"])
def test_training_steps_with_the_vllm_engine(tmp_path, vllm_env, smollm2_path, preset):
    from rlvr.trainer import Trainer

    cfg = from_dict({
        "model": {"name": smollm2_path, "dtype": "float32", "trainable_layers": 2},
        "data": {"train": "arithmetic:add2", "train_limit": 32},
        "rollout": {"engine": "vllm", "n": 4, "temperature": 0.7, "max_new_tokens": 8,
                    "vllm": {"enforce_eager": True}},
        "reward": {"workers": 0, "verifier": "test_even_length"},
        "algorithm": {"preset": preset, "kl_coef": 0.0},
        "trainer": {"total_steps": 2, "prompts_per_step": 2, "micro_batch_size": 8, "lr": 1e-4,
                    "critic_lr": 1e-4, "output_dir": str(tmp_path / "run"), "progress": False,
                    "tensorboard": False},
    })
    trainer = Trainer(cfg)
    with torch.no_grad():
        before = trainer.engine.trainer_probe_logprobs(trainer.policy)
    trainer.train()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        # engine vs trainer log-probs of the sampled tokens, both fp32: logged and small
        assert r["rollout/logprob_diff_mean"] < 0.05, r["rollout/logprob_diff_mean"]
        assert r["time/sync"] > 0
    # after the updates the engine samples from the new weights: its probe log-probs moved with the
    # policy and match the trainer's (sync_weights verifies this and raises otherwise)
    with torch.no_grad():
        after = trainer.engine.trainer_probe_logprobs(trainer.policy)
    engine_now = trainer.engine.prompt_logprobs(trainer.engine.probe_ids)
    assert not torch.allclose(before, after)
    assert (engine_now - after).abs().max() < 0.05
