"""The trainer's side of ``rlvr rollout-server``: a :class:`~rlvr.rollout.base.RolloutEngine` over HTTP.

    generate(prompts, params)  -> POST /generate: token ids and the sampler's log-probs
    generate_continuations(prompts, partials, params) -> POST /continue: the same for continuations
                                  of prompt + partial response (:mod:`rlvr.rollout.base`)
    sync_weights(model)        -> the policy's HF-named tensors, by ``weight_transport``:
                                  http: POST /weights, one safetensors blob;
                                  collective: a broadcast per tensor in a two-rank group with the
                                  server (:mod:`rlvr.rollout.collective`; NCCL when both sides are on
                                  CUDA, else gloo), framed by POST /collective/begin and /end;
                                  then the fingerprint of :mod:`rlvr.rollout.vllm`: engine vs
                                  trainer log-probs on a fixed probe text must agree within tolerance

Every request carries the server's token (``token``, else the environment's ``RLVR_ROLLOUT_TOKEN``;
``rollout.server.token`` in a config) and this engine's client id (the collective weight group's
owner is one client). The engine remembers the weights it pushed (the server's boot id and weights
version, and a :class:`~rlvr.rollout.collective.Fingerprint` of the tensors it sent, which the
server's fingerprint of what it received must equal) and refuses samples and log-probs from any
other weights: another client's push is an error, not a silent change of policy.

Every request has a bounded wait: a refused or dropped connection is retried for
``reconnect_s`` seconds (a server being restarted), then it is a one-line
:class:`RolloutServerError`; a server that accepts but does not answer within ``timeout_s`` is one
too. A restarted server (a new boot id) has its checkpoint's weights again: the engine pushes the
last synced policy before it samples (opening a new weight group first, for the collective push).
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import time
import urllib.parse
import uuid
from collections.abc import Iterable
from typing import Any

import torch

from rlvr.errors import RlvrError
from rlvr.rollout.base import Rollout, SamplingParams, continuation_limits
from rlvr.rollout.collective import TRANSPORTS, Fingerprint, WeightGroup, dtype_name, local_address, one_line
from rlvr.rollout.server import CLIENT_HEADER, TOKEN_ENV
from rlvr.rollout.vllm import VLLMEngine, _alias_key, hf_weights, select_weights


def _sharded_world(model: torch.nn.Module | None) -> int:
    """The number of processes ``model`` is sharded over (FSDP2), else 1."""
    from rlvr.fsdp import is_sharded

    if model is None or not is_sharded(model):
        return 1
    return torch.distributed.get_world_size()


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _collective_device() -> torch.device:
    """Where a tensor for the trainer's default process group lives (NCCL: this process's GPU)."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _world() -> int:
    """The number of trainer processes (1 without torch.distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


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
                 collective_port: int = 0, token: str | None = None):
        from rlvr.rollout.vllm import PROBE_TEXT

        if weight_transport not in TRANSPORTS:
            raise ValueError(f"rollout.server.weight_transport must be one of {', '.join(TRANSPORTS)}, "
                             f"got {weight_transport!r}")
        self.url = url.rstrip("/")
        token = (token or os.environ.get(TOKEN_ENV) or "").strip()
        if not token:
            raise RolloutServerError(f"rollout server {self.url}: no token: set {TOKEN_ENV} or rollout.server.token "
                                     f"to the server's (the one `rlvr rollout-server` printed at start, or its "
                                     f"{TOKEN_ENV})")
        self._headers = {"Authorization": f"Bearer {token}", CLIENT_HEADER: uuid.uuid4().hex}
        # the weights this trainer pushed: {"boot", "version", "fingerprint"} (None: nothing yet)
        self._pushed: dict[str, Any] | None = None
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
                   weight_transport=section.weight_transport, collective_port=section.collective_port,
                   token=getattr(section, "token", None))

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
                             headers={"Content-Type": "application/octet-stream", **self._headers})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200:
                    try:
                        detail = json.loads(data).get("error", "")
                    except ValueError:
                        detail = data[:200].decode(errors="replace")
                    if resp.status in (401, 403):
                        detail += f"; set {TOKEN_ENV} or rollout.server.token to the server's token"
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
        return self._sample("/generate", {"prompts": [list(map(int, p)) for p in prompts]}, params)

    def generate_continuations(self, prompts: list[list[int]], partials: list[list[int]],
                               params: SamplingParams) -> Rollout:
        """``params.n`` continuations of each ``prompts[i] + partials[i]`` on the server (see
        :func:`~rlvr.rollout.base.continuation_limits`; checked here before the request)."""
        continuation_limits(prompts, partials, params)
        return self._sample("/continue", {"prompts": [list(map(int, p)) for p in prompts],
                                          "partials": [list(map(int, q)) for q in partials]}, params)

    def _sample(self, path: str, body: dict[str, Any], params: SamplingParams) -> Rollout:
        if self._model is not None and self._restarted():
            self.sync_weights(self._model)  # restarted: it serves its checkpoint again, not the policy
        out = self._request(path, json.dumps({
            **body, "n": params.n, "temperature": params.temperature,
            "top_p": params.top_p, "max_new_tokens": params.max_new_tokens, "seed": params.seed,
            "stop_token_ids": list(params.stop_token_ids)}).encode())
        self._check_weights(out)
        return Rollout(out["prompt_ids"], out["response_ids"], out["logprobs"], out["finished"],
                       out["group_ids"], out["texts"])

    def _restarted(self) -> bool:
        """Whether the server has a new boot id since this trainer's last push. A sharded (FSDP2)
        policy is pushed by every process together (gathering is a collective), so then the processes
        agree on the answer. (Unsharded, only process 0 pushes again; another process that sees the
        restart refuses the server's answers: :meth:`_check_weights`.)"""
        new = self.health()["boot"] != (self._pushed or {}).get("boot", self.boot)
        if _sharded_world(self._model) > 1:
            flag = torch.tensor([float(new)], device=_device(self._model))
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            new = bool(flag.item() > 0)
        return new

    def _check_weights(self, out: dict[str, Any]) -> None:
        """``out`` (an answer that used the server's weights) came from the weights this trainer
        pushed last -- the same server start, weights version and fingerprint -- or, before its first
        push, from the server's checkpoint (version 0). Else a one-line error: another client pushed
        weights (or the server restarted meanwhile)."""
        mine = self._pushed
        if mine is None:
            if out["version"] == 0:
                return
            raise RolloutServerError(
                f"rollout server {self.url}: refusing its weights: not pushed by this trainer (server: weights "
                f"version {out['version']}; this trainer has pushed none, so only the checkpoint, version 0, will do); "
                f"push the policy first (sync_weights)")
        if (out["boot"], out["version"], out.get("fingerprint")) == \
                (mine["boot"], mine["version"], mine["fingerprint"]):
            return
        if out["boot"] != mine["boot"]:
            raise RolloutServerError(f"rollout server {self.url}: restarted since this trainer's last push (stale "
                                     f"weights: its checkpoint's)")
        raise RolloutServerError(
            f"rollout server {self.url}: refusing its weights: not pushed by this trainer (server: weights "
            f"version {out['version']}; this trainer's last push: version {mine['version']}): another client "
            f"with the token pushed weights to it")

    def prompt_logprobs(self, token_ids: list[int]) -> torch.Tensor:
        out = self._request("/prompt_logprobs", json.dumps({"token_ids": list(map(int, token_ids))}).encode())
        self._check_weights(out)
        return torch.tensor(out["logprobs"])

    def _pushed_by(self, out: dict[str, Any], sent: str) -> None:
        """Record a push's answer ``out``; ``sent``: the fingerprint of what this trainer sent."""
        self.boot = out["boot"]
        self._pushed = None  # (until checked)
        if out.get("fingerprint") != sent:
            raise RolloutServerError(f"rollout server {self.url}: the fingerprint of the weights the server received "
                                     f"({out.get('fingerprint')}) != that of the weights this trainer sent ({sent}); "
                                     f"refusing to sample from them")
        self._pushed = {"boot": out["boot"], "version": out["version"], "fingerprint": sent}

    def sync_weights(self, model: torch.nn.Module, *, verify: bool = True) -> None:
        """Push ``model``'s weights (HF names; LoRA merged) and verify the fingerprint.

        Checked here, before any byte is sent: the checkpoint's names and shapes (a tied tensor,
        lm_head sharing the embedding, travels once under the checkpoint's name). The transport is
        :meth:`transport`'s: one safetensors blob over HTTP (any pair of hosts, one CPU copy of the
        weights on the trainer), or a broadcast per tensor (no copy beyond one tensor at a time). FSDP2:
        every process takes part in gathering each full tensor in turn; process 0 sends it."""
        from rlvr.fsdp import full_tensors

        dist = _world() > 1
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
                pushed = self._share_pushed(None)
            if pushed is None:
                raise RolloutServerError(f"rollout server {self.url}: process 0's weight push failed")
            self._pushed, self.boot = pushed, pushed["boot"]
            return
        pushed = None
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
            pushed = self._pushed
        finally:
            if dist:
                self._share_pushed(pushed)

    @staticmethod
    def _share_pushed(pushed: dict[str, Any] | None) -> dict[str, Any] | None:
        """Process 0's record of its push (None: it failed), to every trainer process: they check the
        server's answers against it as process 0 does."""
        box = [pushed]
        torch.distributed.broadcast_object_list(box, src=0, device=_collective_device())
        return box[0]

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
        tensors = {k: v.contiguous().cpu() for k, v in weights}
        fingerprint = Fingerprint()
        for k, v in tensors.items():
            fingerprint.add(k, v)
        blob = save(tensors)
        del tensors
        out = self._request("/weights", blob)
        self.last_sync = {"transport": "http", "path": f"http:{out['path']}", "tensors": out["tensors"],
                          "bytes": len(blob), "version": out["version"], "fingerprint": out.get("fingerprint"),
                          "server_s": out["time_s"], "time_s": time.perf_counter() - t0}
        self._pushed_by(out, fingerprint.hexdigest())

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
        fingerprint = Fingerprint()
        try:
            for k, v in weights:  # one tensor at a time: at most one converted copy exists
                # gloo: CPU tensors; NCCL: the tensor stays on its own GPU
                t = v.to(device=group.device if backend == "gloo" else v.device, dtype=dtype).contiguous()
                fingerprint.add(k, t)  # what is sent (the server fingerprints what it receives)
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
        self.last_sync = {"transport": "collective", "backend": backend, "path": f"{backend}:{out['path']}",
                          "tensors": out["tensors"], "bytes": nbytes, "version": out["version"],
                          "fingerprint": out.get("fingerprint"), "send_s": send_s, "server_s": out["time_s"],
                          "time_s": time.perf_counter() - t0}
        self._pushed_by(out, fingerprint.hexdigest())

    @staticmethod
    def _broadcast(group: WeightGroup, tensor: torch.Tensor) -> None:
        group.broadcast(tensor)  # (a seam for the tests: kill the server midway)

    def close_group(self, *, release: bool = False) -> None:
        """Drop this side of the weight group; ``release``: and tell the server (one attempt, errors
        ignored), which frees the group for another client."""
        opened = self._group is not None
        if self._group is not None:
            self._group.close()
        self._group = self._group_boot = None
        if release and opened:
            try:
                self._request("/collective/close", b"{}", timeout=self.connect_timeout_s, reconnect=False)
            except RolloutServerError:
                pass  # gone, restarted, or no longer ours: nothing to release

    def close(self) -> None:
        self.close_group(release=True)
