"""``rlvr verify``: score a JSONL file of completions against a JSONL file of references.

Each completions line is a JSON string or an object with a ``completion`` string; each references
line is any JSON value, or an object whose ``reference`` field is used when present (otherwise the
whole object is the reference: a GSM8K/MATH/HumanEval/MBPP row works as is). Line i of one file
goes with line i of the other. Prints a summary and, with ``--out``, writes one JSON object per
item: ``index, reward`` and the verifier's info (``extracted, reason, time_s, ...``; an info key
named ``index``, ``reward`` or ``verifier_info`` is kept under ``verifier_info``).

A TRL reward function (``--verifier trl:rewards.py:fn``, :mod:`verifiers.trl`) scores the whole file in
one call: each references line that is an object is that completion's row (its ``prompt`` and its
other columns, e.g. ``solution``; any other value is the column ``reference``), and a completions
line may carry ``prompt`` and ``completion_ids`` beside ``completion``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from verifiers.errors import VerifierError as DataError  # bad input files: one line, exit code 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verifier", "-v", default="math",
                   help="math, math_strict, arithmetic, code, code_partial, format, reasoning_gym:<task>, "
                        "a plugin name, path/to/file.py:function, package.module:function, or a TRL reward "
                        "function trl:<file.py or module>:<function>[(<factory arguments>)]")
    p.add_argument("--completions", "-c", required=True, type=Path, help="JSONL of completions")
    p.add_argument("--references", "-r", required=True, type=Path, help="JSONL of references (same order)")
    p.add_argument("--out", "-o", type=Path, help="write per-item results here (JSONL)")
    p.add_argument("--workers", "-w", type=int, default=None,
                   help="scoring processes (default: CPU count, max 8; 0 = in-process, timeout by a watchdog thread)")
    p.add_argument("--timeout", "-t", type=float, default=None, help="hard per-item timeout in seconds")


def _read_jsonl(path: Path) -> list[tuple[str, Any]]:
    """``[(file:line, value)]`` for every non-blank line (DataError naming file:line on bad JSON)."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                out.append((where, json.loads(line)))
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: invalid JSON ({e.msg})") from None
    return out


def load_completions(path: Path) -> list[str]:
    texts = []
    for where, value in _read_jsonl(path):
        if isinstance(value, dict):
            value = value.get("completion")
        if not isinstance(value, str):
            raise DataError(f"{where}: expected a JSON string or an object with a string 'completion'")
        texts.append(value)
    return texts


def load_references(path: Path) -> list[Any]:
    return [v["reference"] if isinstance(v, dict) and "reference" in v else v for _, v in _read_jsonl(path)]


def load_trl_items(completions: Path, references: Path) -> list:
    """The :class:`verifiers.trl.Item` of each line pair: the references line's row (an object: its
    columns, ``prompt`` apart; else the column ``reference``), the completions line's ``prompt`` and
    ``completion_ids`` when it has them."""
    from verifiers.trl import item_of

    items = [item_of(v) for _, v in _read_jsonl(references)]
    for item, (where, c) in zip(items, _read_jsonl(completions)):
        if isinstance(c, dict):
            if "prompt" in c:
                item.prompt = c["prompt"]
            ids = c.get("completion_ids")
            if ids is not None:
                if not (isinstance(ids, list) and all(isinstance(x, int) for x in ids)):
                    raise DataError(f"{where}: 'completion_ids' must be a list of integers")
                item.completion_ids = ids
    return items


def summarize(results: list, seconds: float) -> dict:
    from verifiers.base import outcome

    n = len(results)
    seen = [outcome(r) for r in results]
    applied = [r.reward for r in results if not (r.info or {}).get("none")]  # a TRL function's None: left out
    return {"count": n, "mean_reward": sum(applied) / len(applied) if applied else 0.0,
            "correct": sum(r.reward >= 1.0 for r in results),
            "timeouts": seen.count("timeout"), "errors": seen.count("crash"), "violations": seen.count("violation"),
            "seconds": round(seconds, 3), "items_per_s": round(n / seconds, 1) if seconds > 0 else None}


RESERVED = ("index", "reward", "verifier_info")


def out_row(index: int, result) -> dict:
    """One ``--out`` line: ``index`` and ``reward`` are ours; the verifier's info keys follow, and
    any of them that would overwrite ours goes under ``verifier_info`` instead."""
    info = dict(result.info or {})
    clash = {k: info.pop(k) for k in RESERVED if k in info}
    return {"index": index, "reward": result.reward, **info, **({"verifier_info": clash} if clash else {})}


def run(args: argparse.Namespace) -> int:
    import verifiers

    completions = load_completions(args.completions)
    references = load_references(args.references)
    if len(completions) != len(references):
        raise DataError(f"{args.completions} has {len(completions)} completions but {args.references} "
                        f"has {len(references)} references")
    items = load_trl_items(args.completions, args.references) if args.verifier.startswith("trl:") else None
    # unknown name, failed import, wrong signature, non-number reward: one line, before scoring
    verifiers.check(args.verifier, (items or references)[0] if references else None, workers=args.workers,
                    timeout=args.timeout)
    t0 = time.perf_counter()
    results = verifiers.score_batch(args.verifier, completions, items or references, workers=args.workers,
                                    timeout=args.timeout)
    summary = summarize(results, time.perf_counter() - t0)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            for i, r in enumerate(results):
                f.write(json.dumps(out_row(i, r), default=str) + "\n")
    print(f"verifier={args.verifier} count={summary['count']} mean_reward={summary['mean_reward']:.4f} "
          f"correct={summary['correct']} timeouts={summary['timeouts']} errors={summary['errors']} "
          f"violations={summary['violations']} "
          f"time={summary['seconds']:.2f}s throughput={summary['items_per_s']}/s"
          + (f" -> {args.out}" if args.out else ""))
    sys.stdout.flush()
    return 0
