"""Plots and a Markdown/HTML summary of one run or a comparison: :func:`make_report` (``rlvr report``).

RUN_DIR is either a single run directory written by ``rlvr train`` (``config.yaml``,
``metrics.jsonl``, ``eval.jsonl``, ``summary.json``) or a comparison directory written by
``rlvr compare`` (``<preset>/seed<k>/`` run directories plus ``compare.json``).

Runs are grouped by preset. Every curve is the mean over seeds with the band of their range
(min to max), drawn against generated samples and against wall-clock seconds, with each seed as a
thin line. Seeds are put on a common x grid by linear interpolation; the mean is drawn only where
every seed has data (so a seed that ran longer cannot make the mean jump). Metrics a run does not
log (e.g. the value loss of a critic-free preset) are skipped. The untrained base model's eval
(``base/summary.json`` of a comparison) is drawn as a dashed line and is every run's eval at x = 0.

Final accuracies (greedy pass@1, sampled pass@k) come from each run's per-item results
(``eval_items.jsonl``) with t intervals over seeds (items entering through each seed's score), and paired
differences between presets and against the base model (:mod:`evals.stats`).
"""
from __future__ import annotations

import base64
import html
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evals.passk import mean_ci95, t_quantile_975
from rlvr.errors import DataError, RlvrError

RUN_FILES = ("metrics.jsonl", "summary.json", "eval.jsonl")
SKIP_DIRS = {"checkpoints", "tb", "report", "__pycache__"}


@dataclass
class Run:
    """One training run loaded from its directory."""

    path: Path
    preset: str
    seed: int | None
    config: dict = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)  # one row per step
    evals: list[dict] = field(default_factory=list)  # one row per periodic eval
    summary: dict = field(default_factory=dict)  # empty when the run did not finish
    items: dict = field(default_factory=dict)  # item id -> per-item final metrics (eval_items.jsonl)


@dataclass
class Panel:
    """One figure: a row of axes per metric key; columns are x = samples and x = seconds."""

    name: str
    title: str
    keys: tuple[str, ...]
    source: str = "metrics"  # "metrics" (metrics.jsonl) or "evals" (eval.jsonl)


PANELS = (
    Panel("reward", "Reward (mean over samples)", ("reward/mean",)),
    Panel("accuracy", "Training accuracy", ("accuracy",)),
    Panel("eval_accuracy", "Eval pass@1", ("eval/pass@1",), source="evals"),
    Panel("kl", "KL divergence", ("kl/ref", "kl/old")),
    Panel("entropy", "Policy entropy (nats/token)", ("entropy",)),
    Panel("response_length", "Response length (tokens)", ("response_length/mean", "truncation_rate")),
    Panel("clip", "Clip table (fraction of tokens)",
          ("clip/pos_high", "clip/pos_low", "clip/neg_high", "clip/neg_low", "clip/inside")),
    Panel("gradvar", "Relative gradient variance by baseline",
          ("gradvar/none", "gradvar/group", "gradvar/critic")),
    Panel("explained_variance", "Critic: explained variance, and bias of the prompt's value V(s_0) - G_0",
          ("value/explained_variance", "value/bias")),
    Panel("losses", "Losses", ("loss/policy", "loss/value")),
    Panel("signal", "Groups with zero reward spread", ("zero_std_groups",)),
)
Y_LABELS = {
    "reward/mean": "mean reward", "accuracy": "training accuracy", "eval/pass@1": "held-out greedy pass@1",
    "kl/ref": "KL(policy || reference)", "kl/old": "KL(old || new)", "entropy": "entropy (nats/token)",
    "response_length/mean": "response tokens", "truncation_rate": "fraction truncated",
    "value/explained_variance": "explained variance", "value/bias": "mean V(s_0) - G_0", "loss/policy": "policy loss", "loss/value": "value loss",
    "zero_std_groups": "fraction of groups", "gradvar/none": "relative variance", "gradvar/group": "relative variance",
    "gradvar/critic": "relative variance",
}
# x = training wall-clock (train_s: generation, scoring and updates; evals and diagnostics excluded)
X_AXES = (("samples", "generated samples"), ("train_s", "training wall-clock seconds"),
          ("train_cpu_s", "training CPU seconds (all threads)"))
X_SHORT = {"samples": "samples", "train_s": "wall-clock", "train_cpu_s": "CPU time"}


