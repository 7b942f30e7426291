"""The collective weight push's protocol without vLLM: ``rlvr.rollout.server`` serving a stand-in
engine (tests/fake_rollout_engine.py) in a thread of this process, the trainer's
:class:`VLLMServerEngine` pushing to it over gloo.

What a real vLLM server adds (the in-place load, the fingerprint, a killed server process) is tested
in tests/test_rollout_server.py.
"""
from __future__ import annotations

import json
import re
import threading
import time

import pytest
import torch

from fake_rollout_engine import FakeEngine, make_model, moved, same, tokenizer
from rlvr.rollout.remote import RolloutServerError, VLLMServerEngine
from rlvr.rollout.server import TOKEN_ENV, serve

TOKEN = "collective-test-token"


@pytest.fixture(autouse=True)
def token(monkeypatch):
    """The clients take the servers' token from the environment (as a trainer does)."""
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


def start(engine) -> str:
    ports: list[int] = []
    threading.Thread(target=serve, args=(engine, "127.0.0.1", 0), kwargs={"ready": ports.append, "token": TOKEN},
                     daemon=True).start()
    deadline = time.monotonic() + 10
    while not ports and time.monotonic() < deadline:
        time.sleep(0.01)
    return f"http://127.0.0.1:{ports[0]}"


def test_collective_push_delivers_every_tensor_and_reuses_its_group():
    model = make_model()
    engine = FakeEngine(model)
    client = VLLMServerEngine(start(engine), tokenizer, weight_transport="collective", timeout_s=30)
    try:
        assert client.transport(model) == ("collective", "gloo")
        client.sync_weights(moved(model, 1.0), verify=False)
        assert same(engine, model) and engine.llm.resets == 1
        s = client.last_sync
        assert (s["transport"], s["backend"], s["tensors"], s["version"]) == ("collective", "gloo", 4, 1)
        assert s["bytes"] == sum(v.numel() * 4 for v in model.state_dict().values()) and s["time_s"] > 0
        group = client._group
        client.sync_weights(moved(model, 1.0), verify=False)
        assert client._group is group and same(engine, model) and client.last_sync["version"] == 2
    finally:
        client.close()


def test_auto_is_http_on_cpu_and_collective_is_refused_by_a_multiprocess_engine():
    model = make_model()
    engine = FakeEngine(model, path="reload_from_disk")  # what a tensor-parallel server reports
    url = start(engine)
    auto = VLLMServerEngine(url, tokenizer, weight_transport="auto")
    assert auto.transport(model) == ("http", None)
    auto.sync_weights(moved(model, 1.0), verify=False)
    assert auto.last_sync["transport"] == "http" and same(engine, model)
    forced = VLLMServerEngine(url, tokenizer, weight_transport="collective")
    with pytest.raises(RolloutServerError, match="weight_transport=collective is not possible: .*other processes") as e:
        forced.sync_weights(model, verify=False)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="rollout.server.weight_transport must be one of http, collective, auto"):
        VLLMServerEngine(url, tokenizer, weight_transport="nccl")


def test_the_server_refuses_announced_tensors_that_are_not_its_checkpoints():
    model = make_model()
    engine = FakeEngine(model)
    client = VLLMServerEngine(start(engine), tokenizer, weight_transport="collective", timeout_s=30)
    group = client._open_group("gloo")
    refused = r"HTTP 500 .*announced tensors do not match .*1 missing \(e.g. 2.bias\)"
    with pytest.raises(RolloutServerError, match=refused):
        client._request("/collective/begin", json.dumps({"tensors": [
            [k, list(v.shape), "float32"] for k, v in model.state_dict().items() if k != "2.bias"]}).encode())
    client.sync_weights(moved(model, 1.0), verify=False)  # nothing was received: the group still works
    assert client._group is group and same(engine, model)
    client.close()


def test_a_trainer_that_stops_midway_leaves_the_server_on_its_checkpoint_with_a_new_boot():
    model = make_model()
    engine = FakeEngine(model)
    client = VLLMServerEngine(start(engine), tokenizer, weight_transport="collective", timeout_s=30)
    client.sync_weights(moved(model, 1.0), verify=False)
    boot = client.boot
    sent = []

    def dies_after_two(group, tensor):
        if len(sent) == 2:
            group.close()  # as if the trainer process were gone: its connections close
        sent.append(tensor)
        group.broadcast(tensor)

    client._broadcast = dies_after_two
    t0 = time.monotonic()
    with pytest.raises(RolloutServerError, match=r"collective weight push \(gloo\) failed after 2 of 4 tensors"):
        client.sync_weights(moved(model, 1.0), verify=False)
    assert time.monotonic() - t0 < 10
    deadline = time.monotonic() + 10
    while client.health()["boot"] == boot and time.monotonic() < deadline:
        time.sleep(0.05)
    info = client.health()
    assert info["boot"] != boot and info["version"] == 0
    assert all(torch.equal(engine.state[k], v) for k, v in engine.checkpoint.items())  # not a mix
    del client._broadcast
    client.sync_weights(model, verify=False)  # a new group with the new boot
    assert same(engine, model) and client.last_sync["version"] == 1
    client.close()


def test_a_server_whose_load_fails_midway_is_a_bounded_one_line_error():
    model = make_model()
    engine = FakeEngine(model)
    client = VLLMServerEngine(start(engine), tokenizer, weight_transport="collective", timeout_s=30)
    engine.fail_after = 2
    t0 = time.monotonic()
    with pytest.raises(RolloutServerError) as e:
        client.sync_weights(moved(model, 1.0), verify=False)
    assert time.monotonic() - t0 < 10 and "\n" not in str(e.value)
    # the server's receive failed and closed its side: either the broadcast fails, or /collective/end says why
    assert re.search(r"failed after \d of 4 tensors|the loader failed; the server reloaded its checkpoint",
                     str(e.value))
    engine.fail_after = None
    client.sync_weights(model, verify=False)
    assert same(engine, model)
    client.close()


def test_the_weight_group_is_independent_of_the_default_group(tmp_path):
    """A trainer with its own default group (accelerate/DDP): the push neither uses nor disturbs it,
    and the engine is built from rollout.server (weight_transport, collective_port) like the trainer's."""
    import torch.distributed as dist

    from rlvr.config import load_config

    model = make_model()
    engine = FakeEngine(model)
    url = start(engine)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rdzv'}", rank=0, world_size=1)
    try:
        overrides = [f"rollout.server.url={url}", "rollout.server.weight_transport=collective"]
        section = load_config(None, overrides).rollout.server
        client = VLLMServerEngine.from_config(section, tokenizer)
        assert (client.weight_transport, client.collective_port) == ("collective", 0)
        client.sync_weights(moved(model, 1.0), verify=False)
        assert same(engine, model) and client._group.pg is not dist.group.WORLD
        x = torch.ones(3)
        dist.all_reduce(x)  # the default group still works
        assert x.tolist() == [1.0, 1.0, 1.0]
        client.close()
    finally:
        dist.destroy_process_group()
