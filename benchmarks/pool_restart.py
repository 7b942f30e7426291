"""What a scoring worker's restart costs the next scoring call (docs/benchmarks.md, "Verifiers").

A verifier whose build takes ``--warm-s`` seconds (a heavy import: sympy for math, transformers for
a TRL reward function) scores batches whose last two items time out, as a training step's batch
can; after ``--gap-s`` seconds (the rest of the step) the next batch is timed. Run from the
repository root: ``python benchmarks/pool_restart.py [--out benchmarks/results/pool_restart.json]``.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import verifiers  # noqa: E402
from test_verifiers import WarmLog  # noqa: E402 - a verifier the workers can import by name
from verifiers.pool import ScoringPool  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warm-s", type=float, default=3.0)
    ap.add_argument("--gap-s", type=float, default=5.0)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    waits = []
    with tempfile.TemporaryDirectory() as tmp, ScoringPool(2) as pool:
        v = WarmLog(str(Path(tmp) / "warm.log"), a.warm_s)
        key, spec = verifiers._spec(v, v)
        pool.score(key, spec, ["ok"] * 4, [0] * 4, timeout=10 + a.warm_s)
        for _ in range(a.steps):
            pool.score(key, spec, ["ok", "ok", "ok", "no"], [0, 0, 60, 60], timeout=1.0)  # 2 items killed
            time.sleep(a.gap_s)
            t0 = time.monotonic()
            pool.score(key, spec, ["ok"] * 4, [0] * 4, timeout=10 + a.warm_s)
            waits.append(round(time.monotonic() - t0, 3))
    out = {"bench": "pool_restart", "warm_s": a.warm_s, "gap_s": a.gap_s, "next_call_s": waits,
           "median_s": statistics.median(waits), "restarts": pool.restarts, "python": platform.python_version(),
           "time": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    print(json.dumps(out))
    if a.out:
        a.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
