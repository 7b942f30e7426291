"""``rlvr eval MODEL_OR_CHECKPOINT --task TASK``: pass@1 (greedy) and sampled pass@k / maj@k.

    rlvr eval smollm2-135m-instruct --task arithmetic:add2 --limit 64
    rlvr eval runs/quickstart --task gsm8k --samples 8 --temperature 0.7 --k 1,8 --out evals.jsonl

MODEL_OR_CHECKPOINT: a model name (``smollm2-135m-instruct``, ``tiny-random``), a HF model dir,
a checkpoint dir (``RUN/checkpoints/step_N/``, holding ``policy/``) or a run dir (latest checkpoint).
The evaluation is :func:`evals.harness.evaluate`; this module parses the options and prints.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from rlvr.errors import ConfigError


def _k_list(text: str) -> list[int]:
    try:
        ks = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k expects comma-separated integers, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"--k values must be >= 1, got {text!r}")
    return ks


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL_OR_CHECKPOINT", help="model name/dir, checkpoint dir or run dir")
    p.add_argument("--task", required=True,
                   help="gsm8k | math500 | humaneval | mbpp | arithmetic:add2 | PATH.jsonl | PATH.parquet | "
                        "a datasets save_to_disk folder | HF dataset")
    p.add_argument("--format", default=None, choices=["gsm8k", "math", "humaneval", "mbpp", "generic", "trl"],
                   help="row format of a data file (default: detected; trl: a TRL dataset as it is)")
    p.add_argument("--reference-column", default=None,
                   help="with --format trl: the column the built-in verifiers check (e.g. answer)")
    p.add_argument("--split", default=None, help="dataset split (default: the task's test split)")
    p.add_argument("--samples", type=int, default=1, help="completions per prompt for pass@k/maj@k (default 1)")
    p.add_argument("--temperature", type=float, default=None,
                   help="sampling temperature (default: 0 = greedy only when --samples 1, else 1.0)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--k", type=_k_list, default=None, help="k values, e.g. 1,8 (default: 1 and --samples)")
    p.add_argument("--no-greedy", action="store_true", help="skip the greedy pass when sampling")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N items")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=32, help="sequences per generate call")
    p.add_argument("--system-prompt", default=None)
    p.add_argument("--verifier", default=None,
                   help="override the task's verifier: math, code, format..., path/to/file.py:function "
                        "package.module:function, or a TRL reward function trl:<file.py or module>:<function>")
    p.add_argument("--seed", type=int, default=0, help="seeds the sampling (not which items are drawn)")
    p.add_argument("--data-seed", type=int, default=None,
                   help="draws a synthetic task's items (default: data.eval_seed of the run's config.yaml "
                        "when MODEL_OR_CHECKPOINT is in a run directory, else 0: the held-out items of training)")
    p.add_argument("--workers", type=int, default=None, help="verifier worker processes (default: CPUs, max 8)")
    p.add_argument("--timeout", type=float, default=None, help="verifier timeout per completion in seconds")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument("--dtype", default=None, help="bf16 | fp16 | fp32 (default: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="per-item JSONL; the summary goes next to it as FILE.summary.json")


def _fmt(v, h=None) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" + (f" ± {h:.4f}" if h is not None and math.isfinite(h) else "")
    return str(v)


def _finite(obj):
    """JSON-safe copy: NaN/inf (e.g. the CI of a single item) become null."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary['model']} on {summary['task']} (n={summary['n']})")
    table.add_column("metric")
    table.add_column("value (± 95% CI over items)", justify="right")
    for k, v in summary.items():
        if k in ("ci95", "model", "task", "out_path") or (k.startswith(("pass@", "maj@")) and k != "pass@1"):
            continue  # pass@k / maj@k (k > 1) repeat sampled/pass@k / sampled/maj@k
        table.add_row(k, _fmt(v, summary["ci95"].get(k)))
    Console().print(table)


def run(args: argparse.Namespace) -> int:
    from evals.harness import evaluate, run_eval_seed, scoring_warning

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    if args.reference_column and args.format != "trl":
        raise ConfigError("--reference-column needs --format trl")
    data_seed = args.data_seed
    if data_seed is None:
        data_seed = run_eval_seed(args.model)
        data_seed = 0 if data_seed is None else data_seed
    ks = args.k or sorted({1, args.samples})
    summary = evaluate(args.model, args.task, samples=args.samples, temperature=args.temperature, k_values=ks,
                       limit=args.limit, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                       out_path=args.out, verifier=args.verifier, split=args.split,
                       system_prompt=args.system_prompt, seed=args.seed, data_seed=data_seed, greedy=not args.no_greedy,
                       top_p=args.top_p, workers=args.workers, timeout=args.timeout, device=args.device,
                       dtype=args.dtype, format=args.format, reference_column=args.reference_column)
    print_summary(summary)
    warning = scoring_warning(summary)
    if warning:
        print(warning)
    if args.out:
        path = Path(args.out).with_name(Path(args.out).name + ".summary.json")
        path.write_text(json.dumps(_finite(summary), indent=2, default=str))
        print(f"wrote {args.out} and {path}")
    return 0
