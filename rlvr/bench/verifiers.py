"""``rlvr bench verifiers``: scoring throughput of the math and code verifiers.

* math/gsm8k: the 1,319 GSM8K test gold answers against model-like completions built from the
  worked solutions (answer as ``\\boxed{}``, ``#### N``, "the answer is N", a trailing number, or
  a wrong boxed number), scored with ``workers`` processes. Target: >= 500 answers/s on 2 cores.
* math/math500: the 500 MATH-500 gold answers against completions whose boxed answer is an
  equivalent but not identical form, so every item goes through Math-Verify (the slow path).
* code/humaneval: the 164 HumanEval canonical solutions, each run in the bubblewrap sandbox with
  its tests in a judge process. Target: >= 20 runs/s.

Times exclude starting the pool (reported as ``cold_start_s``). The Math-Verify benchmark uses a
fresh pool per pass (warmed on MATH train answers), since Math-Verify caches parsed LaTeX and a
repeated pass would be flattered. Writes a JSON file with machine info (including the load
average: the cores may be shared) and keeps the previous runs' numbers under ``history``.
"""
from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import platform
import random
import re
import statistics
import sys
import time
from pathlib import Path

from rlvr.bench import RESULTS_DIR

DEFAULT_OUT = RESULTS_DIR / "verifiers.json"


