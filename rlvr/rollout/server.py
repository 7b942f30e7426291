"""``rlvr rollout-server``: vLLM on its own devices (or host), serving generation over HTTP.

The trainer's :class:`rlvr.rollout.remote.VLLMServerEngine` talks to it; JSON in and out, weights
as one safetensors blob. Every request carries the server's token (``Authorization: Bearer TOKEN``;
:data:`TOKEN_ENV`, or one made and printed at start), compared in constant time; without it the
answer is 401, with another one 403, and the request goes no further::

    GET  /health            {"boot", "model", "dtype", "version", "fingerprint"}   boot: an id per
                            server start; version: pushes since then; fingerprint: of the last push
    GET  /shapes            {"shapes": {name: shape} | null}  the checkpoint's tensors (what a push must hold)
    POST /generate          {"prompts": [[ids]], "n", "temperature", "top_p", "max_new_tokens",
                             "seed", "stop_token_ids"} -> the Rollout's fields (ids, sampler log-probs)
    POST /continue          the same with "partials": [[ids]] (a partial response per prompt) -> the
                            Rollout of ``generate_continuations``: n continuations of each prefix
    POST /weights           body: safetensors bytes of the policy's HF-named tensors -> {"version",
                            "fingerprint", ...} (:class:`~rlvr.rollout.collective.Fingerprint` of the
                            tensors received: the trainer compares it with what it sent)
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

The group has one owner: the client (``X-Rlvr-Client``, an id per trainer engine) whose
``/collective/init`` opened it, until it closes it or makes no request for the ``timeout_s`` it
opened the group with. Another client's ``/collective/*`` is refused with 409 meanwhile.

A receive that fails midway (the trainer died, a timeout) leaves the engine on a mix of weights: the
server reloads its checkpoint and takes a new boot id, so a trainer pushes again before sampling.

Connections are served concurrently, each in its own thread with a per-connection socket timeout
(an idle or slow client holds only its own thread); the engine is entered by one request at a time
(vLLM's engine is not re-entrant here; while a collective push is being received, generation is
refused), ``/health`` does not wait for it. Choose the devices with ``CUDA_VISIBLE_DEVICES`` (the
server's GPUs are not the trainer's); the standard library's ``http.server`` is the transport, so
the server adds no dependency beyond vLLM.
"""
from __future__ import annotations

import functools
import hmac
import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rlvr.rollout.base import SamplingParams
from rlvr.rollout.collective import BACKENDS, Fingerprint, WeightGroup, one_line, parse_dtype

TOKEN_ENV = "RLVR_ROLLOUT_TOKEN"  # the shared token, on both sides
CLIENT_HEADER = "X-Rlvr-Client"  # a client's id (the weight group's owner is one)
DRAIN_LIMIT = 1 << 20  # a refused request's body is read up to this size (then the connection is closed)


