"""``rlvr compare RECIPE``: several presets x N seeds on matched budgets, in one directory.

    rlvr compare recipes/quickstart.yaml                       # ppo vs grpo, 3 seeds
    rlvr compare recipes/ladder.yaml --ladder --seeds 2        # REINFORCE -> PPO ladder + grpo
    rlvr report runs/compare_quickstart

Matched budgets: every run gets the same prompts per step, samples per prompt and steps, so the
same number of generated samples (``trainer.max_samples``); ``--max-tokens`` also caps generated
response tokens and ``--max-time`` wall-clock seconds, identically for every run. Each run is a
subprocess (``rlvr train ... --resume``): a finished run (its ``summary.json`` exists) is never
redone, an interrupted one continues from its last checkpoint. The base model is evaluated once
on the same eval set, the same way, for reference.

Layout::

    OUT/compare.json              manifest: recipe, presets, seeds, budgets, run status
    OUT/base/summary.json         base-model eval
    OUT/<preset>/seed<k>/         one run directory each (config.yaml, metrics.jsonl, ...)
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from rlvr.errors import ConfigError, RlvrError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="YAML recipe shared by every run")
    p.add_argument("overrides", nargs="*", help="dotted overrides applied to every run")
    p.add_argument("--presets", default="ppo,grpo", help="comma-separated presets (default: ppo,grpo)")
    p.add_argument("--ladder", action="store_true", help="run the REINFORCE->PPO ladder plus grpo")
    p.add_argument("--seeds", type=int, default=3, help="seeds per preset (default 3)")
    p.add_argument("--out", help="output directory (default runs/compare_<recipe name>)")
    p.add_argument("--max-tokens", type=int, help="cap on generated response tokens per run")
    p.add_argument("--max-time", type=float, help="cap on wall-clock seconds per run")
    p.add_argument("--no-base-eval", action="store_true", help="skip evaluating the base model")


def plan(args: argparse.Namespace) -> tuple[list[str], list[int]]:
    from rlvr.algorithms.presets import LADDER, PRESETS

    presets = [*LADDER, "grpo"] if args.ladder else [s.strip() for s in args.presets.split(",") if s.strip()]
    for name in presets:
        if name not in PRESETS:
            raise ConfigError(f"--presets: unknown preset '{name}'; valid: {', '.join(sorted(PRESETS))}")
    if args.seeds < 1:
        raise ConfigError("--seeds must be >= 1")
    return list(dict.fromkeys(presets)), list(range(args.seeds))


def _run_overrides(cfg, preset: str, seed: int, run_dir: Path, args) -> list[str]:
    t, r = cfg.trainer, cfg.rollout
    budget = t.total_steps * t.prompts_per_step * r.n
    ov = [f"algorithm.preset={preset}", f"trainer.seed={seed}", f"trainer.output_dir={run_dir}",
          f"trainer.max_samples={budget}", "trainer.progress=false"]
    if args.max_tokens:
        ov.append(f"trainer.max_tokens={args.max_tokens}")
    if args.max_time:
        ov.append(f"trainer.max_time_s={args.max_time}")
    return ov


def _base_eval(cfg, out: Path) -> dict | None:
    dest = out / "base" / "summary.json"
    if dest.is_file():
        return json.loads(dest.read_text())
    if not cfg.data.eval:
        return None
    from evals.harness import evaluate
    from rlvr.data import load_prompts

    examples = load_prompts(cfg.data.eval, split=cfg.data.eval_split or "test", limit=cfg.data.eval_limit,
                            system_prompt=cfg.data.system_prompt, seed=cfg.trainer.seed)
    dest.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = evaluate(cfg.model.name, examples, temperature=0.0,
                   max_new_tokens=cfg.rollout.eval_max_new_tokens or cfg.rollout.max_new_tokens,
                   batch_size=cfg.rollout.micro_batch_size, verifier=cfg.reward.verifier,
                   workers=cfg.reward.workers, timeout=cfg.reward.timeout_s,
                   out_path=dest.parent / "eval_items.jsonl", progress=False)
    summary = {"preset": "base", "final_eval/pass@1": res["pass@1"], "eval/n": res["n"],
               "elapsed_s": time.perf_counter() - t0}
    dest.write_text(json.dumps(summary, indent=2))
    return summary


def run(args: argparse.Namespace) -> int:
    from rlvr.config import load_config

    cfg = load_config(args.recipe, args.overrides)  # validate once, before any run starts
    presets, seeds = plan(args)
    out = Path(args.out or f"runs/compare_{cfg.name}")
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "compare.json"
    manifest = {"recipe": str(args.recipe), "overrides": list(args.overrides), "presets": presets,
                "seeds": seeds, "budget": {"samples": cfg.trainer.total_steps * cfg.trainer.prompts_per_step
                                           * cfg.rollout.n, "tokens": args.max_tokens, "time_s": args.max_time},
                "runs": {}}
    if not args.no_base_eval:
        base = _base_eval(cfg, out)
        if base is not None:
            manifest["base"] = base
            print(f"base model: eval pass@1 = {base['final_eval/pass@1']:.3f} (n={base['eval/n']})")
    failed = []
    for seed in seeds:  # seed-major order: an interrupted compare still has every preset at seed 0
        for preset in presets:
            run_dir = out / preset / f"seed{seed}"
            key = f"{preset}/seed{seed}"
            if (run_dir / "summary.json").is_file():
                manifest["runs"][key] = "done"
                print(f"[skip] {key}: already finished")
                continue
            cmd = [sys.executable, "-m", "rlvr.cli", "train", str(args.recipe), *args.overrides,
                   *_run_overrides(cfg, preset, seed, run_dir, args), "--resume"]
            print(f"[run ] {key}")
            rc = subprocess.call(cmd)
            ok = rc == 0 and (run_dir / "summary.json").is_file()
            manifest["runs"][key] = "done" if ok else f"failed (exit {rc})"
            manifest_path.write_text(json.dumps(manifest, indent=2))
            if rc in (-2, 130):  # interrupted by the user: stop the whole comparison
                raise RlvrError(f"interrupted during {key}; rerun the same command to continue")
            if not ok:
                failed.append(key)
    manifest_path.write_text(json.dumps(manifest, indent=2))
    print(f"compare directory: {out}  (render with: rlvr report {out})")
    if failed:
        raise RlvrError(f"{len(failed)} run(s) failed: {', '.join(failed)}; see their run directories")
    return 0
