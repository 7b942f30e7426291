"""generate_continuations on the embedded engine (tiny random Llama, real SmolLM2 tokenizer): the
prefix is not sampled again, K continuations per prefix, the whole response stays within
max_new_tokens, seeded runs repeat, left padding of prefixes of different lengths changes nothing,
and the Monte-Carlo values of rlvr.algorithms.vine computed end to end."""
from __future__ import annotations

import pytest
import torch

from rlvr.algorithms import vine as V
from rlvr.algorithms.advantages import outcome_rewards
from rlvr.models import load_policy, sequence_logprobs
from rlvr.rollout.base import ContinuationEngine, SamplingParams
from rlvr.rollout.hf import HFEngine
from tiny import chat_prompts



@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    return load_policy(tiny_model_path)


def test_engine_implements_the_continuation_protocol(tiny):
    assert isinstance(HFEngine(*tiny), ContinuationEngine)


def test_greedy_continuation_resumes_exactly_after_the_prefix(tiny):
    model, tok = tiny
    engine = HFEngine(model, tok)
    prompts = chat_prompts(tok)
    full = engine.generate(prompts, SamplingParams(temperature=0, max_new_tokens=10))
    assert all(len(r) == 10 for r in full.response_ids)  # random weights: no EOS within 10 tokens
    cut = [0, 3, 9]  # 9: one token left
    out = engine.generate_continuations(prompts, [r[:p] for r, p in zip(full.response_ids, cut)],
                                        SamplingParams(temperature=0, max_new_tokens=10))
    for i, p in enumerate(cut):
        assert out.prompt_ids[i] == prompts[i] + full.response_ids[i][:p]  # the prefix it was conditioned on
        assert out.response_ids[i] == full.response_ids[i][p:]  # the rest, not the prefix again
        torch.testing.assert_close(torch.tensor(out.logprobs[i]), torch.tensor(full.logprobs[i][p:]),
                                   atol=1e-4, rtol=0)
    assert out.texts == tok.batch_decode(out.response_ids, skip_special_tokens=True)
    assert out.finished == [False] * 3


def test_k_continuations_per_prefix_within_the_response_budget(tiny):
    model, tok = tiny
    eos = tok.eos_token_id
    prompts = chat_prompts(tok) * 2
    partials = [[], [11], [11, 12, 13], [11, 12, 13, 14, 15], [42] * 2, [7] * 4]
    engine = HFEngine(model, tok, micro_batch_size=5)  # 18 samples: micro-batches cut through groups
    out = engine.generate_continuations(prompts, partials, SamplingParams(n=3, max_new_tokens=6, seed=1))
    assert len(out) == 18 and out.group_ids == [g for g in range(6) for _ in range(3)]
    assert out.prompt_ids == [p + q for p, q in zip(prompts, partials) for _ in range(3)]
    for j, (q, r, lp, fin) in enumerate(zip([q for q in partials for _ in range(3)], out.response_ids,
                                            out.logprobs, out.finished)):
        assert 1 <= len(r) <= 6 - len(q) and len(lp) == len(r)
        # truncated exactly at the budget, or ended on its first EOS (padding after the limit is not an EOS)
        assert (fin and r[-1] == eos and eos not in r[:-1]) or (not fin and len(r) == 6 - len(q) and eos not in r), j
    assert len({tuple(r) for r in out.response_ids[:3]}) > 1  # K draws differ


def test_continuation_logprobs_match_recomputed(tiny):
    model, tok = tiny
    prompts = chat_prompts(tok)
    partials = [[100, 200], [], [5, 6, 7, 8]]
    out = HFEngine(model, tok).generate_continuations(prompts, partials,
                                                     SamplingParams(n=2, temperature=0.7, max_new_tokens=9, seed=5))
    batch = out.to_tensors(tok.pad_token_id)
    with torch.no_grad():
        lp = sequence_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["response_mask"].shape[1],
                               temperature=0.7)
    mask = batch["response_mask"]
    assert ((lp - batch["sampler_logprobs"]).abs() * mask).max() < 1e-4


