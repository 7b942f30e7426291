"""The weight-transfer group between trainer process 0 and ``rlvr rollout-server``: two ranks, one
broadcast per tensor, independent of any default ``torch.distributed`` group the trainer has.

    rank 0  the trainer's process 0 (the source of every broadcast)
    rank 1  the rollout server (receives, and feeds each tensor into vLLM's in-place load)

The server hosts the rendezvous (a :class:`torch.distributed.TCPStore` on a port it is told, or a
free one it picks) and both sides construct the process group directly -- ``ProcessGroupGloo`` for
CPU tensors, ``ProcessGroupNCCL`` when the trainer's weights and the server's engine are both on
CUDA -- so nothing is registered as, or collides with, a default group (accelerate/DDP). The HTTP
side of the protocol is in :mod:`rlvr.rollout.server` (``/collective/*``) and
:mod:`rlvr.rollout.remote` (:meth:`~rlvr.rollout.remote.VLLMServerEngine.sync_weights`).

Every wait is bounded by the timeout the group is opened with: a peer that dies makes the next
broadcast fail (gloo: at once, the connection is reset; NCCL: each broadcast is polled against the
deadline, past which the group is aborted), never a hang.

Tested over gloo (tests/test_collective_push.py, tests/test_rollout_server.py). The NCCL path has
not run yet where this was written (no pair of GPUs): ``benchmarks/gpu/scale_check.sh`` runs it on
a machine with two.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import socket
import time
import weakref

import torch
import torch.distributed as dist

TRANSPORTS = ("http", "collective", "auto")
BACKENDS = ("gloo", "nccl")
SOURCE, SERVER = 0, 1  # ranks


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def parse_dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, str(name).removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dtype


def backend_available(backend: str) -> bool:
    if backend == "nccl":
        return dist.is_available() and dist.is_nccl_available() and torch.cuda.is_available()
    return dist.is_available() and dist.is_gloo_available()


def local_address(host: str, port: int) -> str:
    """This machine's address on the route to ``host`` (what the peer can reach us at)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((socket.gethostbyname(host), port or 1))  # UDP: no packet is sent
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


@contextlib.contextmanager
def _env(key: str, value: str):
    old = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


class WeightGroup:
    """One side of the two-rank group. ``store``: the rendezvous (the server hosts it); ``address``:
    this side's address for gloo's connections; ``timeout_s`` bounds the rendezvous and every
    broadcast."""

    def __init__(self, backend: str, store, rank: int, *, timeout_s: float, address: str | None = None):
        if backend not in BACKENDS:
            raise ValueError(f"unknown collective backend {backend!r} (one of {', '.join(BACKENDS)})")
        if not backend_available(backend):
            raise RuntimeError(f"the {backend} backend is not available in this process "
                               f"({'no CUDA' if backend == 'nccl' else 'torch.distributed without gloo'})")
        self.backend, self.rank, self.timeout_s = backend, rank, float(timeout_s)
        self.store = store  # kept alive with the group (the server's side hosts it)
        timeout = datetime.timedelta(seconds=self.timeout_s)
        if backend == "gloo":
            opts = dist.ProcessGroupGloo._Options()
            opts._timeout = timeout
            opts._devices = [dist.ProcessGroupGloo.create_device(hostname=address) if address
                             else dist.ProcessGroupGloo.create_default_device()]
            pg = dist.ProcessGroupGloo(store, rank, 2, opts)
            self.device = torch.device("cpu")
        else:
            opts = dist.ProcessGroupNCCL.Options()
            opts._timeout = timeout
            opts.group_name, opts.global_ranks_in_group = "rlvr-weights", [SOURCE, SERVER]
            # on an error the NCCL watchdog aborts the communicator; its default (3) also tears the
            # whole process down -- the trainer's, for a rollout server that died
            # (2: abort the communicator only; our bounded waits then raise a one-line error)
            with _env("TORCH_NCCL_ASYNC_ERROR_HANDLING", "2"):
                pg = dist.ProcessGroupNCCL(store, rank, 2, opts)
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.broken: str | None = None
        # the group is released at interpreter exit at the latest: a gloo group still alive during
        # the C++ teardown aborts the process ("terminate called without an active exception")
        self._held = [pg]
        weakref.finalize(self, self._held.clear)

    @property
    def pg(self):
        if not self._held:
            raise RuntimeError(self.broken or "group closed")
        return self._held[0]

    @classmethod
    def host(cls, backend: str, port: int, *, timeout_s: float, address: str = "127.0.0.1"):
        """The server's side, in two steps: the rendezvous store listens at once (``port`` 0: a free
        one); :meth:`join` (blocking; run it in a thread) then waits for the trainer. ``address``:
        where the trainer reached the server (the store and gloo's connections use it)."""
        store = dist.TCPStore(address, int(port), 2, True, datetime.timedelta(seconds=float(timeout_s)),
                              wait_for_workers=False)
        return _Pending(cls, backend, store, timeout_s, address)

    @classmethod
    def connect(cls, backend: str, host: str, port: int, *, timeout_s: float, address: str | None = None):
        """The trainer's side: the server's store at ``host:port``, then the group (blocks until the
        server has joined too, at most ``timeout_s``)."""
        store = dist.TCPStore(host, int(port), 2, False, datetime.timedelta(seconds=float(timeout_s)))
        return cls(backend, store, SOURCE, timeout_s=timeout_s, address=address)

    def broadcast(self, tensor: torch.Tensor) -> None:
        """Broadcast ``tensor`` from the trainer (rank 0) into the server's ``tensor`` (in place).

        gloo waits for the transfer (bounded by the group's timeout; a dead peer fails it at once).
        NCCL runs it on its stream; :meth:`wait_all` bounds the wait for it."""
        if self.broken:
            raise RuntimeError(self.broken)
        opts = dist.BroadcastOptions()
        opts.rootRank = SOURCE
        try:
            work = self.pg.broadcast([tensor], opts)
            # gloo: blocks until sent/received; NCCL: orders the current stream after the broadcast
            # (the CPU goes on), and the work is kept for a bounded wait_all
            work.wait()
            if self.backend == "nccl":
                self._last = work
        except Exception as e:
            self.broken = one_line(e)
            raise RuntimeError(self.broken) from None

    def wait_all(self, deadline: float) -> None:
        """NCCL: wait (polling, so that the wait has a deadline) for the last broadcast; past the
        deadline the group is aborted and it is an error. gloo: nothing is in flight."""
        work = getattr(self, "_last", None)
        if work is None:
            return
        while not work.is_completed():
            if time.monotonic() > deadline:
                self.close()
                self.broken = "the last broadcast did not complete in time (group aborted)"
                raise RuntimeError(self.broken)
            time.sleep(0.001)
        self._last = None
        work.wait()  # raises the work's error, if any; orders the current stream after it

    def close(self) -> None:
        pg = self._held.pop() if self._held else None
        if pg is not None and self.backend == "nccl":
            for name in ("abort", "_shutdown", "shutdown"):
                if hasattr(pg, name):
                    with contextlib.suppress(Exception):
                        getattr(pg, name)()
                    break
        self.broken = self.broken or "group closed"
        self.store = None


