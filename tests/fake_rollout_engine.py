"""A stand-in for :class:`rlvr.rollout.vllm.VLLMEngine` behind ``rlvr.rollout.server``: what the
server calls of it, with weights in a dict of tensors. For the tests of the server's HTTP layer
(auth, concurrency, the weight push's protocol and bookkeeping), where the engine is not the thing
under test; a real vLLM server is tested in tests/test_rollout_server.py.
"""
from __future__ import annotations

import threading
import time

import torch

from rlvr.rollout.base import Rollout


class FakeLLM:
    def __init__(self):
        self.resets = 0

    def reset_prefix_cache(self):
        self.resets += 1


class FakeEngine:
    """Loads into a dict of tensors; ``generate`` answers with one "log-prob" per sample, the sum of
    the current weights (so a test sees which weights served it), after ``generate_s`` seconds."""

    def __init__(self, model: torch.nn.Module, path: str = "load_weights"):
        self.model_path, self.dtype, self.device_type = "fake", torch.float32, "cpu"
        self.checkpoint = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.state = {k: v.clone() for k, v in self.checkpoint.items()}
        self.expected_shapes = {k: tuple(v.shape) for k, v in self.state.items()}
        self.llm, self.path, self.fail_after, self.loaded = FakeLLM(), path, None, []
        self.generate_s = 0.0
        self.active = 0  # calls into the engine in progress (must never exceed 1)
        self.max_active = 0
        self._count = threading.Lock()

    def _enter(self):
        with self._count:
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def _leave(self):
        with self._count:
            self.active -= 1

    def sync_path(self):
        return self.path

    def _push(self, path, weights):
        self._enter()
        try:
            self.loaded = []
            for i, (k, v) in enumerate(weights):  # consumed one at a time, as vLLM's loader does
                if self.fail_after is not None and i == self.fail_after:
                    raise RuntimeError("the loader failed")
                self.state[k].copy_(v)
                self.loaded.append(k)
        finally:
            self._leave()

    def reload_checkpoint(self):
        self.state = {k: v.clone() for k, v in self.checkpoint.items()}

    def weights_sum(self) -> float:
        return float(sum(v.double().sum() for v in self.state.values()))

    def generate(self, prompts, params):
        self._enter()
        try:
            time.sleep(self.generate_s)
            n = len(prompts) * params.n
            lp = self.weights_sum()
            return Rollout([list(prompts[i // params.n]) for i in range(n)], [[7]] * n, [[lp]] * n, [True] * n,
                           [i // params.n for i in range(n)], ["x"] * n)
        finally:
            self._leave()

    def prompt_logprobs(self, token_ids):
        return torch.zeros(len(token_ids) - 1)


# ----------------------------------------------------------------------------- helpers of the server tests

def tokenizer(text):
    """The tokenizer a client needs to count prompt tokens: three tokens for any text."""
    return {"input_ids": [1, 2, 3]}


def make_model(seed: int = 0) -> torch.nn.Module:
    """A small trainer-side model whose weights the tests push."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))


def moved(model: torch.nn.Module, by: float) -> torch.nn.Module:
    """``model`` with ``by`` added to every weight (in place)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(by)
    return model


def same(engine: FakeEngine, model: torch.nn.Module) -> bool:
    """Whether the engine holds exactly ``model``'s weights."""
    return all(torch.equal(engine.state[k], v) for k, v in model.state_dict().items())