# ----------------------------------------------------------------------------- loading
def read_jsonl(path: Path, notes: list[str]) -> list[dict]:
    """Rows of a JSONL file. A broken *last* line (run killed mid-write) is dropped with a warning;
    a broken line elsewhere raises ``DataError`` naming ``file:line``."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    rows: list[dict] = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            if i == len(lines):
                msg = f"{path}:{i}: truncated last line ignored (run killed mid-write?)"
                warnings.warn(msg, stacklevel=2)
                notes.append(msg)
                break
            raise DataError(f"{path}:{i}: invalid JSON line ({e})") from None
        rows.append(row)
    return rows


MANIFEST_CHARS = 8000


def _manifest_text(compare: dict) -> str:
    """The study manifest as a report shows it: without the settings tables' data (shown above it)
    and, when it lists every call that built the study (``invocations``), without the top-level
    copy of the last call's command; lists of plain values on one line; cut (and said so) past
    :data:`MANIFEST_CHARS` characters."""
    drop = {"differences", "inert"} | ({"command"} if compare.get("invocations") else set())
    text = json.dumps({k: v for k, v in compare.items() if k not in drop}, indent=2, default=str)
    scalar = r'"(?:[^"\\\n]|\\.)*"|-?[\d.eE+-]+|true|false|null'
    text = re.sub(rf"\[\s*((?:(?:{scalar})\s*,\s*)*(?:{scalar}))\s*\]",
                  lambda m: "[" + ", ".join(re.findall(scalar, m.group(1))) + "]", text)
    if len(text) > MANIFEST_CHARS:
        text = text[:MANIFEST_CHARS] + "\n... (cut here; the study's compare.json holds the rest)"
    return text


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise DataError(f"{path}: invalid JSON ({e})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    return data


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise DataError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    return data if isinstance(data, dict) else {}


def _preset_of(path: Path, config: dict, summary: dict, in_compare: bool) -> str:
    """The run's label: its arm (a named variant of a preset, the recipe's ``arms``), else its preset."""
    for arm in (summary.get("arm"), config.get("arm")):
        if isinstance(arm, str) and arm:
            return arm
    if summary.get("preset"):
        return str(summary["preset"])
    for section in (config, config.get("algorithm") or {}):
        if isinstance(section, dict) and isinstance(section.get("preset"), str):
            return section["preset"]
    return path.parent.name if in_compare else path.name


def _seed_of(path: Path, config: dict, summary: dict) -> int | None:
    trainer = config.get("trainer") if isinstance(config.get("trainer"), dict) else {}
    for v in (summary.get("seed"), trainer.get("seed"), config.get("seed")):
        if isinstance(v, int):
            return v
    m = re.search(r"seed[_-]?(\d+)", path.name)
    return int(m.group(1)) if m else None


def load_run(path: Path, notes: list[str], in_compare: bool = False) -> Run:
    """Load the files of one run directory (each of them optional but at least one present)."""
    config = _read_yaml(path / "config.yaml") if (path / "config.yaml").is_file() else {}
    summary = _read_json(path / "summary.json") if (path / "summary.json").is_file() else {}
    metrics = read_jsonl(path / "metrics.jsonl", notes) if (path / "metrics.jsonl").is_file() else []
    evals = read_jsonl(path / "eval.jsonl", notes) if (path / "eval.jsonl").is_file() else []
    if not summary:
        notes.append(f"{path}: no summary.json (run unfinished?); final numbers come from the last logged rows")
    items = load_items(path / "eval_items.jsonl", notes)
    return Run(path, _preset_of(path, config, summary, in_compare), _seed_of(path, config, summary),
               config, metrics, evals, summary, items)


ITEM_METRICS = ("greedy/pass@1",) + tuple(f"sampled/pass@{k}" for k in range(1, 65))


def load_items(path: Path, notes: list[str]) -> dict[str, dict[str, float]]:
    """Per-item final metrics ``{id: {"greedy/pass@1": 1.0, "sampled/pass@4": 0.8, ...}}``."""
    if not path.is_file():
        return {}
    out = {}
    for row in read_jsonl(path, notes):
        m = {k: float(row[k]) for k in ITEM_METRICS if isinstance(row.get(k), (int, float))}
        if "greedy/pass@1" not in m and isinstance(row.get("pass@1"), (int, float)) and "greedy" not in row:
            m["greedy/pass@1"] = float(row["pass@1"])  # a greedy-only eval
        out[str(row.get("id"))] = m
    return out


def _is_run_dir(d: Path) -> bool:
    return any((d / f).is_file() for f in RUN_FILES)


def _is_base_eval(d: Path) -> bool:
    """``rlvr compare`` writes the untrained model's eval to ``OUT/base/summary.json`` (no metrics)."""
    return d.name == "base" and (d / "summary.json").is_file() and not (d / "metrics.jsonl").is_file()


def find_runs(root: Path, notes: list[str]) -> tuple[list[Run], dict, dict]:
    """Runs under ``root`` (itself a run, or ``<preset>/seed<k>/`` below it), compare.json, and the
    base-model eval summary (empty when absent)."""
    if not root.is_dir():
        raise RlvrError(f"{root}: no such run directory")
    if _is_run_dir(root):
        return [load_run(root, notes)], {}, {}
    compare = _read_json(root / "compare.json") if (root / "compare.json").is_file() else {}
    # manifests of earlier calls set aside before a later call into the same directory (an older
    # rlvr compare rewrote compare.json with its own call alone): folded in, oldest name first
    from evals.compare import combine_manifests

    for older in sorted(root.glob("compare_*.json"), reverse=True):
        compare = combine_manifests(_read_json(older), compare)
    base = _read_json(root / "base" / "summary.json") if _is_base_eval(root / "base") else compare.get("base") or {}
    found: list[Path] = []
    frontier = [root]
    for _ in range(3):  # <preset>/seed<k>/ is depth 2; allow one more level
        nxt = []
        for d in frontier:
            for sub in sorted(p for p in d.iterdir() if p.is_dir() and p.name not in SKIP_DIRS):
                if not _is_base_eval(sub):
                    (found if _is_run_dir(sub) else nxt).append(sub)
        frontier = nxt
    if not found:
        raise RlvrError(f"{root}: no run found (expected metrics.jsonl/summary.json here "
                        "or in <preset>/seed<k>/ subdirectories)")
    base = dict(base) if isinstance(base, dict) else {}
    if base:
        base["_items"] = load_items(root / "base" / "eval_items.jsonl", notes)
    return [load_run(p, notes, in_compare=True) for p in found], compare, base