class Refused(Exception):
    """A request refused with HTTP ``code`` (4xx) and a one-line reason."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def _locked(method):
    """Run ``method`` holding the service's lock (one request in the engine or the group at a time)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return wrapper


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
        self.fingerprint: str | None = None  # of the last push (None: the checkpoint)
        self._lock = threading.RLock()  # the engine is entered by one request at a time
        self.owner: str | None = None  # the client id that owns the weight group
        self._owner_seen = 0.0  # when the owner last made a request (time.monotonic)
        self._owner_lease_s = 0.0  # released after this long without one (the group's timeout_s)
        self._collective_refusal: str | None | bool = False  # not probed yet
        self.collective_refusal()  # probed now: /health then never enters the engine

    def info(self) -> dict[str, Any]:
        refusal = self.collective_refusal()
        return {"boot": self.boot, "model": self.engine.model_path, "dtype": str(self.engine.dtype),
                "version": self.version, "fingerprint": self.fingerprint, "device": self.device,
                "collective": refusal is None, "collective_refusal": refusal}

    def weights_state(self) -> dict[str, Any]:
        """What every answer that used the weights says about them (the trainer checks it)."""
        return {"boot": self.boot, "version": self.version, "fingerprint": self.fingerprint}

    def shapes(self) -> dict[str, Any]:
        shapes = self.engine.expected_shapes
        return {"shapes": None if shapes is None else {k: list(v) for k, v in shapes.items()}}

    def _check_idle(self) -> None:
        if self._receiving is not None and self._receiving[0].is_alive():
            raise RuntimeError("a collective weight push is being received; the engine is busy until "
                               "POST /collective/end")

    def generate(self, req: dict[str, Any]) -> dict[str, Any]:
        prompts = [list(map(int, p)) for p in req["prompts"]]
        return self._sampled(lambda params: self.engine.generate(prompts, params), req)

    def continuations(self, req: dict[str, Any]) -> dict[str, Any]:
        prompts = [list(map(int, p)) for p in req["prompts"]]
        partials = [list(map(int, p)) for p in req["partials"]]
        return self._sampled(lambda params: self.engine.generate_continuations(prompts, partials, params), req)

    def _sampled(self, sample, req: dict[str, Any]) -> dict[str, Any]:
        """Run ``sample(params)`` with the request's sampling settings; the Rollout's fields and the
        state of the weights that produced them."""
        params = SamplingParams(n=int(req["n"]), temperature=float(req["temperature"]), top_p=float(req["top_p"]),
                                max_new_tokens=int(req["max_new_tokens"]), seed=req.get("seed"),
                                stop_token_ids=tuple(req.get("stop_token_ids") or ()))
        with self._lock:
            self._check_idle()
            r = sample(params)
            state = self.weights_state()  # the weights these samples came from
        return {"prompt_ids": r.prompt_ids, "response_ids": r.response_ids, "logprobs": r.logprobs,
                "finished": r.finished, "group_ids": r.group_ids, "texts": r.texts, **state}

    def load_weights(self, blob: bytes) -> dict[str, Any]:
        """Load HF-named tensors into the live engine (the engine's own checked path), then drop the
        prefix cache: cached KV of the old weights must not serve the new policy."""
        from safetensors.torch import load

        from rlvr.rollout.vllm import select_weights

        t0 = time.perf_counter()
        received = load(blob)
        fingerprint = Fingerprint()
        for k, v in received.items():
            fingerprint.add(k, v)
        with self._lock:
            self._check_idle()
            weights = select_weights(received, self.engine.expected_shapes)
            path = self.engine.sync_path()
            self.version += 1  # (before the load: a load that fails midway leaves no earlier version standing)
            self.fingerprint = "incomplete"
            self.engine._push(path, weights)
            self.engine.llm.reset_prefix_cache()
            self.fingerprint = fingerprint.hexdigest()
            return {"path": path, "tensors": len(weights), "time_s": time.perf_counter() - t0,
                    **self.weights_state()}

    def prompt_logprobs(self, req: dict[str, Any]) -> dict[str, Any]:
        ids = [int(t) for t in req["token_ids"]]
        with self._lock:
            self._check_idle()
            return {"logprobs": self.engine.prompt_logprobs(ids).tolist(), **self.weights_state()}

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

    # the weight group's owner
    def seen(self, client: str | None) -> None:
        """A request of ``client`` arrived or finished: the owner's lease runs from now."""
        if client is not None and client == self.owner:
            self._owner_seen = time.monotonic()

    def _owner_lapsed(self) -> bool:
        return time.monotonic() - self._owner_seen > self._owner_lease_s

    def _check_owner(self, client: str | None) -> None:
        """``client`` may use the weight group: it owns it, or nobody does (any more)."""
        if client is None:
            raise Refused(400, f"the collective weight push needs a client id ({CLIENT_HEADER} header)")
        if self.owner is None or self.owner == client:
            return
        idle = time.monotonic() - self._owner_seen
        if not self._owner_lapsed():
            raise Refused(409, f"the weight group belongs to another client (its last request {idle:.0f} s ago; "
                               f"it is released when that client closes it, or after {self._owner_lease_s:g} s "
                               f"without a request from it)")
        print(f"rlvr rollout-server: the weight group's owner made no request for {idle:.0f} s "
              f"(> {self._owner_lease_s:g} s): released", file=sys.stderr, flush=True)
        self._drop_group()

    @_locked
    def collective_init(self, req: dict[str, Any], address: str, client: str | None = None) -> dict[str, Any]:
        """Open the rendezvous on ``req["port"]`` (0: a free one) at ``address`` (where the trainer
        reached this server) and join the group in a thread; the trainer joins after this answer.
        ``client`` owns the group from now (another client's init is refused while it does)."""
        refusal = self.collective_refusal()
        if refusal is not None:
            raise RuntimeError(f"collective weight push unavailable: {refusal}")
        backend = str(req["backend"])
        if backend not in BACKENDS:
            raise ValueError(f"unknown collective backend {backend!r} (one of {', '.join(BACKENDS)})")
        if backend == "nccl" and self.device != "cuda":
            raise RuntimeError(f"the nccl backend needs the server's engine on CUDA (it is on {self.device})")
        timeout_s = float(req["timeout_s"])
        self._check_owner(client)
        self._settle(timeout_s)
        self._drop_group()
        pending = WeightGroup.host(backend, int(req.get("port") or 0), timeout_s=timeout_s, address=address)
        self.owner, self._owner_lease_s, self._owner_seen = client, timeout_s, time.monotonic()
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

    @_locked
    def collective_begin(self, req: dict[str, Any], client: str | None = None) -> dict[str, Any]:
        """Check the announced tensors, then receive them in a thread (the trainer broadcasts next)."""
        self._check_owner(client)
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
        fingerprint = Fingerprint()

        def stream():  # one tensor in flight: received, then loaded, then the next
            for name, shape, dtype in meta:
                t = torch.empty(shape, dtype=dtype, device=group.device)
                group.broadcast(t)
                group.wait_all(deadline)  # NCCL: received before vLLM reads it (bounded); gloo: no-op
                counts["tensors"] += 1
                counts["bytes"] += t.numel() * t.element_size()
                fingerprint.add(name, t)
                yield name, t

        try:
            path = self.engine.sync_path()
            self.version += 1  # (before the load: a receive that fails midway leaves no earlier version standing)
            self.fingerprint = "incomplete"
            tensors = stream()
            self.engine._push(path, tensors)
            left = sum(1 for _ in tensors)  # the trainer sends them all: take the rest before failing
            if left:
                raise RuntimeError(f"the engine's loader stopped after {len(meta) - left} of {len(meta)} tensors")
            self.engine.llm.reset_prefix_cache()
            self.fingerprint = fingerprint.hexdigest()
            state["result"] = {"path": path, "backend": group.backend, "time_s": time.perf_counter() - state["t0"],
                               **counts, **self.weights_state()}
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
        self.fingerprint = None

    def _settle(self, timeout_s: float) -> None:
        """Let a receive that nobody ended finish (a failed one reloads the checkpoint), then drop it."""
        if self._receiving is not None:
            self._receiving[0].join(timeout_s)
            self._check_idle()
            self._receiving = None

    @_locked
    def collective_end(self, req: dict[str, Any], client: str | None = None) -> dict[str, Any]:
        """Wait (at most ``req["timeout_s"]``) for the receiver; its result, or its error."""
        self._check_owner(client)
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

    @_locked
    def collective_close(self, req: dict[str, Any] | None = None, client: str | None = None) -> dict[str, Any]:
        """The owner drops the group (and its ownership)."""
        self._check_owner(client)
        self._check_idle()
        self._drop_group()
        return {"closed": True}

    def _drop_group(self) -> None:
        if self.group is not None:
            self.group.close()
        self.group = None
        self._joining = None  # a join still waiting times out by itself
        self.owner = None


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


