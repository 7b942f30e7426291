"""Rollout engines behind one protocol (see :mod:`rlvr.rollout.base`), and the one table from an
engine's name to its class and its own config section.

    rollout.engine: vllm          # a key of ENGINES
    rollout.vllm: {enforce_eager: true, kv_cache_memory_bytes: 268435456}   # that engine's section

Adding an engine: a module with a class that implements ``RolloutEngine`` and a builder, plus one
line in ``ENGINES`` (and a dataclass for its section in ``rlvr.config`` if it has settings).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rlvr.rollout.base import ContinuationEngine, Rollout, RolloutEngine, SamplingParams


@dataclass(frozen=True)
class EngineContext:
    """What any engine may need from the run, besides its own section."""

    policy: Any  # the trainer's policy module (an embedded engine samples from it)
    tokenizer: Any
    model_name: str  # model.name (an engine with its own copy of the weights loads it)
    dtype: str | None  # model.dtype (None: the trainer's default)
    seed: int
    micro_batch_size: int  # rollout.micro_batch_size: sequences per generation forward (embedded)


def _hf(section: None, ctx: EngineContext) -> RolloutEngine:
    from rlvr.rollout.hf import HFEngine

    return HFEngine(ctx.policy, ctx.tokenizer, micro_batch_size=ctx.micro_batch_size)


def _vllm(section: Any, ctx: EngineContext) -> RolloutEngine:
    from rlvr.models import resolve_model_path
    from rlvr.rollout.vllm import VLLMEngine

    return VLLMEngine.from_config(section, resolve_model_path(ctx.model_name), ctx.tokenizer, dtype=ctx.dtype,
                                  seed=ctx.seed)


def _vllm_server(section: Any, ctx: EngineContext) -> RolloutEngine:
    from rlvr.rollout.remote import VLLMServerEngine

    return VLLMServerEngine.from_config(section, ctx.tokenizer)


@dataclass(frozen=True)
class Engine:
    """One row of the table. ``embedded``: the engine runs the trainer's own module in-process (it
    shares the weights, its sampling log-probs are the policy's, and it can hand back the hidden
    states entering the trainable blocks); otherwise it holds its own copy, synced after each update."""

    build: Callable[[Any, EngineContext], RolloutEngine]
    section: str | None  # its settings: ``rollout.<section>`` (None: only the shared rollout.*)
    embedded: bool


ENGINES: dict[str, Engine] = {
    "hf": Engine(_hf, None, embedded=True),
    "vllm": Engine(_vllm, "vllm", embedded=False),
    "vllm_server": Engine(_vllm_server, "server", embedded=False),
}


def build_engine(rollout_cfg: Any, ctx: EngineContext) -> RolloutEngine:
    """The engine ``rollout_cfg.engine`` names, built from its own section of ``rollout_cfg``."""
    from rlvr.errors import ConfigError

    if rollout_cfg.engine not in ENGINES:
        raise ConfigError(f"rollout.engine={rollout_cfg.engine!r} is not one of {', '.join(ENGINES)}")
    entry = ENGINES[rollout_cfg.engine]
    return entry.build(getattr(rollout_cfg, entry.section) if entry.section else None, ctx)


__all__ = ["ENGINES", "ContinuationEngine", "Engine", "EngineContext", "Rollout", "RolloutEngine", "SamplingParams",
           "build_engine"]
