"""The trainer's side of ``rlvr rollout-server``: a :class:`~rlvr.rollout.base.RolloutEngine` over HTTP.

    generate(prompts, params)  -> POST /generate: token ids and the sampler's log-probs
    sync_weights(model)        -> the policy's HF-named tensors, by ``weight_transport``:
                                  http: POST /weights, one safetensors blob;
                                  collective: a broadcast per tensor in a two-rank group with the
                                  server (:mod:`rlvr.rollout.collective`; NCCL when both sides are on
                                  CUDA, else gloo), framed by POST /collective/begin and /end;
                                  then the fingerprint of :mod:`rlvr.rollout.vllm`: engine vs
                                  trainer log-probs on a fixed probe text must agree within tolerance

Every request has a bounded wait: a refused or dropped connection is retried for
``reconnect_s`` seconds (a server being restarted), then it is a one-line
:class:`RolloutServerError`; a server that accepts but does not answer within ``timeout_s`` is one
too. A restarted server (a new boot id) has its checkpoint's weights again: the engine pushes the
last synced policy before it samples (opening a new weight group first, for the collective push).
"""
from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.parse
from collections.abc import Iterable
from typing import Any

import torch

from rlvr.errors import RlvrError
from rlvr.rollout.base import Rollout, SamplingParams
from rlvr.rollout.collective import TRANSPORTS, WeightGroup, dtype_name, local_address, one_line
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
                 reconnect_s: float = 60.0, verify_tol: float | None = None, weight_transport: str = "auto",
                 collective_port: int = 0):
        from rlvr.rollout.vllm import PROBE_TEXT

        if weight_transport not in TRANSPORTS:
            raise ValueError(f"rollout.server.weight_transport must be one of {', '.join(TRANSPORTS)}, "
                             f"got {weight_transport!r}")
        self.url = url.rstrip("/")
        self.timeout_s, self.connect_timeout_s, self.reconnect_s = timeout_s, connect_timeout_s, reconnect_s
        self.verify_tol = verify_tol
        self.weight_transport, self.collective_port = weight_transport, int(collective_port)
        self._group: WeightGroup | None = None  # the collective push's group (opened on first use)
        self._group_boot: str | None = None  # the server start it was opened with
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
                   reconnect_s=section.reconnect_s, verify_tol=section.verify_tol,
                   weight_transport=section.weight_transport, collective_port=section.collective_port)

    # ------------------------------------------------------------------ transport
    def _request(self, path: str, body: bytes | None = None, *, timeout: float | None = None,
                 reconnect: bool = True) -> dict[str, Any]:
        """GET (no body) or POST ``path``; JSON answer. Bounded: see the module docstring.
        ``reconnect=False``: one attempt (a refused connection is an error at once)."""
        url = self.url + path
        parts = urllib.parse.urlsplit(self.url)
        read_timeout = timeout or self.timeout_s
        deadline = time.monotonic() + (self.reconnect_s if reconnect else 0.0)
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

        Checked here, before any byte is sent: the checkpoint's names and shapes (a tied tensor,
        lm_head sharing the embedding, travels once under the checkpoint's name). The transport is
        :meth:`transport`'s: one safetensors blob over HTTP (any pair of hosts, one CPU copy of the
        weights on the trainer), or a broadcast per tensor (no copy beyond one tensor at a time). FSDP2:
        every process takes part in gathering each full tensor in turn; process 0 sends it."""
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
        try:
            weights = select_weights(hf_weights(model), self.expected_shapes)
            keys = {k: _alias_key(v) for k, v in weights}
            first: list[str] = []  # (with no checkpoint to check against, the first name of a tied tensor)
            seen: set = set()
            for k, _ in weights:
                if keys[k] not in seen:
                    seen.add(keys[k])
                    first.append(k)
            send = set(first)
            shapes = {k: list(v.shape) for k, v in weights}  # (a sharded tensor's shape is the full one)

            def stream():  # full tensors one at a time (FSDP2: gathered, every process taking part)
                for k, v in full_tensors(weights):
                    if k in send:
                        yield k, v.detach()

            transport, backend = self.transport(model)
            if transport == "http":
                self._push_http(stream())
            else:
                self._push_collective(stream(), backend, [(k, shapes[k]) for k in first])
            self._model = model
            if verify:
                self.verify_sync(model)
        finally:
            if dist:
                torch.distributed.barrier()

    def transport(self, model: torch.nn.Module) -> tuple[str, str | None]:
        """``("http", None)`` or ``("collective", "nccl" | "gloo")`` for a push of ``model`` now.

        ``weight_transport=auto``: the collective push over NCCL when the trainer's weights and the
        server's engine are on CUDA and the server can take it (engine in its process, tensor
        parallel 1), else HTTP. ``collective``: NCCL in that case, gloo (CPU tensors) otherwise; a
        one-line error where the server cannot take it."""
        if self.weight_transport == "http":
            return "http", None
        info = self.health()
        both_cuda = next(model.parameters()).device.type == "cuda" and info.get("device") == "cuda"
        if self.weight_transport == "auto":
            return ("collective", "nccl") if both_cuda and info.get("collective") else ("http", None)
        if not info.get("collective"):
            raise RolloutServerError(f"rollout server {self.url}: rollout.server.weight_transport=collective "
                                     f"is not possible: {info.get('collective_refusal') or 'an older server'}")
        return "collective", "nccl" if both_cuda else "gloo"

    def _push_http(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        from safetensors.torch import save

        t0 = time.perf_counter()
        blob = save({k: v.contiguous().cpu() for k, v in weights})
        out = self._request("/weights", blob)
        self.boot = out["boot"]
        self.last_sync = {"transport": "http", "path": f"http:{out['path']}", "tensors": out["tensors"],
                          "bytes": len(blob), "version": out["version"], "server_s": out["time_s"],
                          "time_s": time.perf_counter() - t0}

    def _open_group(self, backend: str) -> WeightGroup:
        """The weight group with the server, opened anew after a server restart (a new boot id) or a
        failed push."""
        boot = self.health()["boot"]
        group = self._group
        if group is not None and not group.broken and group.backend == backend and self._group_boot == boot:
            return group
        self.close_group()
        out = self._request("/collective/init", json.dumps(
            {"backend": backend, "port": self.collective_port, "timeout_s": self.timeout_s}).encode())
        host = urllib.parse.urlsplit(self.url).hostname or "127.0.0.1"
        try:
            group = WeightGroup.connect(backend, host, out["port"], timeout_s=self.timeout_s,
                                        address=local_address(host, out["port"]))
        except Exception as e:  # noqa: BLE001 - the rendezvous failed or timed out
            raise RolloutServerError(f"rollout server {self.url}: opening the {backend} weight group on port "
                                     f"{out['port']} failed ({one_line(e)}); is that port reachable from "
                                     f"here (rollout.server.collective_port)?") from None
        self._group, self._group_boot = group, out["boot"]
        return group

    def _push_collective(self, weights: Iterable[tuple[str, torch.Tensor]], backend: str,
                         shapes: list[tuple[str, list[int]]]) -> None:
        """Announce ``shapes`` (name, shape; the order of ``weights``), then broadcast each tensor."""
        t0 = time.perf_counter()
        group = self._open_group(backend)
        dtype = self.dtype  # sent as the engine's dtype (its load would cast anyway): fewer bytes
        meta = [(k, shape, dtype_name(dtype)) for k, shape in shapes]
        self._request("/collective/begin", json.dumps({"tensors": meta}).encode())
        sent = nbytes = 0
        deadline = time.monotonic() + self.timeout_s
        try:
            for _, v in weights:  # one tensor at a time: at most one converted copy exists
                # gloo: CPU tensors; NCCL: the tensor stays on its own GPU
                t = v.to(device=group.device if backend == "gloo" else v.device, dtype=dtype).contiguous()
                self._broadcast(group, t)
                # NCCL: done before the next (a converted copy is freed, not queued; a dead server
                # is seen by the deadline); gloo's broadcast has returned when it is done
                group.wait_all(deadline)
                sent += 1
                nbytes += t.numel() * t.element_size()
        except Exception as e:  # noqa: BLE001 - the server died, hung, or the group broke
            self.close_group()
            reason = str(e).splitlines()[0] if isinstance(e, RuntimeError) else one_line(e)
            try:  # the server's side of the story, if it is still there (one attempt, no reconnecting)
                self._request("/collective/end", json.dumps({"timeout_s": self.timeout_s}).encode(), reconnect=False)
            except RolloutServerError as server_side:
                if "HTTP 500" in str(server_side):
                    reason += f" (server: {str(server_side).split('HTTP 500 ', 1)[1]})"
            raise RolloutServerError(f"rollout server {self.url}: collective weight push ({backend}) failed after "
                                     f"{sent} of {len(meta)} tensors: {reason}") from None
        send_s = time.perf_counter() - t0
        try:
            out = self._request("/collective/end", json.dumps({"timeout_s": self.timeout_s}).encode())
        except RolloutServerError:
            self.close_group()
            raise
        self.boot = out["boot"]
        self.last_sync = {"transport": "collective", "backend": backend, "path": f"{backend}:{out['path']}",
                          "tensors": out["tensors"], "bytes": nbytes, "version": out["version"],
                          "send_s": send_s, "server_s": out["time_s"], "time_s": time.perf_counter() - t0}

    @staticmethod
    def _broadcast(group: WeightGroup, tensor: torch.Tensor) -> None:
        group.broadcast(tensor)  # (a seam for the tests: kill the server midway)

    def close_group(self) -> None:
        if self._group is not None:
            self._group.close()
        self._group = self._group_boot = None

    def close(self) -> None:
        self.close_group()
