"""Per-item deadlines for scoring in this process (``score_batch(..., workers=0)``).

Worker processes (``verifiers.pool``) cut a runaway item off with SIGKILL. In this process that is
not possible, and ``signal.alarm`` (Math-Verify's own timeout) is no substitute: it can only be set
from the main thread (Math-Verify's ``parse`` raises ``ValueError`` in any other thread unless its
timeout is off), and a scoring call that sets or cancels an alarm of its own silently removes
ours. :class:`ItemDeadline` instead runs one watchdog thread per batch that raises
:class:`DeadlineExceeded` *in the scoring thread* (``PyThreadState_SetAsyncExc``) once the item
running there is over its deadline, whichever thread that is. The exception derives from
``BaseException`` so that the ``except Exception`` handlers of a verifier (and of Math-Verify and
sympy) do not swallow it; it is raised again every ``REPEAT_S`` seconds until the item is over, in
case a bare ``except:`` catches one.

What it cannot interrupt: a single C call that never returns to the interpreter (a Python integer
power with a huge exponent, a blocking system call); the exception is delivered when that call
returns. The math verifier therefore refuses answers whose evaluation would build huge numbers
before sympy sees them (:func:`verifiers.math.too_large`); for untrusted verifiers, score in
worker processes (``workers >= 1``), where the deadline is a SIGKILL.
"""
from __future__ import annotations

import ctypes
import math
import threading
import time
from typing import Any, Callable

REPEAT_S = 0.1  # an item still running after its deadline gets the exception again this often


class DeadlineExceeded(BaseException):
    """Raised in the scoring thread when the item it scores is over its deadline."""


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None)


class ItemDeadline:
    """``with ItemDeadline(seconds) as d: d.run(fn, *args)`` -- each :meth:`run` call may take at
    most ``seconds``; over that it stops with :class:`DeadlineExceeded` (returned as ``timed_out``).

    One instance serves one thread (the one that entered it); ``seconds`` None, 0 or inf: no limit
    and no watchdog thread.
    """

    def __init__(self, seconds: float | None):
        self.seconds = float(seconds) if seconds else None
        if self.seconds is not None and (not math.isfinite(self.seconds) or self.seconds <= 0):
            self.seconds = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._item = 0  # counts run() calls: the watchdog only fires at the item it timed
        self._due: float | None = None  # monotonic deadline of the item running now
        self._fired = False
        self._tid = 0
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "ItemDeadline":
        self._tid = threading.get_ident()
        if self.seconds is not None:
            self._thread = threading.Thread(target=self._watch, name="scoring-deadline", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def run(self, fn: Callable[..., Any], *args: Any) -> tuple[Any, bool]:
        """``(fn(*args), False)``, or ``(None, True)`` when it ran past the deadline."""
        if self.seconds is None:
            return fn(*args), False
        try:
            with self._lock:  # no wake-up: the watchdog looks again by itself (cheap per item)
                self._item += 1
                self._due, self._fired = time.monotonic() + self.seconds, False
            try:
                return fn(*args), False
            finally:
                with self._lock:
                    self._due = None
                    if self._fired:
                        _set_async_exc(self._tid, None)  # one raised but not yet delivered: drop it
        except DeadlineExceeded:
            return None, True

    def _watch(self) -> None:
        while True:
            with self._lock:
                item, due = self._item, self._due
            wait = self.seconds if due is None else due - time.monotonic()
            if wait > 0:
                if self._stop.wait(wait):
                    return
                continue
            with self._lock:
                if self._item == item and self._due is not None:
                    self._fired = True
                    _set_async_exc(self._tid, DeadlineExceeded)
            if self._stop.wait(REPEAT_S):
                return
