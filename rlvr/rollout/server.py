"""``rlvr rollout-server``: vLLM on its own devices (or host), serving generation over HTTP.

The trainer's :class:`rlvr.rollout.remote.VLLMServerEngine` talks to it; JSON in and out, weights
as one safetensors blob::

    GET  /health            {"boot", "model", "dtype", "version"}   boot: an id per server start
    GET  /shapes            {"shapes": {name: shape} | null}  the checkpoint's tensors (what a push must hold)
    POST /generate          {"prompts": [[ids]], "n", "temperature", "top_p", "max_new_tokens",
                             "seed", "stop_token_ids"} -> the Rollout's fields (ids, sampler log-probs)
    POST /weights           body: safetensors bytes of the policy's HF-named tensors -> {"version", ...}
    POST /prompt_logprobs   {"token_ids"} -> {"logprobs"}   (the sync fingerprint's engine side)

Requests are served one at a time (vLLM's engine is not re-entrant here). Choose the devices with
``CUDA_VISIBLE_DEVICES`` (the server's GPUs are not the trainer's); the standard library's
``http.server`` is the transport, so the server adds no dependency beyond vLLM.
"""
from __future__ import annotations

import json
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from rlvr.rollout.base import SamplingParams


class RolloutService:
    """The server's state: one :class:`~rlvr.rollout.vllm.VLLMEngine`, a boot id, a weights version."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.boot = uuid.uuid4().hex
        self.version = 0  # weight pushes since start (0: the checkpoint it loaded)

    def info(self) -> dict[str, Any]:
        return {"boot": self.boot, "model": self.engine.model_path, "dtype": str(self.engine.dtype),
                "version": self.version}

    def shapes(self) -> dict[str, Any]:
        shapes = self.engine.expected_shapes
        return {"shapes": None if shapes is None else {k: list(v) for k, v in shapes.items()}}

    def generate(self, req: dict[str, Any]) -> dict[str, Any]:
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

        t0 = time.perf_counter()
        weights = select_weights(load(blob), self.engine.expected_shapes)
        path = self.engine.sync_path()
        self.engine._push(path, weights)
        self.engine.llm.reset_prefix_cache()
        self.version += 1
        return {"version": self.version, "path": path, "tensors": len(weights), "boot": self.boot,
                "time_s": time.perf_counter() - t0}

    def prompt_logprobs(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"logprobs": self.engine.prompt_logprobs([int(t) for t in req["token_ids"]]).tolist(), "boot": self.boot}


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
                      "/prompt_logprobs": lambda: service.prompt_logprobs(json.loads(body))}
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
