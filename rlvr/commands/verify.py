"""``rlvr verify -v VERIFIER -c COMPLETIONS.jsonl -r REFERENCES.jsonl [-o OUT.jsonl]``: score completions
against references with a verifier (:func:`verifiers.files.score_files`; the file formats are
described there) and print a one-line summary."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


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


def run(args: argparse.Namespace) -> int:
    from verifiers.files import score_files

    summary = score_files(args.verifier, args.completions, args.references, out=args.out, workers=args.workers,
                          timeout=args.timeout)
    print(f"verifier={args.verifier} count={summary['count']} mean_reward={summary['mean_reward']:.4f} "
          f"correct={summary['correct']} timeouts={summary['timeouts']} errors={summary['errors']} "
          f"violations={summary['violations']} "
          f"time={summary['seconds']:.2f}s throughput={summary['items_per_s']}/s"
          + (f" -> {args.out}" if args.out else ""))
    sys.stdout.flush()
    return 0
