"""Persistent scoring workers with a hard per-item timeout (SIGKILL, not ``signal.alarm``).

Math-Verify's own timeout uses ``signal.alarm``, which only works on the main thread
(huggingface/Math-Verify#50) and cannot interrupt a long C-level sympy call. Here every item is
scored in a long-lived worker process (Math-Verify called with its timeouts disabled); the parent
watches the clock and, when one item overruns, SIGKILLs that worker, records reward 0 with reason
``timeout``, requeues the rest of its chunk and starts a replacement. Workers are plain
subprocesses fed through pipes (no ``__main__`` re-import, safe to use from any script or thread),
exit on EOF when the parent goes away, and are closed by :meth:`ScoringPool.close` / atexit. A
worker that replaces one killed on an item builds that item's verifier at once, in the background
(``"build"``), so the imports a restart costs overlap whatever the caller does next instead of
delaying its next item.

Protocol (pickled tuples over two pipes):
  parent -> worker: ("score", key, spec | None, [(index, completion, reference), ...]), or
                    ("call", key, spec | None, [(index, batch, None)]): one call of a batch verifier
                    (a TRL reward function, ``verifiers.trl``) on a whole batch, or
                    ("build", key, spec, []): build a verifier now, before any item needs it
  worker -> parent: ("ready", pid) once, ("loaded", key) after building a verifier, then
                    ("item", index, reward, info) per item, in order (for "call": the call's result
                    dict in place of the reward).
"""
from __future__ import annotations

import atexit
import collections
import importlib
import os
import pickle
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection, wait
from typing import Any, Sequence

from verifiers.base import ScoreResult, Verifier, safe_score

LOAD_TIMEOUT = 120.0  # seconds a worker may take to import and build a verifier
_POOLS: dict[int, "ScoringPool"] = {}
_POOLS_LOCK = threading.Lock()


class _Worker:
    """One worker process and its two pipe ends; ``chunk`` is the work it is doing now."""

    def __init__(self, prebuild: Sequence[tuple[str, Any]] = ()) -> None:
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([os.getcwd()] + [p for p in sys.path if p])
        watch = threading.current_thread() is threading.main_thread()
        code = "from verifiers.pool import worker_main; worker_main()"
        argv = [sys.executable, "-c", code, str(to_r), str(from_w), str(os.getpid() if watch else 0)]
        self.proc = subprocess.Popen(argv,
                                     pass_fds=(to_r, from_w), env=env, stdin=subprocess.DEVNULL,
                                     close_fds=True)
        os.close(to_r)
        os.close(from_w)
        self.send_conn = Connection(to_w, readable=False)
        self.recv_conn = Connection(from_r, writable=False)
        self.ready = False
        self.keys: set[str] = set()  # verifiers this worker has built
        self.key = ""  # the verifier of the chunk it was last sent
        self.chunk: collections.deque | None = None  # items sent, not yet answered
        self.clock = 0.0  # when the item now running started (parent's view)
        self.limit = 0.0  # seconds allowed for it
        self.loading = False
        self.building: set[str] = set()  # verifiers it was asked to build before use, not yet "loaded"
        self.build_clock = time.monotonic()
        for key, spec in prebuild:
            try:
                self.send_conn.send(("build", key, spec, []))
            except (OSError, ValueError):
                break  # noticed as EOF by the pool
            self.building.add(key)
            self.keys.add(key)

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        self.proc.wait()
        for c in (self.send_conn, self.recv_conn):
            try:
                c.close()
            except OSError:
                pass