def group_by_preset(runs: list[Run], compare: dict) -> dict[str, list[Run]]:
    """Runs per preset, presets in compare.json order when given, else in discovery order."""
    groups: dict[str, list[Run]] = {}
    order = compare.get("presets") or []
    for name in order if isinstance(order, (list, dict)) else []:
        if isinstance(name, str):
            groups[name] = []
    for run in runs:
        groups.setdefault(run.preset, []).append(run)
    return {k: sorted(v, key=lambda r: (r.seed is None, r.seed or 0, str(r.path))) for k, v in groups.items() if v}


# ----------------------------------------------------------------------------- series
def _num(v) -> float:
    """A float for numeric values (bools excluded), NaN otherwise."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return math.nan


def series(rows: list[dict], x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray]:
    """(x [M], y [M]) of the rows where both are finite, sorted by x. Runs logged before
    ``train_s`` existed fall back to ``elapsed_s``."""
    if x_key == "train_s" and rows and not any("train_s" in r for r in rows):
        x_key = "elapsed_s"
    pts = [(_num(r.get(x_key)), _num(r.get(y_key))) for r in rows]
    pts = sorted((x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y))
    if not pts:
        return np.zeros(0), np.zeros(0)
    xy = np.asarray(pts, dtype=np.float64)
    return xy[:, 0], xy[:, 1]


def _shared_grid(curves: list[tuple[np.ndarray, np.ndarray]], grid_points: int) -> np.ndarray:
    """The x values of the curves when they all share them, else an even grid over their union
    plus every curve's own points."""
    if all(len(x) == len(curves[0][0]) and np.array_equal(x, curves[0][0]) for x, _ in curves):
        return curves[0][0]
    lo, hi = min(x[0] for x, _ in curves), max(x[-1] for x, _ in curves)
    return np.unique(np.concatenate([np.linspace(lo, hi, grid_points)] + [x for x, _ in curves]))


def seed_curves(curves: list[tuple[np.ndarray, np.ndarray]], grid_points: int = 200, hold_last: bool = True):
    """Mean over seeds of several (x, y) curves on one common grid, with a 95% t band over seeds.

    Each seed is interpolated linearly inside its own x range; past its last point it keeps its
    last value when ``hold_last`` (a finished run's accuracy does not change after it finished, so
    the mean line reaches the final mean instead of stopping where the fastest seed stopped), and it
    is missing before its first point. Returns ``grid [G], mean [G], lo [G], hi [G]`` (the band is
    NaN where fewer than 2 seeds have a value).
    """
    curves = [(x, y) for x, y in curves if len(x)]
    if not curves:
        return (np.zeros(0),) * 4
    grid = _shared_grid(curves, grid_points)
    ys = np.full((len(curves), len(grid)), np.nan)  # [S, G]
    for s, (x, y) in enumerate(curves):
        inside = (grid >= x[0]) & (grid <= x[-1])
        ys[s, inside] = np.interp(grid[inside], x, y)
        if hold_last:
            ys[s, grid > x[-1]] = y[-1]
    count = np.sum(np.isfinite(ys), axis=0)
    keep = count > 0
    grid, ys, count = grid[keep], ys[:, keep], count[keep]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # ddof with one seed
        mean = np.nanmean(ys, axis=0)
        std = np.nanstd(ys, axis=0, ddof=1)
    tq = {int(c): t_quantile_975(int(c) - 1) for c in np.unique(count) if c >= 2}
    half = np.array([tq.get(int(c), np.nan) for c in count]) * std / np.sqrt(np.maximum(count, 1))
    return grid, mean, mean - half, mean + half


# ----------------------------------------------------------------------------- plots
def _rows(run: Run, source: str) -> list[dict]:
    return run.evals if source == "evals" else run.metrics


def panel_keys(groups: dict[str, list[Run]], panel: Panel) -> list[str]:
    """The keys of ``panel`` that at least one run logs with a finite value."""
    return [k for k in panel.keys
            if any(len(series(_rows(r, panel.source), "samples", k)[0]) or
                   len(series(_rows(r, panel.source), "elapsed_s", k)[0])
                   for runs in groups.values() for r in runs)]


