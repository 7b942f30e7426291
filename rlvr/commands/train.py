"""``rlvr train RECIPE [section.key=value ...] [--resume | --force-resume]``."""
from __future__ import annotations

import argparse
import json
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="YAML recipe (see recipes/)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. trainer.lr=1e-6 rollout.n=8")
    p.add_argument("--resume", action="store_true",
                   help="continue from the latest checkpoint in trainer.output_dir")
    p.add_argument("--force-resume", action="store_true",
                   help="resume even with training settings that differ from the run's config.yaml (the "
                        "changes are recorded in resume_forced.jsonl)")
    p.add_argument("--output-dir", help="shortcut for trainer.output_dir=...")


def run(args: argparse.Namespace) -> int:
    from rlvr.config import load_config

    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"trainer.output_dir={args.output_dir}")
    cfg = load_config(args.recipe, overrides)
    from rlvr.collective import end_process_group
    from rlvr.trainer import Trainer

    trainer = Trainer(cfg, resume=args.resume, force_resume=args.force_resume, evaluator=harness_evaluator)
    try:
        summary = trainer.train()
    finally:
        trainer.close()
    if trainer.is_main:
        print(json.dumps(summary, indent=2))
        print(f"run directory: {trainer.run_dir}")
    # stopped by a signal (checkpointed): the shell's code for it, 128 + the signal's number
    stop = summary.get("stop_reason")
    if stop in ("SIGINT", "SIGTERM"):
        import signal

        # every process stopped at the same step; none exits before the others are done (a launcher
        # stops the remaining processes as soon as one exits with an error code)
        trainer.accelerator.wait_for_everyone()
        end_process_group(wait_for_peers=True)
        return 128 + int(signal.Signals[stop])
    end_process_group(wait_for_peers=True)
    return 0


def harness_evaluator(trainer: Any, final: bool) -> dict[str, Any]:
    """The trainer's evaluation through the evals harness (``evals.harness.evaluate``).

    Greedy pass@1 on the trainer's held-out items; the final eval also samples
    ``trainer.final_eval_samples`` completions per item (pass@k, k = 1..that, at
    ``trainer.final_eval_temperature``) and writes per-item results to ``eval_items.jsonl`` (what the
    report's paired intervals resample). An embedded engine is reused (no second copy of the model).
    """
    from evals.harness import evaluate, recipe_eval_settings, scoring_warning

    settings = recipe_eval_settings(trainer.cfg, final=final, seed=trainer.cfg.trainer.seed)
    examples = trainer.eval_examples
    limit = trainer.cfg.trainer.eval_every_limit
    if not final and limit is not None:  # periodic evals: the first N held-out items (a fixed subset)
        examples = examples[:limit]
    res = evaluate((trainer.sampling_model, trainer.tokenizer), examples,
                   engine=trainer.engine if trainer.engine_embedded else None,
                   progress=False, out_path=trainer.run_dir / "eval_items.jsonl" if final else None, **settings)
    warning = scoring_warning(res)
    if warning:
        print(f"rlvr train: eval at step {trainer.step}: {warning}")
    return res
