"""The README's main job: `rlvr train recipes/quickstart.yaml` runs end to end and learns.

Slow (several minutes on 2 CPU cores: real SmolLM2-135M-Instruct, 20 GRPO steps); it still runs in
CI because it is the product's promise. No timing assertion here: the wall time is printed and
tracked in docs/quickstart.md.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_learns(tmp_path, smollm2_path):
    out = tmp_path / "quickstart"
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "rlvr.cli", "train", str(ROOT / "recipes" / "quickstart.yaml"),
                          f"trainer.output_dir={out}", "trainer.progress=false"],
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr[-3000:]
    evals = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    print(f"quickstart wall time {wall:.0f}s; eval pass@1 by step: "
          f"{[(e['step'], e['eval/pass@1']) for e in evals]}")
    assert [e["step"] for e in evals] == [0, 10, 20] and len(metrics) == 20
    base, final = evals[0]["eval/pass@1"], evals[-1]["eval/pass@1"]
    # held-out greedy accuracy on 64 problems: measured 0.17 -> 0.34 (step 10) -> 0.375 (step 20)
    assert final >= base + 0.08, (base, final)
    first, last = metrics[:5], metrics[-5:]
    mean = lambda rows: sum(r["reward/mean"] for r in rows) / len(rows)  # noqa: E731
    assert mean(last) > mean(first) + 0.05  # training reward rises too
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"] == "total_steps" and summary["final_eval/pass@1"] == final