def plot_panel(groups: dict[str, list[Run]], panel: Panel, out_dir: Path,
               hlines: dict[str, float] | None = None) -> Path | None:
    """Render ``<out_dir>/<panel.name>.png``: rows = metric keys, columns = x in samples / seconds.

    ``hlines`` maps a key to a reference value drawn dashed (the base model's eval accuracy).
    Returns None (and writes nothing) when no run logs any key of the panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = panel_keys(groups, panel)
    if not keys:
        return None
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    x_axes = [(k, lab) for k, lab in X_AXES if k != "train_cpu_s" or any(
        len(series(_rows(r, panel.source), k, keys[0])[0]) for rs in groups.values() for r in rs)]
    fig, axes = plt.subplots(len(keys), len(x_axes), figsize=(5.5 * len(x_axes), 2.9 * len(keys) + 0.6),
                             squeeze=False, layout="constrained")
    for row, key in enumerate(keys):
        for col, (x_key, x_label) in enumerate(x_axes):
            ax = axes[row][col]
            base_y = _num((hlines or {}).get(key))
            for g, (preset, runs) in enumerate(groups.items()):
                curves = [series(_rows(r, panel.source), x_key, key) for r in runs]
                if panel.source == "evals" and math.isfinite(base_y):  # the base model is every run's x = 0
                    curves = [(np.r_[0.0, x], np.r_[base_y, y]) if len(x) and x[0] > 0 else (x, y) for x, y in curves]
                # accuracy-like curves hold their last value after a run ends; per-step metrics do not
                grid, mean, lo, hi = seed_curves(curves, hold_last=panel.source == "evals")
                if not len(grid):
                    continue
                c = colors[g % len(colors)]
                for x, y in curves:
                    if len(curves) > 1 and len(x):
                        ax.plot(x, y, color=c, lw=0.6, alpha=0.35)
                marker = "o" if len(grid) <= 25 else None
                ax.plot(grid, mean, color=c, marker=marker, markersize=3, lw=1.5, label=f"{preset} (n={len(runs)})")
                if len(curves) > 1:
                    ax.fill_between(grid, lo, hi, color=c, alpha=0.15, lw=0)
            if hlines and math.isfinite(_num(hlines.get(key))):
                ax.axhline(hlines[key], color="0.4", ls="--", lw=1.2, label="base model")
            ax.set_title(f"{key} against {X_SHORT.get(x_key, x_key)}", fontsize=10)
            ax.set_xlabel(x_label, fontsize=9)
            ax.set_ylabel(Y_LABELS.get(key, key), fontsize=9)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
    axes[0][0].legend(fontsize=8, loc="best")
    fig.suptitle(f"{panel.title}: mean over seeds, 95% t band over seeds, thin line per seed",
                 fontsize=11)
    path = out_dir / f"{panel.name}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- tables
def _last(rows: list[dict], key: str) -> float:
    for r in reversed(rows):
        v = _num(r.get(key))
        if math.isfinite(v):
            return v
    return math.nan


def run_finals(run: Run) -> dict[str, float]:
    """Final numbers of one run: summary.json first, else the last logged rows."""
    s, m = run.summary, run.metrics

    def pick(summary_key: str, fallback: float) -> float:
        v = _num(s.get(summary_key))
        return v if math.isfinite(v) else fallback

    acc = [v for v in (_num(r.get("accuracy")) for r in m) if math.isfinite(v)]
    tail = acc[-max(1, len(acc) // 10):] if acc else []
    mem = [v for v in (_num(r.get("memory/peak_gb")) for r in m) if math.isfinite(v)]
    return {
        "final_eval": pick("final_eval/pass@1", _last(run.evals, "eval/pass@1")),
        "train_acc": sum(tail) / len(tail) if tail else math.nan,  # mean over the last 10% of steps
        "elapsed_s": pick("elapsed_s", _last(m, "elapsed_s")),
        "train_s": _last(m, "train_s"),
        "peak_memory_gb": pick("peak_memory_gb", max(mem) if mem else math.nan),
        "tokens": pick("tokens", _last(m, "tokens")),
        "samples": pick("samples", _last(m, "samples")),
        "steps": _last(m, "step"),
    }


def fmt(mean: float, half: float = math.nan, digits: int = 3) -> str:
    """``"0.412 ± 0.031"``; just the mean when there is no interval; ``"n/a"`` when missing."""
    if not math.isfinite(mean):
        return "n/a"
    if digits == 0:
        text = f"{mean:,.0f}"
        return f"{text} ± {half:,.0f}" if math.isfinite(half) else text
    return f"{mean:.{digits}f} ± {half:.{digits}f}" if math.isfinite(half) else f"{mean:.{digits}f}"


PRESET_COLUMNS = ("preset", "seeds", "final eval pass@1 (mean over seeds)", "train accuracy (last 10%)",
                  "training time (s)", "wall time (s)", "peak memory (GB)", "tokens", "samples")


def _mean_range(values: list[float], digits: int = 3) -> str:
    """``"0.41 (0.38-0.45)"``: mean and [min, max] over seeds; just the value for one seed."""
    v = [x for x in values if math.isfinite(x)]
    if not v:
        return "n/a"
    m = sum(v) / len(v)
    f = (lambda x: f"{x:,.0f}") if digits == 0 else (lambda x: f"{x:.{digits}f}")
    return f(m) if len(v) == 1 else f"{f(m)} ({f(min(v))}-{f(max(v))})"


def preset_table(groups: dict[str, list[Run]]) -> list[list[str]]:
    """One row per preset: mean and (min-max) over seeds; peak memory: max over seeds.

    Only finished runs (a ``summary.json``) are averaged when a preset has any: an unfinished run's
    last logged eval comes from mid-training (and often from a subset of the items), so it is not a
    final score; the seeds column counts the runs left out. A preset with no finished run shows its
    unfinished runs' last logged values, marked as such."""
    rows = []
    for preset, runs in groups.items():
        finished = [r for r in runs if r.summary]
        if finished:
            used = finished
            seeds = str(len(finished)) + (f" (+{len(runs) - len(finished)} unfinished, not counted)"
                                          if len(finished) < len(runs) else "")
        else:
            used, seeds = runs, f"0 finished ({len(runs)} unfinished: last logged values)"
        f = [run_finals(r) for r in used]
        col = lambda k: [d[k] for d in f]  # noqa: E731
        mem = [v for v in col("peak_memory_gb") if math.isfinite(v)]
        rows.append([
            preset, seeds, _mean_range(col("final_eval")), _mean_range(col("train_acc")),
            _mean_range(col("train_s"), digits=0), _mean_range(col("elapsed_s"), digits=0), fmt(max(mem) if mem else math.nan, digits=2),
            fmt(mean_ci95(col("tokens"))[0], digits=0), fmt(mean_ci95(col("samples"))[0], digits=0),
        ])
    return rows


CI_TEXT = ("Final accuracies: mean [95% interval], t intervals with the seed as the unit: the between-seed "
           "spread of each run's score, plus the items' own part where the items add to it (two-way crossed "
           "random effects, Satterthwaite degrees of freedom; no resampling, so nothing depends on a random "
           "seed). Every run and the base model are scored on the same items; differences are paired (seed k "
           "of one preset with seed k of the other, item by item). Verdicts: 'better'/'worse' when the 95% "
           "interval excludes 0, 'equivalent within +/-m' when the 90% interval lies inside the margin m "
           "declared before the runs (two one-sided tests), otherwise 'inconclusive' with the range the data "
           "allow. Curves: mean over seeds, band = 95% t interval over seeds at each point.")