def make_handler(service: RolloutService, token: str, conn_timeout_s: float):
    expected = token.encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = conn_timeout_s  # every read and write on the connection (an idle or slow client is dropped)

        def log_message(self, fmt: str, *args: Any) -> None:  # one line per request on stderr is noise
            pass

        def _send(self, code: int, obj: dict[str, Any]) -> None:
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def _refuse(self, code: int, error: str) -> None:
            """Answer ``code`` without reading a large body (a small one is drained so that the answer
            is not lost to a reset); the connection is closed after it."""
            self.close_connection = True
            try:
                n = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                n = DRAIN_LIMIT + 1
            if 0 < n <= DRAIN_LIMIT:
                try:
                    self.rfile.read(n)
                except OSError:
                    return
            self._send(code, {"error": error})

        def _authorized(self) -> bool:
            scheme, _, given = (self.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or not given.strip():
                self._refuse(401, f"no token: send 'Authorization: Bearer <token>' with the server's token "
                                  f"({TOKEN_ENV}, or the one it printed at start)")
                return False
            if not hmac.compare_digest(given.strip().encode(), expected):
                self._refuse(403, f"wrong token: not the server's ({TOKEN_ENV}, or the one it printed at start)")
                return False
            return True

        def _run(self, call) -> None:
            client = self.headers.get(CLIENT_HEADER)
            service.seen(client)
            try:
                self._send(200, call(client))
            except Refused as e:
                self._send(e.code, {"error": str(e)})
            except (KeyError, TypeError, ValueError) as e:  # a malformed request (json errors are ValueErrors)
                self._send(400, {"error": f"bad request: {type(e).__name__}: {e}".splitlines()[0]})
            except Exception as e:  # the client raises it as a one-line error
                self._send(500, {"error": f"{type(e).__name__}: {e}".splitlines()[0]})
            finally:
                service.seen(client)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if not self._authorized():
                return
            routes = {"/health": lambda client: service.info(), "/shapes": lambda client: service.shapes()}
            if self.path not in routes:
                self._send(404, {"error": f"no such endpoint: GET {self.path}"})
                return
            self._run(routes[self.path])

        def do_POST(self) -> None:  # noqa: N802
            if not self._authorized():
                return
            try:
                n = int(self.headers.get("Content-Length") or 0)
                if n < 0:
                    raise ValueError(n)
            except ValueError:
                self._refuse(400, f"bad Content-Length: {self.headers.get('Content-Length')!r}")
                return
            try:
                body = self.rfile.read(n)
            except OSError:  # the client went silent (the connection's timeout) or away
                self.close_connection = True
                return
            if len(body) < n:
                self.close_connection = True
                return
            address = self.connection.getsockname()[0]  # the rendezvous listens where the trainer reached us
            routes = {"/generate": lambda client: service.generate(json.loads(body)),
                      "/continue": lambda client: service.continuations(json.loads(body)),
                      "/weights": lambda client: service.load_weights(body),
                      "/prompt_logprobs": lambda client: service.prompt_logprobs(json.loads(body)),
                      "/collective/init": lambda client: service.collective_init(json.loads(body), address, client),
                      "/collective/begin": lambda client: service.collective_begin(json.loads(body), client),
                      "/collective/end": lambda client: service.collective_end(json.loads(body or b"{}"), client),
                      "/collective/close": lambda client: service.collective_close(None, client)}
            if self.path not in routes:
                self._send(404, {"error": f"no such endpoint: POST {self.path}"})
                return
            self._run(routes[self.path])

    return Handler


class RolloutHTTPServer(ThreadingHTTPServer):
    """A thread per connection (daemon threads: a hung client does not hold up the exit)."""

    daemon_threads = True
    service: RolloutService

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):  # a client that went away
            return
        super().handle_error(request, client_address)


