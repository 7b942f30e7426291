"""Rollout engines behind one protocol (see :mod:`rlvr.rollout.base`)."""
from rlvr.rollout.base import Rollout, RolloutEngine, SamplingParams

__all__ = ["Rollout", "RolloutEngine", "SamplingParams"]