def item_matrix(runs: list[Run], key: str, ids: list[str]) -> tuple[np.ndarray, list]:
    """``[S, I]`` matrix of per-item ``key`` for runs that have it on all of ``ids`` (rows by seed)."""
    rows, seeds = [], []
    for r in sorted(runs, key=lambda r: (r.seed is None, r.seed or 0)):
        if r.items and all(key in r.items.get(i, {}) for i in ids):
            rows.append([r.items[i][key] for i in ids])
            seeds.append(r.seed)
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(ids)), seeds


def _estimate(e, margin: float | None = None, difference: bool = False) -> dict:
    from evals.stats import verdict

    d = {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in e.to_dict().items()}
    if difference:
        d["verdict"] = verdict(e, margin)
    return d


def _paired(groups: dict[str, list[Run]], preset: str, other: str, k: str, ids: list[str],
            margin: float | None = None) -> dict | None:
    """Paired difference ``preset - other`` of metric ``k`` over the seeds both have."""
    from evals.stats import paired_difference

    C, seeds = item_matrix(groups[preset], k, ids)
    R, rseeds = item_matrix(groups[other], k, ids)
    common = [s for s in seeds if s in rseeds]
    if not (len(C) and len(R) and common):
        return None
    e = paired_difference(C[[seeds.index(s) for s in common]], R[[rseeds.index(s) for s in common]])
    return _estimate(e, margin, difference=True)


def final_stats(groups: dict[str, list[Run]], base: dict, reference: str | None, steps: bool = False,
                margin: float | None = None) -> dict:
    """Estimates per preset and paired differences (vs ``reference`` and vs the base model) for
    every per-item metric all runs share (:mod:`evals.stats`). ``{"metrics": [...], "presets": {name:
    {metric: estimate}}, "vs_reference": {...}, "vs_base": {...}, "items": I, "margin": m}``; an
    estimate is ``{"mean", "lo", "hi", "se", "df", "seeds", "items", "lo90", "hi90"}`` and a difference
    also has its ``verdict``. ``steps``: also each preset against the one before it in ``groups``'
    order (``"vs_previous"``: a ladder's rungs)."""
    from evals.stats import mean_interval, paired_difference

    runs = [r for rs in groups.values() for r in rs if r.items]
    if not runs:
        return {}
    ids = sorted(set.intersection(*(set(r.items) for r in runs)))
    base_items = base.get("_items") or {}
    metrics = [k for k in ITEM_METRICS if ids and all(k in r.items[i] for r in runs for i in ids)]
    out: dict = {"metrics": metrics, "items": len(ids), "reference": reference, "margin": margin, "presets": {},
                 "vs_reference": {}, "vs_base": {}, "seeds": {}}
    for preset, rs in groups.items():
        out["presets"][preset], out["vs_reference"][preset], out["vs_base"][preset] = {}, {}, {}
        for k in metrics:
            C, seeds = item_matrix(rs, k, ids)
            if not len(C):
                continue
            out["seeds"][preset] = seeds
            out["presets"][preset][k] = _estimate(mean_interval(C))
            if base_items and all(k in base_items.get(i, {}) for i in ids):
                e = paired_difference(C, [[base_items[i][k] for i in ids]])
                out["vs_base"][preset][k] = _estimate(e, margin, difference=True)
            if reference and reference in groups and preset != reference:
                d = _paired(groups, preset, reference, k, ids, margin)
                if d is not None:
                    out["vs_reference"][preset][k] = d
    if steps:
        order = list(groups)
        out["vs_previous"] = {}
        for prev, preset in zip(order, order[1:]):
            out["vs_previous"][preset] = {"previous": prev, **{
                k: d for k in metrics if (d := _paired(groups, preset, prev, k, ids, margin)) is not None}}
    if base_items and all(k in base_items.get(i, {}) for k in metrics for i in ids):
        out["base"] = {k: {"mean": float(np.mean([base_items[i][k] for i in ids])), "seeds": 1, "items": len(ids)}
                       for k in metrics}
    return out


def _num3(v, signed: bool = False) -> str:
    return "n/a" if v is None or not math.isfinite(v) else (f"{v:+.3f}" if signed else f"{v:.3f}")


def _ci(v) -> str:
    if not v:
        return "n/a"
    if v.get("lo") is None:
        return _num3(v.get("mean")) + ("" if v.get("seeds", 1) == 1 else " (no interval)")
    return f"{_num3(v['mean'])} [{_num3(v['lo'])}, {_num3(v['hi'])}]"


def _diff(v) -> str:
    if not v:
        return "n/a"
    if v.get("lo") is None:
        return f"{_num3(v.get('mean'), True)} ({v.get('verdict', 'no interval')})"
    return f"{_num3(v['mean'], True)} [{_num3(v['lo'], True)}, {_num3(v['hi'], True)}] {v.get('verdict', '')}".rstrip()


