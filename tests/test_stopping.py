"""rlvr.stopping on real signals sent to this process: the first is recorded, a second stops at
once, one during an eval cuts the eval, and the process's own handlers come back afterwards."""
from __future__ import annotations

import os
import signal

import pytest

from rlvr.stopping import EvalInterrupted, StopSignals


def _send(sig: int) -> None:
    os.kill(os.getpid(), sig)


def test_first_signal_is_recorded_and_a_second_stops_at_once():
    before = signal.getsignal(signal.SIGTERM)
    before_int = signal.getsignal(signal.SIGINT)  # SIG_IGN under nohup or a background job, else Python's
    stops = StopSignals()
    assert stops.name is None and not stops.active
    with stops:
        assert stops.active
        _send(signal.SIGTERM)
        assert stops.signum == signal.SIGTERM and stops.name == "SIGTERM"
        with pytest.raises(KeyboardInterrupt) as got:
            _send(signal.SIGINT)
        assert type(got.value) is KeyboardInterrupt  # not an eval cut
    assert not stops.active
    assert signal.getsignal(signal.SIGTERM) is before
    assert signal.getsignal(signal.SIGINT) is before_int


def test_a_first_signal_during_an_eval_cuts_the_eval():
    stops = StopSignals()
    with stops:
        stops.in_eval = True
        with pytest.raises(EvalInterrupted):
            _send(signal.SIGINT)
        assert stops.name == "SIGINT"
