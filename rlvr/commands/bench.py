"""``rlvr bench TARGET [options]``: the benchmarks of :mod:`rlvr.bench` (``BENCHMARKS``), which write
JSON under benchmarks/results/."""
from __future__ import annotations

import argparse

from rlvr.bench import BENCHMARKS, load

TARGETS = {name: module for name, (module, _) in BENCHMARKS.items()}  # target -> module


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = "targets (rlvr bench TARGET --help for their options):\n" + "\n".join(
        f"  {name:<12}{help_}" for name, (_, help_) in BENCHMARKS.items())
    p.add_argument("target", choices=sorted(TARGETS), help="what to benchmark")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options passed to the benchmark")


def parser(target: str) -> argparse.ArgumentParser:
    """The parser of one benchmark (``rlvr bench TARGET ...``)."""
    p = argparse.ArgumentParser(prog=f"rlvr bench {target}", description=BENCHMARKS[target][1])
    load(target).add_arguments(p)
    return p


def parse(target: str, rest: list[str]) -> argparse.Namespace:
    """The benchmark's own arguments; dotted overrides may come before or after its options
    (``rlvr bench step RECIPE --presets ppo,trpo trainer.lr=1e-5``), as for the other commands."""
    return parser(target).parse_intermixed_args(rest)


def run(args: argparse.Namespace) -> int:
    return load(args.target).run(parse(args.target, args.rest))