def stats_tables(stats: dict) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    """(columns, rows) of the final-accuracy table and of the paired-difference table."""
    if not stats or "metrics" not in stats:
        return [], [], [], []
    metrics = stats["metrics"]
    cols = ["preset", "seeds"] + metrics
    rows = [[p, str(len(stats["seeds"].get(p, [])))] + [_ci(v.get(k)) for k in metrics]
            for p, v in stats["presets"].items()]
    if "base" in stats:
        rows.append(["base model", "-"] + [_ci(stats["base"].get(k)) for k in metrics])
    dcols = ["difference"] + metrics
    drows = []
    ref = stats.get("reference")
    for p in stats["presets"]:
        if stats["vs_reference"].get(p):
            drows.append([f"{p} - {ref}"] + [_diff(stats["vs_reference"][p].get(k)) for k in metrics])
    for p, v in (stats.get("vs_previous") or {}).items():
        if v.get("previous") != ref:  # (against the reference it is a row above already)
            drows.append([f"{p} - {v['previous']} (one rung)"] + [_diff(v.get(k)) for k in metrics])
    for p in stats["presets"]:
        if stats["vs_base"].get(p):
            drows.append([f"{p} - base model"] + [_diff(stats["vs_base"][p].get(k)) for k in metrics])
    return cols, rows, dcols, drows


def step_rows(compare: dict, order: list[str]) -> list[list[str]]:
    """What changes from each preset to the next in ``order`` (a ladder): the settings of
    compare.json's ``differences`` whose value differs between the two (marked when it cannot
    change these runs: ``inert``)."""
    diff = compare.get("differences") if isinstance(compare.get("differences"), dict) else {}
    inert = compare.get("inert") if isinstance(compare.get("inert"), dict) else {}
    rows = []
    for prev, cur in zip(order, order[1:]):
        changed = [f"{k}: {json.dumps(per.get(prev), default=str)} -> {json.dumps(per.get(cur), default=str)}"
                   + (" (does not change what is trained, see below)" if k in inert else "")
                   for k, per in diff.items() if isinstance(per, dict) and per.get(prev) != per.get(cur)]
        rows.append([f"{prev} -> {cur}", "; ".join(changed) or "(nothing recorded)"])
    return rows


def run_differences(groups: dict[str, list[Run]], notes: list[str]) -> tuple[dict[str, dict[str, object]], dict[str, str]] | None:
    """The settings that differ between the presets, read from what the runs recorded (each run's
    ``config.yaml``, the preset's fields resolved): right however the runs were started, in one
    compare or several; with ``{setting: why}`` for those of them that cannot change what these
    runs train (:func:`evals.compare.inert_settings`). None when a run has no readable config
    (then compare.json's list is used). Runs of one preset that differ in anything but seed and
    output directory are noted."""
    from evals.compare import differing, inert_settings, resolved_settings
    from rlvr.config import from_dict

    per: dict[str, dict[str, object]] = {}
    for preset, rs in groups.items():
        settings = []
        for r in rs:
            try:
                cfg = from_dict(r.config) if r.config else None
            except Exception:  # noqa: BLE001 - an older or foreign config: fall back to compare.json
                cfg = None
            if cfg is None:
                return None
            settings.append(resolved_settings(cfg, cfg.algorithm.preset))
        within = differing({f"#{i}": x for i, x in enumerate(settings)})
        if within:
            notes.append(f"{preset}: its runs differ in {', '.join(sorted(within))} (the first run's values are listed)")
        per[preset] = settings[0]
    if len(per) < 2:
        return {}, {}
    diff = differing(per)
    return diff, {k: why for k, why in inert_settings(per).items() if k in diff}


def shared_settings(groups: dict[str, list[Run]], differences: dict) -> list[list[str]]:
    """The settings every run of this report recorded with the same value (``[setting, value]`` rows
    from the runs' own ``config.yaml``, so a field added to the code later does not appear): what
    the study held fixed. Empty when a run has no readable config."""
    from rlvr.config import flat_settings

    flats = [flat_settings(r.config) for rs in groups.values() for r in rs]
    if not flats or any(not f for f in flats):
        return []
    skip = {"trainer.seed", "trainer.output_dir", "algorithm.preset", "arm", *differences}  # arm: a label
    if all(f.get("arms") == {} for f in flats):  # a study without arms
        skip.add("arms")
    same = lambda k: all(k in f and json.dumps(f[k], default=str) == json.dumps(flats[0][k], default=str)  # noqa: E731
                         for f in flats)
    return [[k, json.dumps(v, default=str)] for k, v in flats[0].items() if k not in skip and same(k)]


def code_notes(groups: dict[str, list[Run]]) -> tuple[dict[str, str], list[str]]:
    """(``{run path: code ids}``, notes): the code each run was made with (provenance.json) and a
    note when the runs of the report were not all made with the same code."""
    from rlvr.provenance import run_code_ids

    per = {str(r.path): "+".join(run_code_ids(r.path)) or "not recorded" for rs in groups.values() for r in rs}
    distinct = sorted(set(per.values()))
    notes = []
    if len(distinct) > 1:
        notes.append("runs made with different code: " + "; ".join(
            f"{c} ({sum(v == c for v in per.values())} runs)" for c in distinct))
    return per, notes


def differences_rows(compare: dict) -> list[list[str]]:
    """The settings that differ between the compared presets (compare.json ``differences``, or the
    runs' own configs), each with the reason beside it when it cannot change what these runs train
    (``inert``: :func:`evals.compare.inert_settings`)."""
    diff = compare.get("differences") if isinstance(compare.get("differences"), dict) else {}
    inert = compare.get("inert") if isinstance(compare.get("inert"), dict) else {}
    return [[k, ", ".join(f"{p}: {json.dumps(v, default=str)}" for p, v in per.items())
             + (f" — {inert[k]}" if k in inert else "")]
            for k, per in diff.items() if isinstance(per, dict)]