def data_dir() -> Path:
    env = os.environ.get("RLVR_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=2, help="scoring processes (default 2)")
    p.add_argument("--repeat", type=int, default=3, help="timed passes per benchmark (default 3)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    p.add_argument("--only", choices=["math", "code"], help="run just one family")


def gsm8k_completions(rows: list[dict], seed: int = 0) -> tuple[list[str], list[str]]:
    """Model-like completions for GSM8K rows (about 85% correct) and their references."""
    from verifiers.math import gsm8k_reference

    rng = random.Random(seed)
    comps, refs = [], []
    for row in rows:
        ref = gsm8k_reference(row)
        steps = re.sub(r"<<[^>]*>>", "", row["answer"].rsplit("####", 1)[0]).strip()
        value = int(ref) if re.fullmatch(r"-?\d+", ref) else ref
        shown = f"{value:,}" if isinstance(value, int) and rng.random() < 0.3 else str(value)
        style = rng.random()
        if style < 0.40:
            end = f"The final answer is $\\boxed{{{shown}}}$."
        elif style < 0.60:
            end = f"#### {shown}"
        elif style < 0.75:
            end = f"So the answer is {shown}."
        elif style < 0.85:
            end = f"Therefore the total comes to ${shown} in all."
        else:
            end = f"The answer is \\boxed{{{value + rng.randint(1, 9) if isinstance(value, int) else value}}}."
        comps.append(f"Let's solve this step by step.\n{steps}\n{end}")
        refs.append(ref)
    return comps, refs


def math500_completions(rows: list[dict], seed: int = 0) -> tuple[list[str], list[str]]:
    """MATH-500 completions with equivalent-but-different boxed answers (70%) or another row's answer."""
    from verifiers.math import math_reference

    rng = random.Random(seed)
    refs = [math_reference(r) for r in rows]
    comps = []
    for i, ref in enumerate(refs):
        answer = "\\displaystyle " + ref if rng.random() < 0.7 else refs[(i + 1) % len(refs)]
        comps.append(f"We compute carefully.\nSo the final answer is $\\boxed{{{answer}}}$.")
    return comps, refs


def humaneval_items(path: Path) -> tuple[list[str], list[dict]]:
    rows = [json.loads(line) for line in gzip.open(path, "rt", encoding="utf-8")]
    return [f"```python\n{r['prompt']}{r['canonical_solution']}```" for r in rows], rows


def bench_one(name: str, spec_name: str, comps: list, refs: list, workers: int, repeat: int,
              warm: tuple[list, list] | None = None) -> dict:
    """Items/s of ``repeat`` timed passes over the whole set.

    Without ``warm``: one pool, warmed on the first items, scores the set ``repeat`` times. With
    ``warm`` (completions, references disjoint from the set): every pass gets a fresh pool warmed
    on those, so no parse cache has seen the timed strings (Math-Verify caches parsed LaTeX).
    """
    import verifiers
    from verifiers.pool import ScoringPool

    timeout = verifiers.get(spec_name).default_timeout
    key, spec = f"name:{spec_name}", ("name", spec_name)
    rates, colds, res = [], [], []
    pool = None
    for i in range(repeat):
        if pool is None or warm is not None:
            if pool is not None:
                pool.close()
            pool = ScoringPool(workers)
            wc, wr = warm if warm is not None else (comps, refs)
            t0 = time.perf_counter()  # cold start: processes, imports, verifier (and sandbox) start-up
            pool.score(key, spec, wc[: 2 * workers], wr[: 2 * workers], timeout=timeout)
            colds.append(round(time.perf_counter() - t0, 2))
        t0 = time.perf_counter()
        res = pool.score(key, spec, comps, refs, timeout=timeout)
        rates.append(round(len(res) / (time.perf_counter() - t0), 1))
    pool.close()
    out = {"n": len(comps), "workers": workers, "per_s": rates, "median_per_s": statistics.median(rates),
           "correct": int(sum(r.reward for r in res)), "timeouts": sum(bool(r.info.get("timeout")) for r in res),
           "cold_start_s": colds, "fresh_pool_per_pass": warm is not None}
    print(f"{name:18s} n={out['n']:5d} workers={workers} {out['median_per_s']:8.1f}/s "
          f"(passes: {rates}) correct={out['correct']} cold_start={colds}s", flush=True)
    return out


def sandbox_cold_start(n: int = 3) -> list[float]:
    """Seconds from a new code sandbox (bubblewrap + launcher) to the first verdict, ``n`` times."""
    from verifiers.code import build_request
    from verifiers.sandbox import Sandbox

    request = build_request("def f():\n    return 1\n", {"test": "assert f() == 1"})
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        with Sandbox(timeout=30.0) as box:
            if box.run(request).status != "passed":
                raise RuntimeError("the code sandbox failed a trivial program")
            times.append(round(time.perf_counter() - t0, 3))
    return times


def machine_info() -> dict:
    return {"cpu_count": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}


def run(args: argparse.Namespace) -> int:
    from verifiers.errors import VerifierError as DataError
    from verifiers.sandbox import isolation_prefix

    root = data_dir()
    if not root.is_dir():
        raise DataError(f"benchmark data not found at {root} (set RLVR_DATA_DIR)")
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine_info(), "sandbox_namespaces": " ".join(isolation_prefix()[1:]) or "none",
              "targets": {"math_gsm8k_per_s": 500, "code_humaneval_per_s": 20}}
    if args.only in (None, "math"):
        gsm = [json.loads(line) for line in open(root / "gsm8k" / "test.jsonl", encoding="utf-8")]
        result["math_gsm8k"] = bench_one("math/gsm8k", "math", *gsm8k_completions(gsm), args.workers, args.repeat)
        m500 = [json.loads(line) for line in open(root / "math" / "test.jsonl", encoding="utf-8")]
        train = [json.loads(line) for _, line in zip(range(64), open(root / "math" / "train.jsonl", encoding="utf-8"))]
        result["math_math500_mathverify"] = bench_one("math/math500 (MV)", "math", *math500_completions(m500),
                                                      args.workers, args.repeat, warm=math500_completions(train))
    if args.only in (None, "code"):
        result["code_humaneval"] = bench_one("code/humaneval", "code",
                                             *humaneval_items(root / "humaneval" / "HumanEval.jsonl.gz"),
                                             args.workers, args.repeat)
        result["code_humaneval"]["sandbox_cold_start_s"] = sandbox_cold_start()
    result["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.only:  # keep the other family's latest numbers (marked as carried over)
        try:
            previous = json.loads(args.out.read_text())
        except (OSError, json.JSONDecodeError):
            previous = {}
        for key in ("math_gsm8k", "math_math500_mathverify", "code_humaneval"):
            if key not in result and key in previous:
                result[key] = dict(previous[key], carried_over_from=previous.get("date"))
    _write(args.out, result)
    return 0


def _write(path: Path, result: dict) -> None:
    """Write ``result``; earlier runs in the same file move to ``history`` (last 10 kept)."""
    history = []
    if path.is_file():
        try:
            old = json.loads(path.read_text())
            history = old.pop("history", [])
            history.append(old)
        except (json.JSONDecodeError, OSError):
            pass
    result["history"] = history[-10:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
