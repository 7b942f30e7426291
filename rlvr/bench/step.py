"""``rlvr bench step RECIPE [overrides] --presets grpo,ppo``: the wall-clock and CPU cost of whole
training steps (generate, score, old/ref/value passes, update), per phase, for each preset.

What a comparison at matched wall-clock pays per step. Each preset runs ``--warmup`` untimed steps
(first-call costs), then ``--steps`` timed ones on the same prompts as a real run; the JSON
(``benchmarks/results/step_<device>.json``, earlier runs kept under ``history``) holds every step's
per-phase wall seconds, the process CPU seconds (all threads), the torch thread count and the load
average before and after, so numbers from a shared machine can be told from clean ones.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="YAML recipe (e.g. recipes/quickstart.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted overrides applied to every preset")
    p.add_argument("--presets", default="grpo,ppo", help="comma-separated presets (default grpo,ppo)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per preset (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--label", default="", help="free text stored with the run (e.g. 'before', a commit)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/step_<device>.json)")


def measure(recipe: str, overrides: list[str], preset: str, steps: int, warmup: int, run_dir: str) -> dict:
    """Run ``warmup + steps`` training steps of ``preset``; per-step phase times and CPU seconds."""
    import torch

    from rlvr.config import load_config
    from rlvr.trainer import Trainer

    cfg = load_config(recipe, [*overrides, f"algorithm.preset={preset}", f"trainer.output_dir={run_dir}",
                               "trainer.eval_at_start=false", "trainer.eval_every=0", "data.eval=null",
                               "trainer.progress=false", "trainer.tensorboard=false"])
    trainer = Trainer(cfg)
    rows = []
    for i in range(warmup + steps):
        t0, c0 = time.perf_counter(), time.process_time()
        m = trainer.train_step()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if i >= warmup:
            rows.append({"wall_s": wall, "cpu_s": cpu,
                         **{k: v for k, v in m.items() if k.startswith("time/") and k not in ("time/step", "time/step_cpu")}})
    med = {k: statistics.median(r.get(k, 0.0) for r in rows) for k in rows[0]}
    return {"preset": preset, "torch_threads": torch.get_num_threads(), "median": med, "steps": rows}


def run(args: argparse.Namespace) -> int:
    import tempfile

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    load0 = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in presets:
            r = measure(args.recipe, list(args.overrides), name, args.steps, args.warmup, f"{tmp}/{name}")
            results.append(r)
            med = r["median"]
            phases = "  ".join(f"{k[5:]}={v:.2f}" for k, v in med.items() if k.startswith("time/") and v >= 0.01)
            print(f"{name}: {med['wall_s']:.2f} s/step wall, {med['cpu_s']:.2f} CPU s/step ({phases})", flush=True)
    entry = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "label": args.label,
        "recipe": args.recipe, "overrides": list(args.overrides), "device": device,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "loadavg_before": load0, "loadavg_after": os.getloadavg()},
        "results": results,
    }
    out = Path(args.out or f"benchmarks/results/step_{device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(out.read_text()) if out.is_file() else None
    history = (old.get("history", []) + [{k: v for k, v in old.items() if k != "history"}]) if old else []
    out.write_text(json.dumps({**entry, "history": history}, indent=2))
    print(f"wrote {out}")
    return 0