RUN_COLUMNS = ("preset", "seed", "run", "steps", "final eval pass@1", "train accuracy (last 10%)",
               "wall time (s)", "peak memory (GB)", "tokens", "samples", "finished", "code")


def run_table(groups: dict[str, list[Run]], root: Path, code: dict[str, str] | None = None) -> list[list[str]]:
    """One row per run with its own final numbers and the code it was made with."""
    rows = []
    for preset, runs in groups.items():
        for r in runs:
            f = run_finals(r)
            rel = str(r.path.relative_to(root)) if r.path != root else "."
            rows.append([preset, "n/a" if r.seed is None else str(r.seed), rel, fmt(f["steps"], digits=0),
                         fmt(f["final_eval"]), fmt(f["train_acc"]), fmt(f["elapsed_s"], digits=0),
                         fmt(f["peak_memory_gb"], digits=2), fmt(f["tokens"], digits=0),
                         fmt(f["samples"], digits=0), "yes" if r.summary else "no",
                         (code or {}).get(str(r.path), "not recorded")])
    return rows


# ----------------------------------------------------------------------------- rendering
def _md_table(columns, rows) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(columns, rows, table_id: str) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>\n" for r in rows)
    return f'<table id="{table_id}">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody></table>'


def base_line(base: dict) -> str:
    """One sentence on the untrained model's eval, or "" when there is none."""
    acc = _num(base.get("final_eval/pass@1"))
    if not math.isfinite(acc):
        return ""
    n = base.get("eval/n")
    return f"Base model before training: eval pass@1 = {acc:.3f}" + (f" (n={n})." if n else ".")


def render_markdown(title: str, presets, runs, plots: list[tuple[Panel, Path]], notes, compare: dict,
                    base: dict, stats: dict | None = None) -> str:
    parts = [f"# {title}", ""]
    cols, rows, dcols, drows = stats_tables(stats or {})
    if rows:
        parts += [f"## Final accuracy on {stats['items']} held-out items (mean [95% CI])", "",
                  _md_table(cols, rows), ""]
        if drows:
            m = (stats or {}).get("margin")
            parts += [f"## Paired differences (mean [95% CI] and verdict{f'; margin ±{m:g}' if m else ''})", "",
                      _md_table(dcols, drows), ""]
        parts += [CI_TEXT, ""]
    if (stats or {}).get("steps"):
        parts += ["## What each rung changes (in the order given)", "",
                  _md_table(("step", "settings that change"), stats["steps"]), ""]
    diffs = differences_rows(compare)
    if diffs:
        parts += ["## Settings that differ between the compared runs", "",
                  _md_table(("setting", "value per preset"), diffs), ""]
    if (stats or {}).get("shared_settings"):
        parts += ["## Settings shared by every run of this report", "",
                  _md_table(("setting", "value"), stats["shared_settings"]), ""]
    parts += ["## Final numbers per preset (mean and min-max over seeds)", "",
              _md_table(PRESET_COLUMNS, presets), ""]
    if base_line(base):
        parts += [base_line(base), ""]
    parts += [
             "## Runs", "", _md_table(RUN_COLUMNS, runs), ""]
    if compare:
        parts += ["## Comparison settings (compare.json)", "", "```json", _manifest_text(compare), "```", ""]
    parts += ["## Curves", ""]
    for panel, path in plots:
        parts += [f"### {panel.title}", "", f"![{panel.name}]({path.name})", ""]
    if notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(parts)


HTML_STYLE = """body{font-family:sans-serif;max-width:1150px;margin:1.5em auto;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #bbb;padding:4px 8px;
text-align:right}th{background:#eef}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #ddd}pre{background:#f6f6f6;padding:8px;overflow:auto}"""


