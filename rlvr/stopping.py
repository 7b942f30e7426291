"""Stopping a run on SIGINT/SIGTERM without losing what it has done.

The first SIGINT/SIGTERM stops every process at the next step boundary, with a checkpoint (the
processes agree on it in :meth:`rlvr.collective.Collective.stop_inputs`); a second one stops this
process now (its peers' next collective then fails, within ``trainer.dist_timeout_s`` at most,
instead of waiting for it). A first signal that process 0 receives during an eval stops at once
too: the eval is dropped (it changes nothing a resume needs), every process stops after the eval's
barrier, and the resumed run redoes it (a final eval of 1,024 items takes half an hour on a CPU).
"""
from __future__ import annotations

import signal


class EvalInterrupted(KeyboardInterrupt):
    """A first SIGINT/SIGTERM arrived during an eval: the eval is dropped and every process stops."""


class StopSignals:
    """The signal state of one training loop; a context manager that puts its handlers in place.

    ``signum``: the first signal received (None until one arrives). ``in_eval``: set by the trainer
    while process 0 runs the evaluator, so that a first signal cuts the eval short. ``active``:
    inside the ``with`` block (the handlers are in place)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.in_eval = False
        self.active = False
        self._old: dict = {}

    @property
    def name(self) -> str | None:
        """"SIGINT" / "SIGTERM", or None before any signal."""
        return signal.Signals(self.signum).name if self.signum else None

    def _on_signal(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        if self.in_eval:
            raise EvalInterrupted

    def __enter__(self) -> StopSignals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not in the main thread: the process's own handlers stay
                pass
        self.active = True
        return self

    def __exit__(self, *exc) -> None:
        self.active = False
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old = {}
