"""Recorded rollouts for the multi-process tests (tests/test_distributed.py, tests/test_fsdp.py).

A one-process reference run records the rollout it trains on; every process of a multi-process
run then replays its own slice of that recording, so both runs train on the same samples. Imported
by the tests' subprocess scripts (their PYTHONPATH holds tests/).
"""
from __future__ import annotations

import pickle
from typing import Any

from rlvr.rollout.base import Rollout


class Replay:
    """This process's slice of one recorded rollout (prompts k*rank .. k*(rank+1), n samples each)."""

    def __init__(self, rollout: Rollout, rank: int, k: int, n: int):
        a, b = rank * k * n, (rank + 1) * k * n
        self.r = Rollout(rollout.prompt_ids[a:b], rollout.response_ids[a:b], rollout.logprobs[a:b],
                         rollout.finished[a:b], [g - rank * k for g in rollout.group_ids[a:b]], rollout.texts[a:b])

    def generate(self, prompts, params):
        return self.r

    def sync_weights(self, model):
        pass


class Record:
    """The real engine, saving each rollout it generates to ``path``."""

    def __init__(self, engine: Any, path: str):
        self.engine, self.path = engine, path

    def generate(self, prompts, params):
        r = self.engine.generate(prompts, params)
        with open(self.path, "wb") as f:
            pickle.dump(r, f)
        return r

    def sync_weights(self, model):
        self.engine.sync_weights(model)


def record_or_replay(tr: Any, path: str, per_rank: int) -> None:
    """One process: ``tr`` records its rollout to ``path``; several: each replays its slice of it."""
    if tr.world == 1:
        tr.engine = Record(tr.engine, path)
    else:
        with open(path, "rb") as f:
            tr.engine = Replay(pickle.load(f), tr.rank, per_rank, tr.cfg.rollout.n)
