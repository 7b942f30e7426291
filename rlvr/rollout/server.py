"""``rlvr rollout-server``: vLLM on its own devices (or host), serving generation over HTTP.

The trainer's :class:`rlvr.rollout.remote.VLLMServerEngine` talks to it; JSON in and out, weights
as one safetensors blob::

    GET  /health            {"boot", "model", "dtype", "version"}   boot: an id per server start
    GET  /shapes            {"shapes": {name: shape} | null}  the checkpoint's tensors (what a push must hold)
    POST /generate          {"prompts": [[ids]], "n", "temperature", "top_p", "max_new_tokens",
                             "seed", "stop_token_ids"} -> the Rollout's fields (ids, sampler log-probs)
    POST /weights           body: safetensors bytes of the policy's HF-named tensors -> {"version", ...}
    POST /prompt_logprobs   {"token_ids"} -> {"logprobs"}   (the sync fingerprint's engine side)

The collective weight push (:mod:`rlvr.rollout.collective`; the engine must run in this process:
tensor parallel 1, ``/health`` says ``"collective": true``)::

    POST /collective/init   {"backend": "gloo"|"nccl", "port", "timeout_s"} -> {"port"}: the server
                            hosts the rendezvous there and joins the two-rank group in a thread
    POST /collective/begin  {"tensors": [[name, shape, dtype], ...]} (checked against /shapes) -> a
                            receiver thread takes the broadcasts one tensor at a time, straight
                            into the engine's in-place load
    POST /collective/end    {"timeout_s"} -> joins it: {"version", "tensors", "bytes", "time_s", ...}
    POST /collective/close  drops the group

A receive that fails midway (the trainer died, a timeout) leaves the engine on a mix of weights: the
server reloads its checkpoint and takes a new boot id, so a trainer pushes again before sampling.

Requests are served one at a time (vLLM's engine is not re-entrant here; while a collective push is
being received, generation is refused). Choose the devices with ``CUDA_VISIBLE_DEVICES`` (the
server's GPUs are not the trainer's); the standard library's ``http.server`` is the transport, so
the server adds no dependency beyond vLLM.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from rlvr.rollout.base import SamplingParams
from rlvr.rollout.collective import BACKENDS, WeightGroup, one_line, parse_dtype


class RolloutService:
    """The server's state: one :class:`~rlvr.rollout.vllm.VLLMEngine`, a boot id, a weights version."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.boot = uuid.uuid4().hex
        self.version = 0  # weight pushes since start (0: the checkpoint it loaded)
        self.device = getattr(engine, "device_type", "cpu")
        self.group: WeightGroup | None = None
        self._joining: tuple[threading.Thread, dict[str, Any], float] | None = None  # a group being opened
        self._receiving: tuple[threading.Thread, dict[str, Any]] | None = None  # a push being received
        self._collective_refusal: str | None | bool = False  # not probed yet

    def info(self) -> dict[str, Any]:
        refusal = self.collective_refusal()
        return {"boot": self.boot, "model": self.engine.model_path, "dtype": str(self.engine.dtype),
                "version": self.version, "device": self.device, "collective": refusal is None,
                "collective_refusal": refusal}

    def shapes(self) -> dict[str, Any]:
        shapes = self.engine.expected_shapes
        return {"shapes": None if shapes is None else {k: list(v) for k, v in shapes.items()}}

    def _check_idle(self) -> None:
        if self._receiving is not None and self._receiving[0].is_alive():
            raise RuntimeError("a collective weight push is being received; the engine is busy until "
                               "POST /collective/end")

    def generate(self, req: dict[str, Any]) -> dict[str, Any]:
        self._check_idle()
        params = SamplingParams(n=int(req["n"]), temperature=float(req["temperature"]), top_p=float(req["top_p"]),
                                max_new_tokens=int(req["max_new_tokens"]), seed=req.get("seed"),
                                stop_token_ids=tuple(req.get("stop_token_ids") or ()))
        r = self.engine.generate([list(map(int, p)) for p in req["prompts"]], params)
        return {"prompt_ids": r.prompt_ids, "response_ids": r.response_ids, "logprobs": r.logprobs,
                "finished": r.finished, "group_ids": r.group_ids, "texts": r.texts, "boot": self.boot,
                "version": self.version}

    def load_weights(self, blob: bytes) -> dict[str, Any]:
        """Load HF-named tensors into the live engine (the engine's own checked path), then drop the
        prefix cache: cached KV of the old weights must not serve the new policy."""
        from safetensors.torch import load

        from rlvr.rollout.vllm import select_weights

        self._check_idle()
        t0 = time.perf_counter()
        weights = select_weights(load(blob), self.engine.expected_shapes)
        path = self.engine.sync_path()
        self.engine._push(path, weights)
        self.engine.llm.reset_prefix_cache()
        self.version += 1
        return {"version": self.version, "path": path, "tensors": len(weights), "boot": self.boot,
                "time_s": time.perf_counter() - t0}

    def prompt_logprobs(self, req: dict[str, Any]) -> dict[str, Any]:
        self._check_idle()
        return {"logprobs": self.engine.prompt_logprobs([int(t) for t in req["token_ids"]]).tolist(), "boot": self.boot}

    # ------------------------------------------------------------------ the collective weight push
    def collective_refusal(self) -> str | None:
        """None when the engine can take a collective push, else why not (one line; probed once)."""
        if self._collective_refusal is False:
            try:
                path = self.engine.sync_path()
            except Exception as e:  # noqa: BLE001 - no in-place load at all: said, not raised
                self._collective_refusal = one_line(e)
            else:
                self._collective_refusal = None if path != "reload_from_disk" else (
                    "the engine's workers run in other processes (tensor parallel > 1 or "
                    "VLLM_ENABLE_V1_MULTIPROCESSING=1); the collective weight push needs the engine in the "
                    "server's process: use rollout.server.weight_transport=http")
        return self._collective_refusal

    def collective_init(self, req: dict[str, Any], address: str) -> dict[str, Any]:
        """Open the rendezvous on ``req["port"]`` (0: a free one) at ``address`` (where the trainer
        reached this server) and join the group in a thread; the trainer joins after this answer."""
        refusal = self.collective_refusal()
        if refusal is not None:
            raise RuntimeError(f"collective weight push unavailable: {refusal}")
        backend = str(req["backend"])
        if backend not in BACKENDS:
            raise ValueError(f"unknown collective backend {backend!r} (one of {', '.join(BACKENDS)})")
        if backend == "nccl" and self.device != "cuda":
            raise RuntimeError(f"the nccl backend needs the server's engine on CUDA (it is on {self.device})")
        timeout_s = float(req["timeout_s"])
        self._settle(timeout_s)
        self.collective_close()
        pending = WeightGroup.host(backend, int(req.get("port") or 0), timeout_s=timeout_s, address=address)
        state: dict[str, Any] = {}

        def join() -> None:
            try:
                state["group"] = pending.join()
            except Exception as e:  # noqa: BLE001 - reported by /collective/begin
                state["error"] = one_line(e)

        thread = threading.Thread(target=join, name="rlvr-weight-group", daemon=True)
        thread.start()
        self._joining = (thread, state, timeout_s)
        return {"port": pending.port, "backend": backend, "boot": self.boot}

    def _joined_group(self) -> WeightGroup:
        if self._joining is not None:
            thread, state, timeout_s = self._joining
            thread.join(timeout_s)
            if thread.is_alive():
                raise RuntimeError(f"the trainer did not join the weight group within {timeout_s:g} s")
            self._joining = None
            if "error" in state:
                raise RuntimeError(f"opening the weight group failed: {state['error']}")
            self.group = state["group"]
        if self.group is None or self.group.broken:
            raise RuntimeError("no weight group: POST /collective/init first")
        return self.group

    def collective_begin(self, req: dict[str, Any]) -> dict[str, Any]:
        """Check the announced tensors, then receive them in a thread (the trainer broadcasts next)."""
        group = self._joined_group()
        self._settle(group.timeout_s)
        meta = [(str(name), tuple(int(d) for d in shape), parse_dtype(dtype)) for name, shape, dtype in req["tensors"]]
        check_names(meta, self.engine.expected_shapes)
        state: dict[str, Any] = {"t0": time.perf_counter()}
        thread = threading.Thread(target=self._receive, args=(group, meta, state), name="rlvr-weight-receiver",
                                  daemon=True)
        self._receiving = (thread, state)
        thread.start()
        return {"tensors": len(meta), "boot": self.boot}

    def _receive(self, group: WeightGroup, meta: list[tuple[str, tuple[int, ...], Any]], state: dict[str, Any]) -> None:
        import torch

        counts = {"tensors": 0, "bytes": 0}
        deadline = time.monotonic() + group.timeout_s

        def stream():  # one tensor in flight: received, then loaded, then the next
            for name, shape, dtype in meta:
                t = torch.empty(shape, dtype=dtype, device=group.device)
                group.broadcast(t)
                group.wait_all(deadline)  # NCCL: received before vLLM reads it (bounded); gloo: no-op
                counts["tensors"] += 1
                counts["bytes"] += t.numel() * t.element_size()
                yield name, t

        try:
            path = self.engine.sync_path()
            tensors = stream()
            self.engine._push(path, tensors)
            left = sum(1 for _ in tensors)  # the trainer sends them all: take the rest before failing
            if left:
                raise RuntimeError(f"the engine's loader stopped after {len(meta) - left} of {len(meta)} tensors")
            self.engine.llm.reset_prefix_cache()
            self.version += 1
            state["result"] = {"version": self.version, "path": path, "backend": group.backend, "boot": self.boot,
                               "time_s": time.perf_counter() - state["t0"], **counts}
        except Exception as e:  # noqa: BLE001 - reported by /collective/end
            state["error"] = str(e).splitlines()[0] if isinstance(e, RuntimeError) else one_line(e)
            group.close()
            self.group = None
            self._restore_checkpoint(state)

    def _restore_checkpoint(self, state: dict[str, Any]) -> None:
        """After a failed receive: the checkpoint's weights again, and a new boot id (as after a
        restart: a trainer that sees it pushes the policy before it samples)."""
        try:
            self.engine.reload_checkpoint()
            state["restored"] = "the server reloaded its checkpoint"
        except Exception as e:  # noqa: BLE001
            state["restored"] = f"reloading its checkpoint failed too ({one_line(e)}); restart the server"
        self.boot = uuid.uuid4().hex
        self.version = 0

    def _settle(self, timeout_s: float) -> None:
        """Let a receive that nobody ended finish (a failed one reloads the checkpoint), then drop it."""
        if self._receiving is not None:
            self._receiving[0].join(timeout_s)
            self._check_idle()
            self._receiving = None

    def collective_end(self, req: dict[str, Any]) -> dict[str, Any]:
        """Wait (at most ``req["timeout_s"]``) for the receiver; its result, or its error."""
        if self._receiving is None:
            raise RuntimeError("no collective weight push in progress (POST /collective/begin first)")
        thread, state = self._receiving
        thread.join(float(req.get("timeout_s", 600)))
        if thread.is_alive():
            raise RuntimeError("receiving the weights did not finish in time")
        self._receiving = None
        if "error" in state:
            raise RuntimeError(f"collective weight push failed on the server: {state['error']}; {state['restored']}")
        return state["result"]

    def collective_close(self, req: dict[str, Any] | None = None) -> dict[str, Any]:
        self._check_idle()
        if self.group is not None:
            self.group.close()
        self.group = None
        self._joining = None  # a join still waiting times out by itself
        return {"closed": True}


