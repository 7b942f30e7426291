"""``rlvr compare RECIPE [overrides] [--presets A,B | --ladder | --controlled] [--seeds N]``: several presets
x N seeds on matched budgets, in one directory (:func:`evals.compare.compare`, which describes the layout).

    rlvr compare recipes/quickstart.yaml                       # ppo vs grpo, 3 seeds
    rlvr compare recipes/ladder.yaml --ladder --seeds 2        # REINFORCE -> PPO ladder + trpo, grpo
    rlvr report runs/compare_quickstart
"""
from __future__ import annotations

import argparse

from rlvr.errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="YAML recipe shared by every run")
    p.add_argument("overrides", nargs="*", help="dotted overrides applied to every run")
    p.add_argument("--presets", default="ppo,grpo",
                   help="comma-separated presets, or arms of the recipe (named variants of a preset; default: ppo,grpo)")
    p.add_argument("--ladder", action="store_true",
                   help="run the REINFORCE->PPO ladder plus its comparators trpo and grpo")
    p.add_argument("--controlled", action="store_true",
                   help="runs that differ only in the baseline: ctrl_critic, ctrl_group, ctrl_loo")
    p.add_argument("--seeds", type=int, default=3, help="seeds per preset (default 3)")
    p.add_argument("--out", help="output directory (default runs/compare_<recipe name>)")
    p.add_argument("--max-tokens", type=int, help="cap on generated response tokens per run")
    p.add_argument("--max-time", type=float, help="cap on wall-clock seconds per run")
    p.add_argument("--no-base-eval", action="store_true", help="skip evaluating the base model")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs side by side (default 1); each gets OMP_NUM_THREADS = cores / jobs unless set")
    p.add_argument("--margin", type=float, default=None,
                   help="equivalence margin m for the verdicts (default: the recipe's margin); recorded in "
                        "compare.json before any run starts")
    p.add_argument("--allow-mixed-commits", action="store_true",
                   help="let runs made with different code (commits, or a modified tree) into one study; "
                        "the report lists them")


def plan(args: argparse.Namespace, arms=()) -> tuple[list[str], list[int]]:
    """The presets (or the recipe's ``arms``, named variants of a preset) and seeds to run."""
    from rlvr.algorithms.presets import CONTROLLED, LADDER, LADDER_COMPARATORS, PRESETS

    if args.ladder and getattr(args, "controlled", False):
        raise ConfigError("--ladder and --controlled are two different studies; pick one")
    if args.ladder:
        presets = [*LADDER, *LADDER_COMPARATORS]
    elif getattr(args, "controlled", False):
        presets = list(CONTROLLED)
    else:
        presets = [s.strip() for s in args.presets.split(",") if s.strip()]
    for name in presets:
        if name not in PRESETS and name not in arms:
            listed = f"; the recipe's arms: {', '.join(arms)}" if arms else ""
            raise ConfigError(f"--presets: unknown preset '{name}'; valid: {', '.join(sorted(PRESETS))}{listed}")
    if args.seeds < 1:
        raise ConfigError("--seeds must be >= 1")
    return list(dict.fromkeys(presets)), list(range(args.seeds))


def run(args: argparse.Namespace) -> int:
    from evals.compare import compare
    from rlvr.config import load_config

    cfg = load_config(args.recipe, args.overrides)  # validate once, before any run starts
    presets, seeds = plan(args, cfg.arms)
    compare(args.recipe, args.overrides, presets, seeds, cfg=cfg, out=args.out, max_tokens=args.max_tokens,
            max_time=args.max_time, base_eval=not args.no_base_eval, jobs=args.jobs, margin=args.margin,
            allow_mixed_commits=args.allow_mixed_commits)
    return 0
