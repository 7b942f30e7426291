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


def run(args: argparse.Namespace) -> int:
    mod = importlib.import_module(TARGETS[args.target])
    parser = argparse.ArgumentParser(prog=f"rlvr bench {args.target}")
    mod.add_arguments(parser)
    return mod.run(parser.parse_args(args.rest))
