"""``rlvr train RECIPE [section.key=value ...] [--resume]``."""
from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="YAML recipe (see recipes/)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. trainer.lr=1e-6 rollout.n=8")
    p.add_argument("--resume", action="store_true",
                   help="continue from the latest checkpoint in trainer.output_dir")
    p.add_argument("--output-dir", help="shortcut for trainer.output_dir=...")


def run(args: argparse.Namespace) -> int:
    from rlvr.config import load_config

    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"trainer.output_dir={args.output_dir}")
    cfg = load_config(args.recipe, overrides)
    from rlvr.trainer import Trainer

    trainer = Trainer(cfg, resume=args.resume)
    summary = trainer.train()
    if trainer.is_main:
        print(json.dumps(summary, indent=2))
        print(f"run directory: {trainer.run_dir}")
    return 0