class ScoringPool:
    """``workers`` persistent scoring processes. ``score`` is thread-safe (one batch at a time)."""

    def __init__(self, workers: int):
        if workers < 1:
            raise ValueError("a ScoringPool needs at least one worker (use workers=0 for in-process)")
        self.n = int(workers)
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self.restarts = 0
        self._start_failures = 0
        self._specs: dict[str, Any] = {}  # how to rebuild each verifier a worker has built (for replacements)

    def _fill(self) -> None:
        self._workers = [w for w in self._workers if w.proc.poll() is None]
        while len(self._workers) < self.n:
            self._workers.append(_Worker())

    def close(self) -> None:
        """Stop all workers (closing their pipes; SIGKILL any that do not leave in 2 s)."""
        with self._lock:
            for w in self._workers:
                try:
                    w.send_conn.close()
                except OSError:
                    pass
            deadline = time.monotonic() + 2.0
            for w in self._workers:
                try:
                    w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
                w.kill()
            self._workers = []

    def __enter__(self) -> "ScoringPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers if w.proc.poll() is None]

    def score(self, key: str, spec: Any, completions: Sequence[Any], references: Sequence[Any], *,
              timeout: float, kind: str = "score") -> list[ScoreResult]:
        """Score all items; ``key``/``spec`` name the verifier (see ``verifiers.score_batch``).

        ``kind="call"``: each "completion" is a whole batch for one call of a batch verifier
        (``verifiers.trl.RewardFunction.call``), ``timeout`` its limit; a result's ``reward`` is
        then the call's result dict (a timeout or a dead worker gives the usual 0 with a reason)."""
        n = len(completions)
        results: list[ScoreResult | None] = [None] * n
        size = 1 if kind == "call" else max(1, min(64, -(-n // (self.n * 4))))  # ~4 chunks per worker, <= 64 items
        todo = collections.deque(
            collections.deque((i, completions[i], references[i]) for i in range(s, min(n, s + size)))
            for s in range(0, n, size))
        with self._lock:
            if spec is not None:
                self._specs[key] = spec
            self._fill()
            while todo or any(w.chunk for w in self._workers):
                self._dispatch(todo, key, spec, timeout, kind)
                self._receive(results, todo, timeout)
                self._enforce(results, todo)
        return results  # type: ignore[return-value]

    # -------------------------------------------------------------- the loop's three steps
    def _dispatch(self, todo, key, spec, timeout, kind: str = "score") -> None:
        for w in self._workers:
            if w.ready and not w.chunk and not w.building and todo:
                w.chunk, w.key = todo.popleft(), key
                first = key not in w.keys
                w.loading, w.clock = first, time.monotonic()
                w.limit = LOAD_TIMEOUT if first else timeout
                try:
                    w.send_conn.send((kind, key, spec if first else None, list(w.chunk)))
                except (OSError, ValueError):
                    pass  # noticed as EOF by _receive
                w.keys.add(key)

    def _receive(self, results, todo, timeout) -> None:
        deadlines = [w.clock + w.limit for w in self._workers if w.chunk]
        wait_s = max(0.0, min(deadlines) - time.monotonic()) if deadlines else 0.5
        ready = wait([w.recv_conn for w in self._workers], timeout=min(wait_s, 0.5))
        for w in [w for w in self._workers if w.recv_conn in ready]:
            try:
                while w.recv_conn.poll():
                    self._handle(w, w.recv_conn.recv(), results, timeout)
            except (EOFError, OSError):
                self._replace(w, results, todo, "worker crashed")

    def _handle(self, w: _Worker, msg: tuple, results, timeout) -> None:
        if msg[0] == "ready":
            w.ready = True
            self._start_failures = 0
        elif msg[0] == "loaded" and msg[1] in w.building:
            w.building.discard(msg[1])
        elif msg[0] == "loaded":
            w.loading, w.clock, w.limit = False, time.monotonic(), timeout
        elif msg[0] == "item" and w.chunk:
            _, index, reward, info = msg
            w.chunk.popleft()
            results[index] = ScoreResult(reward, info)
            w.clock, w.limit = time.monotonic(), timeout

    def _enforce(self, results, todo) -> None:
        now = time.monotonic()
        for w in list(self._workers):
            if w.chunk and now - w.clock > w.limit:
                why = "timeout while loading the verifier" if w.loading else "timeout"
                self._replace(w, results, todo, why, elapsed=now - w.clock)
            elif w.building and not w.chunk and now - w.build_clock > LOAD_TIMEOUT:
                self._replace(w, results, todo, "timeout while loading the verifier")

    def _replace(self, w: _Worker, results, todo, reason: str, elapsed: float | None = None) -> None:
        """Kill ``w``; its running item gets reward 0 + reason, the rest of its chunk is requeued.

        When ``w`` died on an item, the replacement builds that item's verifier at once (the rest of
        the batch needs it next); not when it died building one (a build that hangs or crashes is
        retried only when an item needs it). Other verifiers are built only when an item needs them."""
        on_item = bool(w.chunk) and w.ready and not w.loading and w.key in self._specs
        prebuild = [(w.key, self._specs[w.key])] if on_item else []
        w.kill()
        self.restarts += 1
        if not w.ready:
            self._start_failures += 1
        if w.chunk:
            index, _, _ = w.chunk.popleft()
            info = {"reason": reason, "extracted": None, "time_s": round(elapsed or 0.0, 3)}
            if reason.startswith("timeout"):
                info["timeout"] = True
            else:
                info["error"] = True
            results[index] = ScoreResult(0.0, info)
            if w.chunk:
                todo.appendleft(w.chunk)
        self._workers.remove(w)
        if self._start_failures >= 3:  # workers die on start-up: give up on this batch
            while todo:
                for index, _, _ in todo.popleft():
                    results[index] = ScoreResult(0.0, {"reason": "error: scoring workers fail to start",
                                                       "error": True, "extracted": None})
            self._start_failures = 0
        self._workers.append(_Worker(prebuild))


def get_pool(workers: int) -> ScoringPool:
    """The process-wide pool with ``workers`` workers (created on first use, closed at exit)."""
    with _POOLS_LOCK:
        if workers not in _POOLS:
            _POOLS[workers] = ScoringPool(workers)
        return _POOLS[workers]


@atexit.register
def close_pools() -> None:
    """Close every shared pool (also registered with atexit)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for p in pools:
        p.close()


# ------------------------------------------------------------------------------ worker side
def worker_main() -> None:
    """Entry point of a worker process: argv = [read fd, write fd, parent pid to watch or 0]."""
    recv_conn = Connection(int(sys.argv[1]), writable=False)
    send_conn = Connection(int(sys.argv[2]), readable=False)
    if sys.argv[3] != "0":
        _die_with_parent(int(sys.argv[3]))
    built: dict[str, Any] = {}
    send_conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = recv_conn.recv()
        except (EOFError, OSError):
            return
        kind, key, spec, items = msg
        if key not in built:
            built[key] = _build(spec)  # includes warm(): imports are not charged to the first item
            send_conn.send(("loaded", key))
        elif kind == "build":
            send_conn.send(("loaded", key))
        if kind == "build":
            continue
        verifier = built[key]
        if kind == "call":  # one call of a batch verifier per item (verifiers.trl)
            for index, batch, _ in items:
                if isinstance(verifier, Verifier) and hasattr(verifier, "call"):
                    out = verifier.call(batch)
                else:
                    reason = verifier if isinstance(verifier, str) else f"{verifier!r} cannot score batches"
                    out = {"failed": "crashed", "error": str(reason).removeprefix("error: ")}
                send_conn.send(("item", index, _picklable(out), {}))
            continue
        for index, completion, reference in items:
            if isinstance(verifier, Verifier):
                res = safe_score(verifier, completion, reference)
            else:
                res = ScoreResult(0.0, {"reason": verifier, "error": True, "build_error": True, "extracted": None})
            send_conn.send(("item", index, res.reward, _picklable(res.info)))


def _build(spec: Any) -> Verifier | str:
    """A verifier from ``("name", name, path)`` or ``("pickle", bytes, path)``; a reason string on failure.

    A name is anything ``verifiers.get`` resolves without this process's registrations: a
    built-in, ``reasoning_gym:<task>``, an entry point, ``/abs/path/file.py:function`` or
    ``package.module:function`` (the parent's current directory is on this process's path)."""
    try:
        if len(spec) > 2:  # the parent's current directory and sys.path (see verifiers._spec)
            sys.path.extend(p for p in spec[2] if p not in sys.path)
            importlib.invalidate_caches()
        if spec[0] == "name":
            from verifiers.registry import get

            verifier = get(spec[1])
        else:
            verifier = pickle.loads(spec[1])
        verifier.warm()
        from verifiers.math import cap_worker_memory

        cap_worker_memory(verifier)  # a math verifier's address-space cap (MathVerifier.memory_mb)
        return verifier
    except Exception as e:  # noqa: BLE001 - reported per item, never fatal
        return f"error: verifier could not be built in a worker: {type(e).__name__}: {e}"[:400]


def _picklable(info: dict) -> dict:
    try:
        pickle.dumps(info)
        return info
    except Exception:  # noqa: BLE001
        return {k: v if isinstance(v, (str, int, float, bool, type(None))) else repr(v)[:200]
                for k, v in info.items()}


def _die_with_parent(parent: int) -> None:
    """Exit when the parent dies even if we are stuck in C code (PR_SET_PDEATHSIG, Linux)."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # parent already gone before prctl
            os._exit(0)
    except (OSError, AttributeError):
        pass
