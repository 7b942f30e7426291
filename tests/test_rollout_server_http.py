"""``rlvr rollout-server``'s HTTP layer without vLLM: the real server (``rlvr.rollout.server``) on a
real socket, in a thread of this process, with real clients (:class:`VLLMServerEngine`, raw sockets)
and a stand-in engine (tests/fake_rollout_engine.py; the engine is not what is tested here).

Covered: the shared token on every request, concurrent connections with per-connection timeouts
(an idle or slow client blocks nobody), the trainer refusing to sample from weights it did not push
(versions and a fingerprint of the pushed tensors), one owner of the collective weight group, and
the command's token and listening-address defaults.
"""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.parse

import pytest
import torch

from fake_rollout_engine import FakeEngine, make_model, moved, same, tokenizer
from rlvr.rollout.base import SamplingParams
from rlvr.rollout.remote import RolloutServerError, VLLMServerEngine
from rlvr.rollout.server import TOKEN_ENV, make_server

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def serving(monkeypatch):
    """``serving(engine, **kw)`` -> the URL of a server for ``engine`` (stopped after the test)."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    servers = []

    def start(engine, **kw):
        server = make_server(engine, "127.0.0.1", 0, token=TOKEN, **kw)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def raw(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def client(url: str, **kw) -> VLLMServerEngine:
    return VLLMServerEngine(url, tokenizer, token=TOKEN, **kw)


PARAMS = SamplingParams(n=2, temperature=1.0, max_new_tokens=1)


# ---------------------------------------------------------------------------------------- continuations
def test_continuations_over_http_are_the_engines(serving, tiny_model_path):
    """POST /continue hands prompts, partials and the sampling settings to the engine's
    generate_continuations (here the embedded engine on the tiny model) and its Rollout back."""
    from rlvr.models import load_policy
    from rlvr.rollout.hf import HFEngine

    hf = HFEngine(*load_policy(tiny_model_path))

    class Continuing(FakeEngine):
        def generate_continuations(self, prompts, partials, params):
            return hf.generate_continuations(prompts, partials, params)

    url = serving(Continuing(make_model()))
    remote = client(url)
    prompts, partials = [[1, 2, 3], [4, 5]], [[6, 7], []]
    params = SamplingParams(n=2, max_new_tokens=5, seed=3, stop_token_ids=[9])
    got, want = remote.generate_continuations(prompts, partials, params), hf.generate_continuations(prompts, partials,
                                                                                                    params)
    for field in ("prompt_ids", "response_ids", "finished", "group_ids", "texts"):
        assert getattr(got, field) == getattr(want, field), field
    torch.testing.assert_close(torch.tensor(sum(got.logprobs, [])), torch.tensor(sum(want.logprobs, [])))
    assert got.prompt_ids[0] == [1, 2, 3, 6, 7] and all(len(r) <= 3 for r in got.response_ids[:2])
    with pytest.raises(ValueError, match="partial 0 has 5 tokens, no room left"):  # checked before sending
        remote.generate_continuations([[1]], [[1] * 5], SamplingParams(max_new_tokens=5))
    body = {"prompts": [[1]], "partials": [], "n": 1, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 2}
    status, data = raw(url, "POST", "/continue", json.dumps(body).encode(), AUTH)
    assert status == 400 and "got 1 prompts and 0 partials" in json.loads(data)["error"]


# ---------------------------------------------------------------------------------------------- token
def test_every_request_needs_the_token(serving):
    from safetensors.torch import save

    model = make_model()
    engine = FakeEngine(model)
    url = serving(engine)
    blob = save({k: v + 1 for k, v in model.state_dict().items()})
    requests = [("GET", "/health", None), ("GET", "/shapes", None), ("GET", "/nowhere", None),
                ("POST", "/generate", json.dumps({"prompts": [[1]], "n": 1, "temperature": 1.0, "top_p": 1.0,
                                                  "max_new_tokens": 1}).encode()),
                ("POST", "/continue", json.dumps({"prompts": [[1]], "partials": [[]], "n": 1, "temperature": 1.0,
                                                  "top_p": 1.0, "max_new_tokens": 1}).encode()),
                ("POST", "/weights", blob), ("POST", "/prompt_logprobs", b'{"token_ids": [1, 2]}'),
                ("POST", "/collective/init", b'{"backend": "gloo", "port": 0, "timeout_s": 5}'),
                ("POST", "/collective/close", b"")]
    for method, path, body in requests:
        for headers, code, says in [({}, 401, "no token"), ({"Authorization": "Bearer nope"}, 403, "wrong token"),
                                    ({"Authorization": TOKEN}, 401, "no token")]:
            status, data = raw(url, method, path, body, headers)
            error = json.loads(data)["error"]
            assert (status, "\n" in error) == (code, False), (method, path, headers, status, data)
            assert says in error and TOKEN_ENV in error
    assert same(engine, model) and engine.llm.resets == 0  # nothing reached the engine
    status, data = raw(url, "GET", "/health", None, AUTH)
    assert status == 200 and json.loads(data)["version"] == 0


def test_the_client_takes_the_token_from_its_argument_the_environment_or_the_config(serving, monkeypatch):
    from rlvr.config import load_config

    url = serving(FakeEngine(make_model()))
    with pytest.raises(RolloutServerError, match=f"no token: set {TOKEN_ENV} or rollout.server.token") as e:
        VLLMServerEngine(url, tokenizer)
    assert "\n" not in str(e.value)
    t0 = time.monotonic()
    with pytest.raises(RolloutServerError, match=f"HTTP 403 wrong token.*{TOKEN_ENV}") as e:
        VLLMServerEngine(url, tokenizer, token="nope", reconnect_s=30)  # refused at once, not retried
    assert time.monotonic() - t0 < 5 and "\n" not in str(e.value)
    assert client(url).health()["version"] == 0
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    assert VLLMServerEngine(url, tokenizer).health()["version"] == 0
    monkeypatch.delenv(TOKEN_ENV)
    cfg = load_config(None, [f"rollout.server.url={url}", f"rollout.server.token={TOKEN}"])
    assert VLLMServerEngine.from_config(cfg.rollout.server, tokenizer).health()["version"] == 0
    assert TOKEN not in json.dumps(cfg.to_dict())  # the saved config.yaml (and wandb's copy) do not hold it


# ---------------------------------------------------------------------------------------------- concurrency
def test_an_idle_or_slow_connection_blocks_nobody_and_is_closed_after_the_timeout(serving):
    engine = FakeEngine(make_model())
    url = serving(engine, conn_timeout_s=1.5)
    parts = urllib.parse.urlsplit(url)
    idle = socket.create_connection((parts.hostname, parts.port))  # says nothing
    slow = socket.create_connection((parts.hostname, parts.port))  # announces a body, sends 3 bytes of it
    slow.sendall(f"POST /weights HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                 "Content-Length: 100000\r\n\r\nabc".encode())
    time.sleep(0.2)
    t0 = time.monotonic()
    c = client(url, timeout_s=5, connect_timeout_s=2, reconnect_s=0)
    r = c.generate([[1, 2]], PARAMS)
    assert len(r) == 2 and time.monotonic() - t0 < 3.0  # (blocked: the 5 s timeout)
    for s in (idle, slow):  # the server hangs up on both once they have been silent for conn_timeout_s
        s.settimeout(10)
        t0 = time.monotonic()
        while s.recv(4096):
            pass
        assert time.monotonic() - t0 < 5
        s.close()
    assert c.health()["version"] == 0  # the slow push never reached the engine


def test_concurrent_requests_reach_the_engine_one_at_a_time_and_health_answers_meanwhile(serving):
    engine = FakeEngine(make_model())
    engine.generate_s = 0.5
    url = serving(engine)
    clients = [client(url, timeout_s=10) for _ in range(3)]
    results, errors = [], []

    def sample(c):
        try:
            results.append(c.generate([[1, 2]], PARAMS))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=sample, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    clients[0].health()
    assert time.monotonic() - t0 < 1.0  # not queued behind the generations (1.5 s of them)
    for t in threads:
        t.join(10)
    assert not errors and len(results) == 3 and engine.max_active == 1


# ---------------------------------------------------------------------------------------------- whose weights
def test_the_trainer_refuses_to_sample_from_weights_it_did_not_push(serving):
    model = make_model()
    engine = FakeEngine(model)
    url = serving(engine)
    trainer = client(url, weight_transport="http")
    trainer.sync_weights(moved(model, 1.0), verify=False)
    s = trainer.last_sync
    info = trainer.health()
    assert s["version"] == info["version"] == 1 and s["fingerprint"] == info["fingerprint"] is not None
    assert trainer.generate([[1, 2]], PARAMS).logprobs[0][0] == pytest.approx(engine.weights_sum())

    other = client(url, weight_transport="http")  # same token, another process
    other.sync_weights(moved(make_model(1), 5.0), verify=False)
    with pytest.raises(RolloutServerError, match=r"not pushed by this trainer .*version 2.*version 1") as e:
        trainer.generate([[1, 2]], PARAMS)
    assert "\n" not in str(e.value)
    with pytest.raises(RolloutServerError, match="not pushed by this trainer"):
        client(url).generate([[1, 2]], PARAMS)  # nothing pushed yet: only the checkpoint (version 0) will do
    trainer.sync_weights(model, verify=False)  # its own push again: sampling goes on
    assert trainer.generate([[1, 2]], PARAMS).logprobs[0][0] == pytest.approx(engine.weights_sum())
    assert trainer.last_sync["version"] == 3


def test_a_push_that_arrives_other_than_sent_is_caught_by_the_fingerprint(serving):
    model = make_model()
    engine = FakeEngine(model)
    url = serving(engine)
    trainer = client(url, weight_transport="collective", timeout_s=30)
    trainer.sync_weights(moved(model, 1.0), verify=False)

    def tampered(group, tensor):  # what arrives is not what the trainer sent (and fingerprinted)
        group.broadcast(tensor + 1)

    trainer._broadcast = tampered
    with pytest.raises(RolloutServerError, match="fingerprint of the weights the server received .* != .*sent") as e:
        trainer.sync_weights(moved(model, 1.0), verify=False)
    assert "\n" not in str(e.value)
    with pytest.raises(RolloutServerError, match="not pushed by this trainer"):
        trainer.generate([[1, 2]], PARAMS)
    del trainer._broadcast
    trainer.sync_weights(model, verify=False)
    assert same(engine, model) and len(trainer.generate([[1, 2]], PARAMS)) == 2
    trainer.close()


def test_the_fingerprint_sees_values_dtype_and_names():
    from rlvr.rollout.collective import Fingerprint

    def fp(tensors):
        f = Fingerprint()
        for k, v in tensors.items():
            f.add(k, v)
        return f.hexdigest()

    w = {"a": torch.randn(300, 70), "b": torch.randn(5)}
    assert fp(w) == fp({"b": w["b"].clone(), "a": w["a"].clone()})  # order does not matter
    changed = w["a"].clone()
    changed[0, 0] += 1
    assert fp({**w, "a": changed}) != fp(w)
    assert fp({**w, "a": w["a"].to(torch.bfloat16)}) != fp(w)
    assert fp({"c": w["a"], "b": w["b"]}) != fp(w)


# ------------------------------------------------------------------------------- the weight group's owner
def test_the_weight_group_has_one_owner_until_it_closes(serving):
    model = make_model()
    engine = FakeEngine(model)
    url = serving(engine)
    owner = client(url, weight_transport="collective", timeout_s=30)
    owner.sync_weights(moved(model, 1.0), verify=False)
    group = owner._group
    second = client(url, weight_transport="collective", timeout_s=30)
    t0 = time.monotonic()
    with pytest.raises(RolloutServerError, match="HTTP 409 the weight group belongs to another client") as e:
        second.sync_weights(make_model(2), verify=False)
    assert time.monotonic() - t0 < 5 and "\n" not in str(e.value)
    for path in ("/collective/begin", "/collective/end", "/collective/close"):
        with pytest.raises(RolloutServerError, match="HTTP 409"):
            second._request(path, b'{"tensors": [], "timeout_s": 1}')
    owner.sync_weights(moved(model, 1.0), verify=False)  # untouched: same group, still delivers
    assert owner._group is group and same(engine, model) and owner.last_sync["transport"] == "collective"
    owner.close()  # releases it
    other = make_model(2)
    second.sync_weights(other, verify=False)
    assert same(engine, other)
    second.close()


def test_an_owner_silent_for_its_timeout_loses_the_weight_group(serving):
    model = make_model()
    engine = FakeEngine(model)
    url = serving(engine)
    owner = client(url, weight_transport="collective", timeout_s=3)
    owner.sync_weights(moved(model, 1.0), verify=False)
    time.sleep(3.5)  # a trainer that died without closing: its group is released after its timeout_s
    second = client(url, weight_transport="collective", timeout_s=30)
    other = make_model(2)
    second.sync_weights(other, verify=False)
    assert same(engine, other)
    with pytest.raises(RolloutServerError, match="HTTP 409|not pushed by this trainer"):
        owner.sync_weights(model, verify=False)
    second.close()


# ---------------------------------------------------------------------------------------------- the command
def test_the_command_listens_on_loopback_by_default_and_warns_otherwise():
    import argparse

    from rlvr.commands import rollout_server

    p = argparse.ArgumentParser()
    rollout_server.add_arguments(p)
    assert p.parse_args(["m"]).host == "127.0.0.1"
    for host in ("127.0.0.1", "localhost", "::1"):
        assert rollout_server.exposure_warning(host) is None
    for host in ("0.0.0.0", "10.0.0.3", "::"):
        w = rollout_server.exposure_warning(host)
        assert "token" in w and "firewall" in w and "\n" not in w


def test_the_command_takes_the_token_from_the_environment_or_makes_one():
    from rlvr.commands import rollout_server

    assert rollout_server.resolve_token({TOKEN_ENV: TOKEN}) == (TOKEN, False)
    token, made = rollout_server.resolve_token({})
    assert made and len(token) >= 32 and token != rollout_server.resolve_token({})[0]
    with pytest.raises(SystemExit, match=f"{TOKEN_ENV} is set but empty"):
        rollout_server.resolve_token({TOKEN_ENV: " "})


def test_a_malformed_request_is_a_one_line_400(serving):
    url = serving(FakeEngine(make_model()))
    for body, headers, says in [(b"{not json", {}, "bad request: JSONDecodeError"),
                                (b'{"prompts": [[1]]}', {}, "bad request: KeyError"),
                                (b"{}", {"Content-Length": "-5"}, "bad Content-Length")]:
        status, data = raw(url, "POST", "/generate", body, {**AUTH, **headers})
        error = json.loads(data)["error"]
        assert status == 400 and says in error and "\n" not in error, (status, data)


def _trainer_process(rank: int, url: str, rdzv: str, out) -> None:
    """One of two trainer processes (gloo): process 0 pushes, both sample."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{rdzv}", rank=rank, world_size=2)
    try:
        engine = client(url, weight_transport="http")
        engine.sync_weights(moved(make_model(), 1.0), verify=False)
        out.put((rank, engine._pushed, engine.generate([[1, 2]], PARAMS).logprobs[0][0]))
    except Exception as e:  # noqa: BLE001 - reported to the test
        out.put((rank, None, f"{type(e).__name__}: {e}"))
    finally:
        dist.destroy_process_group()


def test_every_trainer_process_samples_from_process_0s_push(serving, tmp_path):
    """Several trainer processes: process 0 pushes; the others take its record of the push (not the
    server's word) and check their samples against it."""
    import multiprocessing as mp

    engine = FakeEngine(make_model())
    url = serving(engine)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_trainer_process, args=(r, url, str(tmp_path / "rdzv"), out)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict((rank, (pushed, lp)) for rank, pushed, lp in (out.get(timeout=120) for _ in procs))
    for p in procs:
        p.join(30)
    assert got[0][0] is not None and got[1][0] == got[0][0], got
    assert got[0][0]["version"] == 1 and got[0][1] == got[1][1] == pytest.approx(engine.weights_sum())
