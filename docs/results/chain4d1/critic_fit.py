"""Critic-only fits on chain4d1 (the policy held fixed at the base model), two learning rates:
prints the table of docs/results/chain4d1/README.md and draws critic_fit.png from the committed
records (critic_fit_runs.tar.gz).

    python3 docs/results/chain4d1/critic_fit.py [DIR]   # the figure into DIR instead of beside this script
"""
import statistics as S
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here.parent))
from critic_fits import load, plot  # noqa: E402

runs = load(here / "critic_fit_runs.tar.gz")
LABEL = {"lr1e-4_head1e-3": "critic lr 1e-4, head 1e-3 (the studies')",
         "lr1e-5_head1e-4": "critic lr 1e-5, head 1e-4"}
print("| critic / value-head learning rate | explained variance, mean of steps 1-8 / 9-16 | last 4 steps "
      "| value mean, min-max | mean abs(value mean - batch score) |")
print("| --- | --- | --- | --- | --- |")
for name in sorted(runs, reverse=True):
    rows = runs[name]
    ev = [r["value/explained_variance"] for r in rows]
    vm, sc = [r["value/mean"] for r in rows], [r["reward/mean"] for r in rows]
    print(f"| {LABEL.get(name, name)} | {S.mean(ev[:8]):+.3f} / {S.mean(ev[8:]):+.3f} | "
          f"{', '.join(f'{x:+.3f}' for x in ev[-4:])} | {min(vm):.2f}-{max(vm):.2f} | "
          f"{S.mean(abs(a - b) for a, b in zip(vm, sc)):.3f} |")

plot(runs, LABEL, (Path(sys.argv[1]) if len(sys.argv) > 1 else here) / "critic_fit.png", "chain4d1, critic trained alone (policy fixed at the base model, seed 0)",
     shared_score=True)
