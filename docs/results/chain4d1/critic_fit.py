"""Critic-only fits on chain4d1 (the policy held fixed at the base model), two learning rates:
prints the table of docs/results/chain4d1/README.md and draws critic_fit.png from the committed
records (critic_fit_runs.tar.gz).

    python3 docs/results/chain4d1/critic_fit.py
"""
import io
import json
import statistics as S
import tarfile
from pathlib import Path

here = Path(__file__).resolve().parent
runs = {}
with tarfile.open(here / "critic_fit_runs.tar.gz") as tar:
    for m in tar.getmembers():
        if m.name.endswith("/metrics.jsonl"):
            name = m.name.split("/")[1]
            rows = [json.loads(x) for x in io.TextIOWrapper(tar.extractfile(m), encoding="utf-8") if x.strip()]
            runs[name] = rows
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

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
for name in sorted(runs, reverse=True):
    rows = runs[name]
    steps = [r["step"] for r in rows]
    a.plot(steps, [r["value/explained_variance"] for r in rows], marker=".", label=LABEL.get(name, name))
    b.plot(steps, [r["value/mean"] for r in rows], marker=".", label=f"value mean: {LABEL.get(name, name)}")
b.plot(steps, [r["reward/mean"] for r in runs[sorted(runs)[0]]], color="k", lw=1, ls="--", label="batch score (same samples)")
a.axhline(0, color="grey", lw=0.8)
a.set(xlabel="step (64 new samples each; measured before the critic learns from them)",
      ylabel="explained variance of the return", title="What the critic predicts per token")
b.set(xlabel="step", ylabel="mean over the batch's tokens", title="Value mean against the batch's mean score")
a.legend(fontsize=8)
b.legend(fontsize=8)
for ax in (a, b):
    ax.grid(alpha=0.3)
fig.suptitle("chain4d1, critic trained alone (policy fixed at the base model, seed 0)")
fig.tight_layout()
fig.savefig(here / "critic_fit.png", dpi=110)
print(f"wrote {here / 'critic_fit.png'}")