def render_html(title: str, presets, runs, plots: list[tuple[Panel, Path]], notes, compare: dict,
                base: dict, stats: dict | None = None) -> str:
    """A self-contained page: tables plus the plots embedded as base64 PNG."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{HTML_STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    cols, rows, dcols, drows = stats_tables(stats or {})
    if rows:
        parts += [f"<h2>Final accuracy on {stats['items']} held-out items (mean [95% CI])</h2>",
                  _html_table(cols, rows, "final")]
        if drows:
            m = (stats or {}).get("margin")
            parts += [f"<h2>Paired differences (mean [95% CI] and verdict{html.escape(f'; margin ±{m:g}') if m else ''})</h2>",
                      _html_table(dcols, drows, "differences")]
        parts.append(f"<p id='ci'>{html.escape(CI_TEXT)}</p>")
    if (stats or {}).get("steps"):
        parts += ["<h2>What each rung changes (in the order given)</h2>",
                  _html_table(("step", "settings that change"), stats["steps"], "steps")]
    diffs = differences_rows(compare)
    if diffs:
        parts += ["<h2>Settings that differ between the compared runs</h2>",
                  _html_table(("setting", "value per preset"), diffs, "settings")]
    if (stats or {}).get("shared_settings"):
        parts += ["<h2>Settings shared by every run of this report</h2>",
                  _html_table(("setting", "value"), stats["shared_settings"], "shared")]
    parts += ["<h2>Final numbers per preset (mean and min-max over seeds)</h2>",
              _html_table(PRESET_COLUMNS, presets, "presets")]
    if base_line(base):
        parts.append(f'<p id="base">{html.escape(base_line(base))}</p>')
    parts += ["<h2>Runs</h2>", _html_table(RUN_COLUMNS, runs, "runs")]
    if compare:
        parts += ["<h2>Comparison settings (compare.json)</h2>", f"<pre>{html.escape(_manifest_text(compare))}</pre>"]
    parts.append("<h2>Curves</h2>")
    for panel, path in plots:
        b64 = base64.b64encode(path.read_bytes()).decode("ascii")
        parts += [f"<h3>{html.escape(panel.title)}</h3>",
                  f'<img id="plot-{panel.name}" alt="{panel.name}" src="data:image/png;base64,{b64}">']
    if notes:
        parts += ["<h2>Notes</h2><ul>"] + [f"<li>{html.escape(n)}</li>" for n in notes] + ["</ul>"]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def make_report(run_dir: str | Path, out_dir: str | Path | None = None, panels: tuple[Panel, ...] = PANELS,
                presets: list[str] | None = None, reference: str | None = None, title: str | None = None,
                steps: bool = False, margin: float | None = None) -> dict:
    """Load ``run_dir``, write the PNG plots of ``panels``, ``report.md``, ``report.html`` and
    ``summary.json`` (per run: preset, seed, final metrics; per preset: estimates, paired
    differences) into ``out_dir`` (default ``run_dir/report``). ``presets`` keeps only those (in that
    order); ``reference`` is the preset the others are compared with (default: the first);
    ``steps``: a ladder, each preset also compared with the one before it, and what changes listed."""
    root = Path(run_dir).expanduser().resolve()
    notes: list[str] = []
    runs, compare, base = find_runs(root, notes)
    groups = group_by_preset(runs, compare)
    if presets:
        missing = [p for p in presets if p not in groups]
        if missing:
            raise RlvrError(f"--presets: no runs of {', '.join(missing)} under {root}")
        left_out = [str(r.path) for p, rs in groups.items() if p not in presets for r in rs]
        notes = [n for n in notes if not any(n.startswith(path + ":") for path in left_out)]
        groups = {p: groups[p] for p in presets}
        compare = {**compare, **({"presets": [p for p in compare["presets"] if p in presets]}
                                 if isinstance(compare.get("presets"), list) else {}),
                   **{k: {r: v for r, v in compare[k].items() if r.split("/")[0] in presets}
                      for k in ("runs", "code") if isinstance(compare.get(k), dict)}}
        if isinstance(compare.get("invocations"), list):  # the calls that made these presets' runs
            calls = [c for c in compare["invocations"] if isinstance(c, dict) and set(c.get("presets") or []) & set(presets)]
            compare = {**compare, "invocations": calls}
        if isinstance(compare.get("differences"), dict):
            compare = {**compare, "differences": {
                k: {p: v[p] for p in presets if p in v} for k, v in compare["differences"].items()
                if len({json.dumps(v.get(p), default=str) for p in presets if p in v}) > 1}}
    derived = run_differences(groups, notes)
    if derived is not None:
        compare = {**compare, "differences": derived[0], "inert": derived[1]}
    else:
        notes.append("settings that differ: from compare.json (a run's config.yaml is missing or unreadable)")
    reference = reference or next(iter(groups))
    if reference not in groups:
        raise RlvrError(f"--reference: no runs of {reference} under {root}")
    runs_status = compare.get("runs") if isinstance(compare.get("runs"), dict) else {}
    notes += [f"compare.json: run {k} {v}" for k, v in runs_status.items() if v != "done"]
    out = Path(out_dir).expanduser().resolve() if out_dir else root / "report"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RlvrError(f"{out}: cannot create report directory ({e.strerror})") from None
    plots = []
    for panel in panels:
        path = plot_panel(groups, panel, out, hlines={"eval/pass@1": _num(base.get("final_eval/pass@1"))})
        if path is None:
            notes.append(f"{panel.title}: not logged by any run, no plot")
        else:
            plots.append((panel, path))
    code, cnotes = code_notes(groups)
    notes += cnotes
    table, per_run = preset_table(groups), run_table(groups, root, code)
    if margin is None and isinstance(compare.get("margin"), (int, float)):
        margin = float(compare["margin"])  # declared before the runs (rlvr compare --margin / recipe)
    elif margin is not None and compare.get("margin") not in (None, margin):
        notes.append(f"margin {margin} given at report time; the study declared {compare['margin']} before its runs")
    elif margin is not None and compare.get("margin") is None:
        notes.append(f"margin {margin} given at report time (none was declared before the runs)")
    stats = final_stats(groups, base, reference, steps=steps, margin=margin)
    shared = shared_settings(groups, compare.get("differences") or {})
    if steps:
        stats["steps"] = step_rows(compare, list(groups))
    title = title or f"rlvr report: {root.name}"
    if shared:
        stats["shared_settings"] = shared
    args = (title, table, per_run, plots, notes, compare, base, stats)
    (out / "report.md").write_text(render_markdown(*args), encoding="utf-8")
    (out / "report.html").write_text(render_html(*args), encoding="utf-8")
    summary = {"runs": [{"preset": r.preset, "seed": r.seed, "dir": str(r.path.relative_to(root)) if r.path != root else ".",
                         "finished": bool(r.summary),  # else final_eval is the last logged (mid-training) eval
                         **{k: (v if math.isfinite(v) else None) for k, v in run_finals(r).items()},
                         **{k: v for k, v in r.summary.items() if k.startswith("final_eval/")}}
                        for rs in groups.values() for r in rs],
               "stats": stats, "base": {k: v for k, v in base.items() if k != "_items"},
               "differences": compare.get("differences", {}), "inert_settings": compare.get("inert", {}),
               "intervals": CI_TEXT}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    return {"out_dir": out, "markdown": out / "report.md", "html": out / "report.html",
            "plots": [p for _, p in plots], "presets": table, "notes": notes, "stats": stats,
            "summary": out / "summary.json"}
