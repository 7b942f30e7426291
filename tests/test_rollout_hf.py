"""rlvr.rollout.hf: the embedded decode loop against transformers' generate and our log-probs."""
from __future__ import annotations

import pytest
import torch

from rlvr.models import load_policy, sequence_logprobs
from rlvr.rollout.base import RolloutEngine, SamplingParams
from rlvr.rollout.hf import HFEngine, top_p_filter
from tiny import QUESTIONS, chat_prompts



@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    return load_policy(tiny_model_path)


def _hf_greedy(model, tok, prompts, max_new_tokens):
    """transformers' own greedy decoding on the left-padded batch; tokens up to and incl. EOS."""
    P = max(map(len, prompts))
    ids = torch.tensor([[tok.pad_token_id] * (P - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (P - len(p)) + [1] * len(p) for p in prompts])
    out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new_tokens,
                         pad_token_id=tok.pad_token_id)[:, P:].tolist()
    return [r[: r.index(tok.eos_token_id) + 1] if tok.eos_token_id in r else r for r in out]


def test_engine_implements_protocol(tiny):
    assert isinstance(HFEngine(*tiny), RolloutEngine)


def test_greedy_matches_generate_tiny(tiny):
    model, tok = tiny
    prompts = chat_prompts(tok)
    engine = HFEngine(model, tok, micro_batch_size=2)  # 3 prompts -> 2 micro-batches
    out = engine.generate(prompts, SamplingParams(temperature=0, max_new_tokens=12))
    expected = _hf_greedy(model, tok, prompts, 12)
    assert out.response_ids == expected
    assert len(set(map(tuple, expected))) == 3 and len(set(expected[0])) > 3  # varied, not one repeated token
    assert out.texts == tok.batch_decode(expected, skip_special_tokens=True)


@pytest.mark.slow
def test_greedy_matches_generate_smollm2(smollm2_path):
    model, tok = load_policy(smollm2_path)
    prompts = chat_prompts(tok, QUESTIONS[:2])
    out = HFEngine(model, tok).generate(prompts, SamplingParams(temperature=0, max_new_tokens=8))
    assert out.response_ids == _hf_greedy(model, tok, prompts, 8)
    assert out.finished[0] and out.response_ids[0][-1] == tok.eos_token_id and "5" in out.texts[0]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_logprobs_match_recomputed(tiny, temperature):
    model, tok = tiny
    out = HFEngine(model, tok).generate(chat_prompts(tok), SamplingParams(n=2, temperature=temperature,
                                                                      max_new_tokens=10, seed=3))
    batch = out.to_tensors(tok.pad_token_id)
    mask = batch["response_mask"]
    with torch.no_grad():
        recomputed = sequence_logprobs(model, batch["input_ids"], batch["attention_mask"], mask.shape[1],
                                       temperature=temperature)
    assert ((recomputed - batch["sampler_logprobs"]).abs() * mask).max() < 1e-4
    assert (batch["sampler_logprobs"] * mask).sum() < 0


def test_groups_are_contiguous(tiny):
    model, tok = tiny
    prompts = chat_prompts(tok)[:2]
    out = HFEngine(model, tok, micro_batch_size=3).generate(prompts, SamplingParams(n=3, max_new_tokens=4, seed=0))
    assert len(out) == 6 and out.group_ids == [0, 0, 0, 1, 1, 1]
    assert out.prompt_ids == [prompts[0]] * 3 + [prompts[1]] * 3
    assert len({tuple(r) for r in out.response_ids[:3]}) > 1  # draws differ within a group


def test_max_new_tokens_and_stop_tokens(tiny):
    model, tok = tiny
    prompts = chat_prompts(tok)
    greedy = HFEngine(model, tok).generate(prompts, SamplingParams(temperature=0, max_new_tokens=8))
    assert all(len(r) == 8 for r in greedy.response_ids) and not any(greedy.finished)  # truncated
    stop = greedy.response_ids[0][3]
    out = HFEngine(model, tok).generate(prompts, SamplingParams(temperature=0, max_new_tokens=8,
                                                                stop_token_ids=[stop]))
    for full, resp, fin in zip(greedy.response_ids, out.response_ids, out.finished):
        cut = full.index(stop) + 1 if stop in full else len(full)
        assert resp == full[:cut] and fin == (stop in full)  # ends on the stop token, nothing after
    assert out.finished[0] and len(out.response_ids[0]) <= 4
    assert [len(lp) for lp in out.logprobs] == [len(r) for r in out.response_ids]


def test_seeded_sampling_is_reproducible(tiny):
    model, tok = tiny
    engine, prompts = HFEngine(model, tok), chat_prompts(tok)
    a = engine.generate(prompts, SamplingParams(n=2, max_new_tokens=6, seed=7))
    b = engine.generate(prompts, SamplingParams(n=2, max_new_tokens=6, seed=7))
    c = engine.generate(prompts, SamplingParams(n=2, max_new_tokens=6, seed=8))
    assert a.response_ids == b.response_ids and a.logprobs == b.logprobs
    assert a.response_ids != c.response_ids


def test_mode_restored_and_no_grad(tiny):
    model, tok = tiny
    model.train()
    out = HFEngine(model, tok).generate(chat_prompts(tok)[:1], SamplingParams(max_new_tokens=3, seed=0))
    assert model.training and len(out.response_ids[0]) == 3
    model.eval()
    HFEngine(model, tok).generate(chat_prompts(tok)[:1], SamplingParams(max_new_tokens=2, seed=0))
    assert not model.training
    with pytest.raises(ValueError, match="non-empty"):
        HFEngine(model, tok).generate([[]], SamplingParams())


