"""Shared by the studies' critic-only fit scripts (chain4d1/critic_fit.py, add2_critic_fit/critic_fit.py):
read the fits' committed records and draw the two-panel figure."""
import io
import json
import tarfile
from pathlib import Path


def load(tarball: Path) -> dict[str, list[dict]]:
    """``{run name: metrics rows}`` for every run in a packed records tarball (``STUDY/RUN/metrics.jsonl``)."""
    runs = {}
    with tarfile.open(tarball) as tar:
        for m in tar.getmembers():
            if m.name.endswith("/metrics.jsonl"):
                rows = [json.loads(x) for x in io.TextIOWrapper(tar.extractfile(m), encoding="utf-8") if x.strip()]
                runs[m.name.split("/")[1]] = rows
    return runs


def plot(runs: dict[str, list[dict]], labels: dict[str, str], out: Path, title: str, shared_score: bool) -> None:
    """Explained variance per step (left) and the value mean against the batch's mean score (right).
    ``shared_score``: the runs scored the same samples (one score line), else one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {k: v.replace("`", "") for k, v in labels.items()}  # markdown in the tables, plain in the figure
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
    names = sorted(runs, reverse=True)
    for name in names:
        rows = runs[name]
        steps = [r["step"] for r in rows]
        (line,) = a.plot(steps, [r["value/explained_variance"] for r in rows], marker=".", label=labels.get(name, name))
        b.plot(steps, [r["value/mean"] for r in rows], marker=".", color=line.get_color(),
               label=f"value mean: {labels.get(name, name)}")
        if not shared_score:
            b.plot(steps, [r["reward/mean"] for r in rows], color=line.get_color(), lw=1, ls="--",
                   label=f"batch score: {labels.get(name, name)}")
    if shared_score:
        rows = runs[names[-1]]
        b.plot([r["step"] for r in rows], [r["reward/mean"] for r in rows], color="k", lw=1, ls="--",
               label="batch score (same samples)")
    a.axhline(0, color="grey", lw=0.8)
    a.set(xlabel="step (64 new samples each; measured before the critic learns from them)",
          ylabel="explained variance of the return", title="What the critic predicts per token")
    b.set(xlabel="step", ylabel="mean over the batch", title="Value mean against the batch's mean score")
    a.legend(fontsize=8)
    b.legend(fontsize=7)
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
