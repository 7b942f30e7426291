"""``rlvr train RECIPE [section.key=value ...] [--resume]``."""
from __future__ import annotations

import argparse
import json
from typing import Any


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

    trainer = Trainer(cfg, resume=args.resume, evaluator=harness_evaluator)
    summary = trainer.train()
    if trainer.is_main:
        print(json.dumps(summary, indent=2))
        print(f"run directory: {trainer.run_dir}")
    return 0


def harness_evaluator(trainer: Any, final: bool) -> dict[str, Any]:
    """The trainer's evaluation through the evals harness (``evals.harness.evaluate``).

    Greedy pass@1 on the trainer's held-out items; the final eval also samples
    ``trainer.final_eval_samples`` completions per item (pass@k, k = 1..that, at
    ``trainer.final_eval_temperature``) and writes per-item results to ``eval_items.jsonl`` (what the
    report's paired intervals resample). An embedded engine is reused (no second copy of the model).
    """
    from evals.harness import evaluate
    from rlvr.scoring import eval_verifier

    cfg = trainer.cfg
    r, t = cfg.rollout, cfg.trainer
    n = t.final_eval_samples if final else 0
    if n:
        temp = t.final_eval_temperature if t.final_eval_temperature is not None else r.temperature
        extra = dict(samples=n, temperature=temp, k_values=list(range(1, n + 1)), seed=t.seed)
    else:
        extra = dict(temperature=0.0)
    return evaluate((trainer.policy, trainer.tokenizer), trainer.eval_examples,
                    max_new_tokens=r.eval_max_new_tokens or r.max_new_tokens, batch_size=r.micro_batch_size,
                    engine=trainer.engine if trainer.engine_embedded else None,
                    verifier=eval_verifier(cfg.reward), workers=cfg.reward.workers, timeout=cfg.reward.timeout_s,
                    progress=False, out_path=trainer.run_dir / "eval_items.jsonl" if final else None, **extra)