def test_top_p_filter_keeps_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.3, 0.5]]))
    kept = torch.isfinite(top_p_filter(logits, 0.75))
    assert kept.tolist() == [[True, True, False, False], [False, False, True, True]]
    assert torch.isfinite(top_p_filter(logits, 0.4)).sum(1).tolist() == [1, 1]  # top token always kept
    assert torch.equal(top_p_filter(logits, 1.0), logits)


def test_top_p_logprobs_are_of_the_renormalised_nucleus(tiny):
    model, tok = tiny
    out = HFEngine(model, tok).generate(chat_prompts(tok), SamplingParams(n=2, max_new_tokens=6, top_p=0.5, seed=1))
    batch = out.to_tensors(tok.pad_token_id)
    mask = batch["response_mask"]
    with torch.no_grad():
        full = sequence_logprobs(model, batch["input_ids"], batch["attention_mask"], mask.shape[1])
    # log q = log p - log(nucleus mass) >= log p, and the nucleus holds at least half the mass
    gap = (batch["sampler_logprobs"] - full) * mask
    assert gap.min() > -1e-4 and gap.max() <= torch.log(torch.tensor(2.0)) + 1e-4 and gap.max() > 0


def _few_shot(tok, questions):
    """Chat prompts that share a long first part (system turn and one worked example), as a few-shot
    task's prompts do, then differ in length."""
    return [tok.encode(c, add_special_tokens=False) for c in _few_shot_chats(tok, questions)]


def _few_shot_chats(tok, questions):
    return [tok.apply_chat_template([{"role": "user", "content": "What is 8 + 7 + 1 + 5? Add one at a time."},
                                     {"role": "assistant", "content": "8 + 7 = 15, 15 + 1 = 16, 16 + 5 = 21. The answer is 21."},
                                     {"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
            for q in questions]


def _prefill_tokens(model):
    """Counts the tokens each forward pass embeds (a forward pre-hook on the input embeddings)."""
    seen = []
    handle = model.get_input_embeddings().register_forward_pre_hook(lambda m, a: seen.append(a[0].numel()))
    return seen, handle


@pytest.mark.parametrize("params", [SamplingParams(temperature=0, max_new_tokens=12, capture_block=1),
                                    SamplingParams(n=3, temperature=1.0, max_new_tokens=10, seed=5, capture_block=1)])
def test_a_shared_prompt_prefix_is_prefilled_once_with_the_same_samples(tiny, params):
    """Prompts that begin alike: the common prefix runs once (far fewer prefill tokens), and the
    samples, their log-probs and the captured prompt states are those of the plain left-padded
    prefill (to float rounding)."""
    model, tok = tiny
    prompts = _few_shot(tok, ["What is 2+3?", "Name a colour, please, and say why you like it.", "9 + 1?"])
    common = len(__import__("os").path.commonprefix(prompts))
    assert common >= 40 and len({len(p) for p in prompts}) == 3
    runs = {}
    for share in (16, 0):
        seen, handle = _prefill_tokens(model)
        try:
            runs[share] = HFEngine(model, tok, share_prefix_min=share).generate(prompts, params)
        finally:
            handle.remove()
        runs[share].prefill = sum(seen[:2] if share else seen[:1])
    shared, plain = runs[16], runs[0]
    P = max(map(len, prompts))
    assert plain.prefill == 3 * P
    assert shared.prefill == common + 3 * (P - common)  # the prefix once, then each prompt's own tokens
    assert shared.response_ids == plain.response_ids and shared.finished == plain.finished
    for a, b in zip(shared.logprobs, plain.logprobs):
        assert torch.allclose(torch.tensor(a), torch.tensor(b), atol=1e-5)
    for a, b, p in zip(shared.hidden, plain.hidden, shared.prompt_ids):
        assert a.shape == b.shape and a.shape[0] >= len(p)
        assert torch.allclose(a, b, atol=1e-5)


def test_prompts_that_differ_early_are_prefilled_plainly(tiny):
    """A common prefix shorter than share_prefix_min, or a prompt that is the whole prefix: the plain
    prefill (one forward over the left-padded prompts) and the same greedy samples as generate()."""
    model, tok = tiny
    prompts = [[5, 6, 7, 8], [9, 6, 7], tok.encode("What is 2+3?")]
    seen, handle = _prefill_tokens(model)
    try:
        out = HFEngine(model, tok, share_prefix_min=2).generate(prompts, SamplingParams(temperature=0, max_new_tokens=6))
    finally:
        handle.remove()
    assert seen[0] == 3 * max(map(len, prompts))
    assert out.response_ids == _hf_greedy(model, tok, prompts, 6)
    same = [list(range(10, 30)), list(range(10, 30)) + [40, 41]]  # the first prompt is all prefix
    seen, handle = _prefill_tokens(model)
    try:
        out = HFEngine(model, tok, share_prefix_min=4).generate(same, SamplingParams(temperature=0, max_new_tokens=4))
    finally:
        handle.remove()
    assert seen[:2] == [19, 2 * 3]  # prefix of 19 (each prompt keeps a token of its own), then 1 and 3 tokens
    assert out.response_ids == _hf_greedy(model, tok, same, 4)
