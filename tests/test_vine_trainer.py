"""VinePPO through the trainer: Monte-Carlo values from continuations the engine samples, scored by
the rollouts' verifier, turned into per-step advantages, with every continuation in the budget.

The expected advantages are computed here by hand from what the engine answered (explicit loops
over states and steps, none of ``rlvr.algorithms.vine``)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rlvr.trainer import Trainer
from tiny import tiny_cfg


def parity(text: str) -> float:
    return float(len(text) % 2 == 0)


def scripted_trainer(tmp_path, preset="ctrl_vine", **over):
    cfg = tiny_cfg(tmp_path, **{"algorithm.preset": preset, "trainer.total_steps": 1, "rollout.n": 2,
                                "trainer.prompts_per_step": 2, "rollout.max_new_tokens": 6,
                                "algorithm.vine_split": "every", "algorithm.vine_every": 2, "algorithm.vine_k": 3,
                                "algorithm.whiten_advantages": False, **over})
    tr = Trainer(cfg)
    co = tr.collector

    def score(examples, texts, n, completion_ids=None):  # a verifier with a known answer: even-length texts score 1
        r = torch.tensor([parity(t) for t in texts])
        return r, r.clone(), {}

    co.score = score
    seen = {"rollouts": [], "continuations": [], "inputs": []}
    gen, cont = co.engine.generate, co.engine.generate_continuations
    co.engine.generate = lambda *a, **k: seen["rollouts"].append(gen(*a, **k)) or seen["rollouts"][-1]
    co.engine.generate_continuations = (lambda prompts, partials, params:
                                        seen["continuations"].append((partials, cont(prompts, partials, params)))
                                        or seen["continuations"][-1][1])
    rule = tr.update_rule
    tr.update_rule = lambda ln, x: seen["inputs"].append(x) or rule(ln, x)
    return tr, seen


def test_vine_step_advantages_equal_a_hand_computation(tmp_path):
    tr, seen = scripted_trainer(tmp_path)
    tok = tr.tokenizer
    summary = tr.train()
    (ro,), ((partials, cont),), (x,) = seen["rollouts"], seen["continuations"], seen["inputs"]
    K = 3
    # the states: every response cut at 0, 2, 4 (below its length), in sample order
    states = [(n, p) for n, resp in enumerate(ro.response_ids) for p in range(0, len(resp), 2)]
    assert [len(q) for q in partials] == [p for _, p in states]
    assert len(cont) == K * len(states)
    value = {}
    for i, (n, p) in enumerate(states):
        texts = [tok.decode(ro.response_ids[n][:p] + cont.response_ids[i * K + k], skip_special_tokens=True)
                 for k in range(K)]
        value[n, p] = sum(parity(t) for t in texts) / K
    for n, resp in enumerate(ro.response_ids):
        R = parity(ro.texts[n])
        cuts = [p for m, p in states if m == n] + [len(resp)]
        for j in range(len(cuts) - 1):
            nxt = value[n, cuts[j + 1]] if j + 2 < len(cuts) else R  # the last step ends in the outcome
            want = nxt - value[n, cuts[j]]
            for t in range(cuts[j], cuts[j + 1]):
                assert float(x.adv[n, t]) == pytest.approx(want, abs=1e-6), (n, t)
        assert float(x.adv[n, len(resp):].abs().sum()) == 0.0
    assert x.values is None and x.returns is None  # no critic to train
    # every continuation counts toward the budget, on top of the rollouts
    assert summary["samples"] == len(ro) + K * len(states)
    row = json.loads((Path(tr.cfg.trainer.output_dir) / "metrics.jsonl").read_text().splitlines()[0])
    assert row["mc/states"] == len(states) and row["mc/continuations"] == K * len(states)
    assert row["mc/continuation_tokens"] == cont.num_tokens
    assert row["tokens"] == ro.num_tokens + cont.num_tokens
    assert "time/continue" in row and "value/explained_variance" in row


def test_vine_matched_budget_stops_earlier(tmp_path):
    """Under max_samples the continuations use the budget: fewer steps than a group baseline."""
    group = Trainer(tiny_cfg(tmp_path / "g", **{"algorithm.preset": "ctrl_group", "trainer.total_steps": 50,
                                                "trainer.max_samples": 16}))
    vine = Trainer(tiny_cfg(tmp_path / "v", **{"algorithm.preset": "ctrl_vine", "trainer.total_steps": 50,
                                               "trainer.max_samples": 16}))
    assert group.train()["steps"] == 2  # 8 samples a step
    s = vine.train()
    assert s["steps"] == 1 and s["samples"] > 16 and s["stop_reason"] == "max_samples"


def test_vine_resume_is_exact(tmp_path):
    """Continuations are seeded by the step: a resumed run reproduces an uninterrupted one."""
    over = {"algorithm.preset": "ctrl_vine", "trainer.total_steps": 2, "trainer.checkpoint_every": 1}
    full = Trainer(tiny_cfg(tmp_path / "a", **over))
    full.train()
    first = Trainer(tiny_cfg(tmp_path / "b", **over))
    first.train(max_steps=1)
    first.close()
    again = Trainer(tiny_cfg(tmp_path / "b", **over), resume=True)
    again.train()
    read = lambda d: [json.loads(r) for r in (tmp_path / d / "run" / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    keys = ("reward/mean", "adv/mean", "adv/std", "mc/continuation_tokens", "samples", "tokens")
    assert [{k: r[k] for k in keys} for r in read("a")] == [{k: r[k] for k in keys} for r in read("b")]
