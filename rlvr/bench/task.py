"""``rlvr bench task --tasks arithmetic:chain4d1,arithmetic:chain5d1``: is a task fit for a
critic-vs-group study with this model? What the base model's sampled groups look like.

For each task, the first ``--prompts`` held-out items (``--split``, drawn with ``--data-seed``, the
same items a recipe's ``data.eval_seed`` gives) are chat-encoded and answered by the rollout
engine (``--engine hf``: the trainer's own decode loop; ``vllm``), greedy once and ``--n`` samples
per prompt at each of ``--temperatures``, and scored by the task's own verifier through
:func:`rlvr.scoring.score_examples` (the trainer's path). Per setting:

* ``accuracy``: mean reward over samples; ``pass@n``: items with at least one right sample;
* ``mixed``: the fraction of groups with some right and some wrong samples -- only those groups
  give a group baseline a non-zero advantage -- and ``all_right`` / ``all_wrong``;
* ``tokens``: response length in tokens (EOS included), mean / median / p10 / p90 / max, and
  ``truncated``: the fraction that hit ``--max-new-tokens`` without EOS, and ``truncated_at``: the
  fraction a smaller cap (``--caps``) would have cut (longer than the cap, or cut already);
* ``steps`` (tasks whose items list their ``terms``, the ``arithmetic:chain*`` family): how much
  the intermediate tokens say about the outcome. A response's trace is its "a + b = c" lines;
  ``trace_right``: the fraction whose running totals are exactly the true partial sums;
  ``accuracy_if_trace_right`` / ``accuracy_if_trace_wrong``: the accuracy within each part, and
  ``lines_right``: the fraction of "a + b = c" lines whose sum is right.

A few responses per setting are kept (``--examples``). The JSON
(``benchmarks/results/task_probe.json`` unless ``--out``) holds one entry per task under
``tasks`` (keyed "<task> [<engine>]"); entries not measured this time are kept from an earlier file, each with its
own settings, date and load average. On a shared CPU, ``--threads 1`` is often much faster than
one thread per core (measured: 11x at load 10 on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

LINE = re.compile(r"(-?\d+)\s*\+\s*(-?\d+)\s*=\s*(-?\d+)")


def _floats(text: str) -> list[float]:
    try:
        out = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if any(t <= 0 for t in out):
        raise argparse.ArgumentTypeError(f"temperatures must be > 0 (greedy is measured unless --no-greedy), "
                                         f"got {text!r}")
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", required=True, help="comma-separated prompt sources (rlvr.data.load_prompts)")
    p.add_argument("--engine", choices=["hf", "vllm"], default="hf")
    p.add_argument("--model", default="smollm2-135m-instruct", help="model name or directory")
    p.add_argument("--split", default="test")
    p.add_argument("--prompts", type=int, default=32, help="items per task")
    p.add_argument("--n", type=int, default=8, help="samples per item (the group size)")
    p.add_argument("--temperatures", type=_floats, default=[0.7, 1.0])
    p.add_argument("--no-greedy", action="store_true", help="skip the greedy pass")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--caps", default="48,64,80", help="smaller max_new_tokens to report truncation at")
    p.add_argument("--data-seed", type=int, default=0, help="draws a synthetic task's items (data.eval_seed)")
    p.add_argument("--seed", type=lambda v: None if v == "none" else int(v), default=0,
                   help="seeds the sampling ('none': unseeded; vLLM 0.32 on CPU fails on seeded requests "
                        "whose prompts are prefilled in chunks: 'CPU Generator does not use offset')")
    p.add_argument("--system-prompt", default=None)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--micro-batch-size", type=int, default=64, help="hf engine: sequences per forward")
    p.add_argument("--kv-cache-gb", type=float, default=1.0, help="vllm: KV cache size on CPU")
    p.add_argument("--enforce-eager", action="store_true", help="vllm: no torch.compile / CUDA graphs")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--examples", type=int, default=2, help="responses kept per task and setting")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/task_probe.json)")


def _quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return float(xs[min(len(xs) - 1, int(q * len(xs)))])


def trace_stats(terms: list[int], text: str) -> tuple[bool, int, int]:
    """(running totals == the true partial sums, right "a + b = c" lines, all such lines)."""
    lines = LINE.findall(text)
    truth = [sum(terms[: i + 1]) for i in range(1, len(terms))]
    return ([int(c) for _, _, c in lines] == truth, sum(int(a) + int(b) == int(c) for a, b, c in lines), len(lines))


def summarize(examples, rollout, rewards: list[float], n: int, caps: list[int], keep: int) -> dict:
    """The numbers of one setting (see the module docstring); sample i answers ``examples[i // n]``."""
    right = [r >= 1.0 for r in rewards]
    groups = [right[i : i + n] for i in range(0, len(right), n)]
    lengths = [len(r) for r in rollout.response_ids]
    out = {
        "samples": len(rewards), "accuracy": round(sum(rewards) / len(rewards), 4),
        f"pass@{n}": round(sum(any(g) for g in groups) / len(groups), 4),
        "tokens": {"mean": round(statistics.mean(lengths), 1), "median": statistics.median(lengths),
                   "p10": _quantile(lengths, 0.1), "p90": _quantile(lengths, 0.9), "max": max(lengths)},
        "truncated": round(sum(not f for f in rollout.finished) / len(rewards), 4),
        "truncated_at": {str(c): round(sum(k > c or not f for k, f in zip(lengths, rollout.finished)) / len(rewards), 4)
                         for c in caps},
    }
    if n > 1:
        out.update({"mixed": round(sum(0 < sum(g) < n for g in groups) / len(groups), 4),
                    "all_right": round(sum(all(g) for g in groups) / len(groups), 4),
                    "all_wrong": round(sum(not any(g) for g in groups) / len(groups), 4)})
    if all("terms" in ex.meta for ex in examples):
        traces = [trace_stats(examples[i // n].meta["terms"], t) for i, t in enumerate(rollout.texts)]
        ok = [t[0] for t in traces]
        acc = lambda sel: round(sum(r for r, s in zip(rewards, sel) if s) / max(1, sum(sel)), 4)  # noqa: E731
        out["steps"] = {"trace_right": round(sum(ok) / len(ok), 4),
                        "accuracy_if_trace_right": acc(ok) if any(ok) else None,
                        "accuracy_if_trace_wrong": acc([not o for o in ok]) if not all(ok) else None,
                        "lines_right": round(sum(t[1] for t in traces) / max(1, sum(t[2] for t in traces)), 4),
                        "lines_per_response": round(sum(t[2] for t in traces) / len(traces), 2)}
    out["examples"] = [{"reference": examples[i // n].reference, "reward": rewards[i], "tokens": lengths[i],
                        "text": rollout.texts[i]} for i in range(0, min(len(rewards), keep * n), n)]
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    from rlvr.bench import RESULTS_DIR
    from rlvr.bench.rollout import build_engine
    from rlvr.data import encode_prompt, load_prompts
    from rlvr.errors import ConfigError
    from rlvr.models import load_tokenizer, resolve_model_path
    from rlvr.rollout.base import SamplingParams
    from rlvr.scoring import score_examples

    for name in ("prompts", "n", "max_new_tokens"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    caps = sorted(int(c) for c in args.caps.split(",") if c.strip() and int(c) < args.max_new_tokens)
    model_path = resolve_model_path(args.model)
    tokenizer = load_tokenizer(model_path)
    t0 = time.perf_counter()
    engine = build_engine(argparse.Namespace(engine=args.engine, dtype=args.dtype, seed=args.seed or 0,
                                             micro_batch_size=args.micro_batch_size, kv_cache_gb=args.kv_cache_gb,
                                             enforce_eager=args.enforce_eager, serving_threads=args.threads,
                                             max_new_tokens=args.max_new_tokens), model_path, tokenizer)
    startup_s = time.perf_counter() - t0
    command = "rlvr bench task " + " ".join(sys.argv[3:]) if sys.argv[1:3] == ["bench", "task"] else None
    settings = ([] if args.no_greedy else [("greedy", 1, 0.0)]) + [(f"T={t:g}", args.n, t) for t in args.temperatures]
    results = {}
    for task in tasks:
        examples = load_prompts(task, split=args.split, limit=args.prompts, system_prompt=args.system_prompt,
                                seed=args.data_seed)
        prompts = [encode_prompt(tokenizer, ex) for ex in examples]
        entry = {"items": len(examples), "prompt_tokens_mean": round(statistics.mean(map(len, prompts)), 1),
                 "load_avg_1m_at_start": round(os.getloadavg()[0], 2)}
        for label, n, temperature in settings:
            t1 = time.perf_counter()
            rollout = engine.generate(prompts, SamplingParams(n=n, temperature=temperature, seed=args.seed,
                                                              max_new_tokens=args.max_new_tokens))
            gen_s = time.perf_counter() - t1
            scores = score_examples(examples, rollout.texts, n, [(None, 1.0)], workers=0, timeout=None)
            entry[label] = {**summarize(examples, rollout, list(scores.rewards), n, caps, args.examples),
                            "generate_s": round(gen_s, 1), "tokens_per_s": round(rollout.num_tokens / gen_s, 1)}
            s = entry[label]
            print(f"{task} {label}: accuracy {s['accuracy']:.3f}, mixed {s.get('mixed', float('nan')):.3f}, "
                  f"median {s['tokens']['median']} tokens, truncated {s['truncated']:.3f} ({gen_s:.0f} s)",
                  file=sys.stderr, flush=True)
        entry.update({"load_avg_1m_at_end": round(os.getloadavg()[0], 2),
                      "settings": {"engine": args.engine, "model": args.model, "split": args.split, "n": args.n,
                                   "max_new_tokens": args.max_new_tokens, "data_seed": args.data_seed,
                                   "seed": args.seed, "dtype": args.dtype, "threads": torch.get_num_threads(),
                                   "engine_startup_s": round(startup_s, 1), "command": command},
                      "date": time.strftime("%Y-%m-%d %H:%M")})
        results[f"{task} [{args.engine}]"] = entry
    out = Path(args.out) if args.out else RESULTS_DIR / "task_probe.json"
    old = json.loads(out.read_text()) if out.is_file() else {}
    doc = {**old, "benchmark": "rlvr bench task", "tasks": {**old.get("tasks", {}), **results},
           "cpu_count": os.cpu_count()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0
