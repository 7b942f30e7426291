"""Critic-only fits on add2 (the policy held fixed): prints the table of
docs/results/add2_critic_fit/README.md and draws explained_variance.png from the committed records
(critic_fit_runs.tar.gz).

    python3 docs/results/add2_critic_fit/critic_fit.py [DIR]   # the figure into DIR instead of beside this script
"""
import statistics as S
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here.parent))
from critic_fits import load, plot  # noqa: E402

runs = load(here / "critic_fit_runs.tar.gz")
LABEL = {"addition_reward": "add2: the sum is correct (the studies' reward)",
         "visible_reward": "the completion contains the digit 7 (`visible_reward.py`)"}
print("| reward | steps | explained variance, mean of steps 1-8 / 9-16 / ... | value mean - batch score, mean abs |")
print("| --- | --- | --- | --- |")
for name in sorted(runs):
    rows = runs[name]
    ev = [r["value/explained_variance"] for r in rows]
    blocks = [S.mean(ev[i:i + 8]) for i in range(0, len(ev), 8)]
    gap = S.mean(abs(r["value/mean"] - r["reward/mean"]) for r in rows)
    print(f"| {LABEL.get(name, name)} | {len(rows)} | {' / '.join(f'{b:+.3f}' for b in blocks)} | {gap:.3f} |")

plot(runs, LABEL, (Path(sys.argv[1]) if len(sys.argv) > 1 else here) / "explained_variance.png",
     "add2@5, critic trained alone (policy fixed at add2_algos grpo seed 0 after 16 steps)", shared_score=False)
