"""The tiny-model training config shared by the trainer tests (imported as ``from tiny import tiny_cfg``).

The verifier it names, ``test_len_parity``, is registered in conftest.py: 1 for an even-length
completion, which gives a random-weight model mixed rewards in every group.
"""
from __future__ import annotations

from rlvr.config import Config, from_dict


def tiny_cfg(tmp_path, **over) -> Config:
    """2 steps of GRPO on the tiny random model, 2 prompts x 4 samples of <= 6 tokens; ``over``
    maps dotted keys to values (``**{"algorithm.preset": "ppo"}``)."""
    tree = {
        "name": "tiny",
        "model": {"name": "tiny-random"},
        "data": {"train": "arithmetic:add2", "train_limit": 64},
        "rollout": {"n": 4, "max_new_tokens": 6, "micro_batch_size": 16},
        "reward": {"workers": 0, "verifier": "test_len_parity"},
        "algorithm": {"preset": "grpo"},
        "trainer": {"total_steps": 2, "prompts_per_step": 2, "micro_batch_size": 4, "lr": 1e-3,
                    "critic_lr": 1e-3, "output_dir": str(tmp_path / "run"), "progress": False,
                    "tensorboard": False},
    }
    return from_dict(tree, [f"{k}={v}" for k, v in over.items()])


QUESTIONS = ["What is 2+3?", "Name a colour.", "Write one short sentence about the sea, please."]


def chat_prompts(tok, questions=QUESTIONS) -> list[list[int]]:
    """Token ids of one-turn chats asking ``questions``, with the generation prompt (the engine tests'
    prompts: short, and of different lengths so left padding is exercised)."""
    chats = [tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
             for q in questions]
    return [tok.encode(c, add_special_tokens=False) for c in chats]