class _Pending:
    """The server's side between opening the store and the trainer joining."""

    def __init__(self, cls, backend, store, timeout_s, address):
        self._args = (cls, backend, store, timeout_s, address)
        self.port = store.port

    def join(self) -> WeightGroup:
        cls, backend, store, timeout_s, address = self._args
        return cls(backend, store, SERVER, timeout_s=timeout_s, address=address)


class Fingerprint:
    """A cheap fingerprint of a set of named tensors, computed alike by the trainer (on what it sends)
    and the server (on what it received), to check that the engine holds exactly the pushed weights.

    Per tensor: its name, dtype, shape and the raw bytes of :data:`PROBES` elements spread evenly over
    it (strided from the first), hashed with SHA-256; the fingerprint hashes those digests in name
    order (the push's order does not matter). It reads ``PROBES`` elements per tensor, so it costs
    one small device-to-host copy per tensor, not a pass over the weights: a change that misses
    every probed element goes unseen (the log-prob fingerprint of :mod:`rlvr.rollout.vllm` checks
    the function the weights compute)."""

    PROBES = 16

    def __init__(self) -> None:
        self._digests: dict[str, bytes] = {}

    def add(self, name: str, tensor: torch.Tensor) -> None:
        flat = tensor.detach().reshape(-1)
        probe = flat[:: max(1, flat.numel() // self.PROBES)][: self.PROBES].contiguous().cpu()
        h = hashlib.sha256(f"{name}|{dtype_name(tensor.dtype)}|{tuple(tensor.shape)}|".encode())
        h.update(probe.view(torch.uint8).numpy().tobytes() if probe.numel() else b"")
        self._digests[name] = h.digest()

    def hexdigest(self) -> str:
        h = hashlib.sha256()
        for name in sorted(self._digests):
            h.update(name.encode() + b"\0" + self._digests[name])
        return h.hexdigest()[:32]


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    msg = text[0] if text else ""
    # gloo prefixes its source location: "[.../pair.cc:537] Read error [..]: Connection reset by peer. ..."
    if msg.startswith("[") and "] " in msg:
        msg = msg.split("] ", 1)[1]
    msg = msg.split(". This is typically")[0]
    return f"{type(e).__name__}: {msg[:300]}"