def make_server(engine, host: str = "127.0.0.1", port: int = 8000, *, token: str,
                conn_timeout_s: float = 60.0) -> RolloutHTTPServer:
    """A server for ``engine`` listening on ``host:port`` (``port`` 0: a free one), not yet serving
    (``serve_forever``). ``token``: required on every request. ``conn_timeout_s``: the longest wait
    for a client's next bytes (an idle keep-alive connection, a stalled body) before its connection
    is closed; a request being answered (a generation, a push) is not limited by it."""
    if not token or not token.strip():
        raise ValueError(f"the rollout server needs a non-empty token ({TOKEN_ENV})")
    if not conn_timeout_s > 0:
        raise ValueError(f"conn_timeout_s must be > 0, got {conn_timeout_s}")
    service = RolloutService(engine)
    server = RolloutHTTPServer((host, port), make_handler(service, token.strip(), conn_timeout_s))
    server.service = service
    return server


def serve(engine, host: str = "127.0.0.1", port: int = 8000, *, token: str, ready=None,
          conn_timeout_s: float = 60.0) -> None:
    """Serve ``engine`` until interrupted (see :func:`make_server`). ``ready(port)`` is called once
    the socket listens."""
    server = make_server(engine, host, port, token=token, conn_timeout_s=conn_timeout_s)
    if ready is not None:
        ready(server.server_address[1])
    try:
        server.serve_forever()
    finally:
        server.server_close()