def test_seeded_continuations_repeat(tiny):
    model, tok = tiny
    engine = HFEngine(model, tok)
    prompts, partials = chat_prompts(tok)[:2], [[1, 2], [3]]
    a = engine.generate_continuations(prompts, partials, SamplingParams(n=4, max_new_tokens=8, seed=11))
    b = engine.generate_continuations(prompts, partials, SamplingParams(n=4, max_new_tokens=8, seed=11))
    c = engine.generate_continuations(prompts, partials, SamplingParams(n=4, max_new_tokens=8, seed=12))
    assert a.response_ids == b.response_ids and a.logprobs == b.logprobs
    assert a.response_ids != c.response_ids


def test_left_padded_batch_equals_each_prefix_alone(tiny):
    model, tok = tiny
    engine = HFEngine(model, tok, micro_batch_size=8)
    prompts = chat_prompts(tok)
    partials = [[9, 8, 7, 6, 5, 4, 3], [], [17]]  # prefixes of very different lengths in one batch
    params = SamplingParams(temperature=0, max_new_tokens=12)
    together = engine.generate_continuations(prompts, partials, params)
    for i in range(3):
        alone = engine.generate_continuations([prompts[i]], [partials[i]], params)
        assert alone.response_ids[0] == together.response_ids[i], i
        torch.testing.assert_close(torch.tensor(alone.logprobs[0]), torch.tensor(together.logprobs[i]),
                                   atol=1e-4, rtol=0)


def test_bad_continuation_requests_are_refused(tiny):
    engine = HFEngine(*tiny)
    with pytest.raises(ValueError, match="partial 0 has 4 tokens, no room left under rollout.max_new_tokens=4"):
        engine.generate_continuations([[1, 2]], [[3, 4, 5, 6]], SamplingParams(max_new_tokens=4))
    with pytest.raises(ValueError, match="one partial response per prompt, got 2 prompts and 1 partials"):
        engine.generate_continuations([[1], [2]], [[3]], SamplingParams())
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        engine.generate_continuations([[1], []], [[3], []], SamplingParams())


def test_mc_values_end_to_end(tiny):
    """A rollout, its states every 3 tokens, K = 4 continuations each, scored by length parity; the
    advantages telescope to R - V(s_0) and the budget counts every continuation."""
    model, tok = tiny
    engine = HFEngine(model, tok)
    prompts = chat_prompts(tok)
    params = SamplingParams(n=2, max_new_tokens=8, seed=0)
    roll = engine.generate(prompts, params)
    batch = roll.to_tensors(tok.pad_token_id)
    mask = batch["response_mask"].bool()
    splits = V.split_positions(mask, every=3)
    req = V.continuation_requests(roll.prompt_ids, roll.response_ids, splits, k=4)
    conts = engine.generate_continuations(req.prompts, req.partials,
                                          SamplingParams(n=4, max_new_tokens=8, seed=1))
    assert conts.prompt_ids == req.repeated()
    full = V.completed_responses(req, conts.response_ids)
    assert all(len(f) <= 8 for f in full)

    def score(ids):  # 1 for an even-length response
        return float(len(ids) % 2 == 0)

    v = V.mc_values(torch.tensor([score(f) for f in full]), 4)
    values = V.values_at_splits(splits, v)
    R = torch.tensor([score(r) for r in roll.response_ids])
    adv, _ = V.vine_advantages(outcome_rewards(R, mask), mask, values, splits)
    torch.testing.assert_close(torch.where(splits, adv, torch.zeros(())).sum(1), R - values[:, 0])
    budget = V.continuation_budget(req, conts.response_ids)
    assert budget.states == int(splits.sum()) and budget.samples == 4 * budget.states
    assert budget.generated_tokens == conts.num_tokens <= V.max_continuation_tokens(req, 8)
