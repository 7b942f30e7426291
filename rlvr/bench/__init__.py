"""Benchmarks, one module per target, run as ``rlvr bench <name> ...`` (see rlvr.commands.bench).

Each module exposes ``add_arguments(parser)`` and ``run(args)`` and writes its numbers as JSON under
``benchmarks/results/`` (described in docs/benchmarks.md). Only the chosen benchmark is imported,
so ``rlvr bench verifiers`` never imports torch.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

RESULTS_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "results"

# name -> (module, one-line description): every target of ``rlvr bench``
BENCHMARKS: dict[str, tuple[str, str]] = {
    "verifiers": ("rlvr.bench.verifiers", "scoring throughput of the math and code verifiers"),
    "rollout": ("rlvr.bench.rollout", "generation throughput of a rollout engine (vllm, hf)"),
    "train": ("rlvr.bench.train", "policy-update throughput: tokens/s, ms/step, peak memory, MFU"),
    "step": ("rlvr.bench.step", "wall-clock and CPU cost of whole training steps, per phase and preset"),
    "weightpush": ("rlvr.bench.weightpush", "the trainer's weight push to rlvr rollout-server, per transport"),
    "task": ("rlvr.bench.task", "a task's fit for a study: mixed groups, lengths, truncation"),
    "logprobs": ("rlvr.bench.logprobs", "policy log-prob pass on one batch, per row vs each prompt once"),
}


def write_result(path: Path, entry: dict, keep: int | None = None) -> None:
    """Write ``entry`` as the JSON at ``path``; the runs already there move to its ``history``
    (the newest ``keep`` of them, or all)."""
    import json

    history: list = []
    if path.is_file():
        old = json.loads(path.read_text())
        history = old.pop("history", []) + [old]
    path.parent.mkdir(parents=True, exist_ok=True)
    from rlvr.rundir import write_atomic  # a torn file would fail the next write, history and all

    write_atomic(path, json.dumps({**entry, "history": history[-keep:] if keep else history}, indent=2) + "\n")


def load(name: str) -> ModuleType:
    """The module of benchmark ``name`` (KeyError for an unknown one)."""
    return importlib.import_module(BENCHMARKS[name][0])
