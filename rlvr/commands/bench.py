"""``rlvr bench verifiers|rollout|train|step|weightpush``: benchmarks that write JSON under benchmarks/results/."""
from __future__ import annotations

import argparse
import importlib

TARGETS = {
    "verifiers": "verifiers.bench",
    "rollout": "rlvr.rollout.bench",
    "train": "rlvr.bench_train",
    "step": "rlvr.bench_step",
    "weightpush": "rlvr.bench_weightpush",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", choices=sorted(TARGETS), help="what to benchmark")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options passed to the benchmark")


def parse(target: str, rest: list[str]) -> argparse.Namespace:
    """The benchmark's own arguments; dotted overrides may come before or after its options
    (``rlvr bench step RECIPE --presets ppo,trpo trainer.lr=1e-5``), as for the other commands."""
    parser = argparse.ArgumentParser(prog=f"rlvr bench {target}")
    importlib.import_module(TARGETS[target]).add_arguments(parser)
    return parser.parse_intermixed_args(rest)


def run(args: argparse.Namespace) -> int:
    return importlib.import_module(TARGETS[args.target]).run(parse(args.target, args.rest))