def check_names(meta: list[tuple[str, tuple[int, ...], Any]], expected: dict[str, tuple[int, ...]] | None) -> None:
    """The announced tensors must be exactly the checkpoint's, with its shapes (else nothing is received)."""
    if expected is None:
        return
    names = [m[0] for m in meta]
    missing = sorted(set(expected) - set(names))
    unknown = sorted(set(names) - set(expected))
    bad = sorted(f"{n} {s} != {expected[n]}" for n, s, _ in meta if n in expected and s != tuple(expected[n]))
    problems = [f"{len(missing)} missing (e.g. {', '.join(missing[:3])})" if missing else "",
                f"{len(unknown)} not in the engine's checkpoint (e.g. {', '.join(unknown[:3])})" if unknown else "",
                f"{len(bad)} with another shape (e.g. {'; '.join(bad[:3])})" if bad else "",
                "duplicate names" if len(set(names)) != len(names) else ""]
    problems = [p for p in problems if p]
    if problems:
        raise RuntimeError("weight sync refused, the announced tensors do not match the engine's model: "
                           + "; ".join(problems))


def make_handler(service: RolloutService):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: Any) -> None:  # one line per request on stderr is noise
            pass

        def _send(self, code: int, obj: dict[str, Any]) -> None:
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path == "/health":
                self._send(200, service.info())
            elif self.path == "/shapes":
                self._send(200, service.shapes())
            else:
                self._send(404, {"error": f"no such endpoint: GET {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            routes = {"/generate": lambda: service.generate(json.loads(body)),
                      "/weights": lambda: service.load_weights(body),
                      "/prompt_logprobs": lambda: service.prompt_logprobs(json.loads(body)),
                      # the rendezvous listens where the trainer reached this server
                      "/collective/init": lambda: service.collective_init(json.loads(body),
                                                                          self.connection.getsockname()[0]),
                      "/collective/begin": lambda: service.collective_begin(json.loads(body)),
                      "/collective/end": lambda: service.collective_end(json.loads(body or b"{}")),
                      "/collective/close": lambda: service.collective_close()}
            if self.path not in routes:
                self._send(404, {"error": f"no such endpoint: POST {self.path}"})
                return
            try:
                self._send(200, routes[self.path]())
            except Exception as e:  # the client raises it as a one-line error
                self._send(500, {"error": f"{type(e).__name__}: {e}".splitlines()[0]})

    return Handler


def serve(engine, host: str = "127.0.0.1", port: int = 8000, *, ready=None) -> None:
    """Serve ``engine`` until interrupted. ``ready(port)`` is called once the socket listens."""
    server = HTTPServer((host, port), make_handler(RolloutService(engine)))
    if ready is not None:
        ready(server.server_address[1])
    try:
        server.serve_forever()
    finally:
        server.server_close()
