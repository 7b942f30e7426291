"""``rlvr bench step RECIPE [overrides] --presets grpo,ppo``: the wall-clock and CPU cost of whole
training steps (generate, score, old/ref/value passes, update), per phase, for each preset.

What a comparison at matched wall-clock pays per step. Every preset's trainer is built first and
runs ``--warmup`` untimed steps (first-call costs); then the timed steps go round-robin, step k of
every preset before step k+1 of any, so a change in the machine's load (a shared machine) falls
on all presets alike rather than on whichever ran last. ``--ratios a/b,...`` prints, for each pair,
the ratio of the median CPU seconds and the median of the per-round ratios (round k of a against
round k of b: the same load, the same data order). The JSON
(``benchmarks/results/step_<device>.json``, earlier runs kept under ``history``) holds every step's
per-phase wall seconds, the process CPU seconds (all threads), the torch thread count and the load
average before and after, so numbers from a shared machine can be told from clean ones.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

from rlvr.bench import write_result


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="YAML recipe (e.g. recipes/quickstart.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted overrides applied to every preset")
    p.add_argument("--presets", default="grpo,ppo",
                   help="comma-separated presets or arms of the recipe (default grpo,ppo)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per preset (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--label", default="", help="free text stored with the run (e.g. 'before', a commit)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/step_<device>.json)")
    p.add_argument("--ratios", default="", help="pairs a/b of presets whose per-step cost ratio to report "
                   "(e.g. ctrl_critic/ctrl_group,ppo/grpo)")


def build(recipe: str, overrides: list[str], preset: str, run_dir: str):
    """A trainer of ``preset`` (or of one of the recipe's arms) on ``recipe`` with evals and logging off."""
    from rlvr.config import load_config
    from rlvr.trainer import Trainer

    which = f"arm={preset}" if preset in load_config(recipe, overrides).arms else f"algorithm.preset={preset}"
    cfg = load_config(recipe, [*overrides, which, f"trainer.output_dir={run_dir}",
                               "trainer.eval_at_start=false", "trainer.eval_every=0", "data.eval=null",
                               "trainer.progress=false", "trainer.tensorboard=false"])
    return Trainer(cfg)


def timed_step(trainer) -> dict:
    """One training step: wall and process CPU seconds and the trainer's own phase times."""
    t0, c0 = time.perf_counter(), time.process_time()
    m = trainer.train_step()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall_s": wall, "cpu_s": cpu,
            **{k: v for k, v in m.items() if k.startswith("time/") and k not in ("time/step", "time/step_cpu")}}


def measure(recipe: str, overrides: list[str], presets: list[str], steps: int, warmup: int, root: str) -> list[dict]:
    """Build every preset's trainer, ``warmup`` untimed steps each, then ``steps`` timed rounds
    (one step of every preset per round); per preset the per-step rows and their medians."""
    import torch

    trainers = {name: build(recipe, overrides, name, f"{root}/{name}") for name in presets}
    for trainer in trainers.values():
        for _ in range(warmup):
            trainer.train_step()
    rows: dict[str, list[dict]] = {name: [] for name in presets}
    for k in range(steps):
        for name, trainer in trainers.items():
            rows[name].append(timed_step(trainer))
    out = []
    for name in presets:
        keys = sorted({key for r in rows[name] for key in r}, key=lambda x: (x.startswith("time/"), x))
        med = {key: statistics.median(r.get(key, 0.0) for r in rows[name]) for key in keys}
        out.append({"preset": name, "torch_threads": torch.get_num_threads(), "median": med, "steps": rows[name]})
    return out


def ratios(results: list[dict], pairs: list[tuple[str, str]]) -> list[dict]:
    """Per pair (a, b): median CPU s of a over b's, and the median over rounds of a's CPU s over b's
    in the same round (likewise for wall seconds)."""
    by = {r["preset"]: r for r in results}
    out = []
    for a, b in pairs:
        if a not in by or b not in by:
            raise SystemExit(f"--ratios {a}/{b}: both presets must be in --presets")
        ra, rb = by[a], by[b]
        row = {"pair": f"{a}/{b}"}
        for unit in ("cpu_s", "wall_s"):
            row[f"{unit}_of_medians"] = ra["median"][unit] / rb["median"][unit]
            row[f"{unit}_median_of_rounds"] = statistics.median(
                x[unit] / y[unit] for x, y in zip(ra["steps"], rb["steps"]))
        out.append(row)
    return out


def run(args: argparse.Namespace) -> int:
    import tempfile

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    load0 = os.getloadavg()
    results = []
    pairs = [tuple(x.strip().split("/", 1)) for x in args.ratios.split(",") if x.strip()]
    if any(len(p) != 2 for p in pairs):
        raise SystemExit(f"--ratios: expected pairs a/b separated by commas, got {args.ratios!r}")
    with tempfile.TemporaryDirectory() as tmp:
        results = measure(args.recipe, list(args.overrides), presets, args.steps, args.warmup, tmp)
    for r in results:
        med = r["median"]
        phases = "  ".join(f"{k[5:]}={v:.2f}" for k, v in med.items() if k.startswith("time/") and v >= 0.01)
        print(f"{r['preset']}: {med['wall_s']:.2f} s/step wall, {med['cpu_s']:.2f} CPU s/step ({phases})", flush=True)
    pair_rows = ratios(results, pairs)
    for row in pair_rows:
        print(f"{row['pair']}: CPU {row['cpu_s_of_medians']:.2f}x (median of rounds {row['cpu_s_median_of_rounds']:.2f}x), "
              f"wall {row['wall_s_of_medians']:.2f}x (median of rounds {row['wall_s_median_of_rounds']:.2f}x)")
    entry = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "label": args.label,
        "recipe": args.recipe, "overrides": list(args.overrides), "device": device,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "loadavg_before": load0, "loadavg_after": os.getloadavg()},
        "results": results, "ratios": pair_rows, "order": "round-robin",
    }
    out = Path(args.out or f"benchmarks/results/step_{device}.json")
    write_result(out, entry)
    print(f"wrote {out}")
    return 0
