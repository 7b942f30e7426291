"""``rlvr report RUN_DIR``: plots and a Markdown/HTML summary of one run or a comparison.

RUN_DIR is either a single run directory written by ``rlvr train`` (``config.yaml``,
``metrics.jsonl``, ``eval.jsonl``, ``summary.json``) or a comparison directory written by
``rlvr compare`` (``<preset>/seed<k>/`` run directories plus ``compare.json``).

Runs are grouped by preset. Every curve is the mean over seeds with a 95% Student-t band
(``evals.passk.mean_ci95``), drawn against generated samples and against wall-clock seconds.
Seeds are put on a common x grid by linear interpolation, each inside its own logged range
(a grid point where only one seed has data shows that seed's value, with no band).
Metrics a run does not log (e.g. the value loss of a critic-free preset) are skipped.
The untrained base model's eval (``base/summary.json`` of a comparison) is drawn as a dashed line.
"""
from __future__ import annotations

import argparse
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
    Panel("explained_variance", "Critic explained variance", ("value/explained_variance",)),
    Panel("losses", "Losses", ("loss/policy", "loss/value")),
    Panel("signal", "Groups with zero reward spread", ("zero_std_groups",)),
)
X_AXES = (("samples", "generated samples"), ("elapsed_s", "wall-clock seconds"))


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
    return Run(path, _preset_of(path, config, summary, in_compare), _seed_of(path, config, summary),
               config, metrics, evals, summary)


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
    return [load_run(p, notes, in_compare=True) for p in found], compare, base if isinstance(base, dict) else {}


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
    """(x [M], y [M]) of the rows where both are finite, sorted by x."""
    pts = [(_num(r.get(x_key)), _num(r.get(y_key))) for r in rows]
    pts = sorted((x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y))
    if not pts:
        return np.zeros(0), np.zeros(0)
    xy = np.asarray(pts, dtype=np.float64)
    return xy[:, 0], xy[:, 1]


def seed_band(curves: list[tuple[np.ndarray, np.ndarray]], grid_points: int = 200):
    """Mean and 95% CI over seeds of several (x, y) curves.

    If every curve has the same x values they are used as is; otherwise each curve is linearly
    interpolated on a shared grid spanning all curves, and is NaN outside its own x range.
    Returns ``grid [G], mean [G], half_width [G], count [G]`` (half_width NaN where count < 2).
    """
    curves = [(x, y) for x, y in curves if len(x)]
    if not curves:
        return (np.zeros(0),) * 4
    if all(len(x) == len(curves[0][0]) and np.array_equal(x, curves[0][0]) for x, _ in curves):
        grid = curves[0][0]
        ys = np.stack([y for _, y in curves])  # [S, G]
    else:
        lo = min(x[0] for x, _ in curves)
        hi = max(x[-1] for x, _ in curves)
        grid = np.unique(np.concatenate([np.linspace(lo, hi, grid_points)] + [x for x, _ in curves]))
        ys = np.full((len(curves), len(grid)), np.nan)
        for s, (x, y) in enumerate(curves):
            inside = (grid >= x[0]) & (grid <= x[-1])
            ys[s, inside] = np.interp(grid[inside], x, y)
    count = np.sum(np.isfinite(ys), axis=0)  # [G]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns / ddof with one seed
        mean = np.nanmean(ys, axis=0)
        std = np.nanstd(ys, axis=0, ddof=1)
    tq = {int(c): t_quantile_975(int(c) - 1) for c in np.unique(count) if c >= 2}
    t = np.array([tq.get(int(c), np.nan) for c in count])
    half = t * std / np.sqrt(np.maximum(count, 1))
    return grid, mean, half, count


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
    fig, axes = plt.subplots(len(keys), len(X_AXES), figsize=(11, 2.9 * len(keys) + 0.6),
                             squeeze=False, layout="constrained")
    for row, key in enumerate(keys):
        for col, (x_key, x_label) in enumerate(X_AXES):
            ax = axes[row][col]
            for g, (preset, runs) in enumerate(groups.items()):
                grid, mean, half, _ = seed_band([series(_rows(r, panel.source), x_key, key) for r in runs])
                if not len(grid):
                    continue
                c = colors[g % len(colors)]
                marker = "o" if len(grid) <= 25 else None
                ax.plot(grid, mean, color=c, marker=marker, markersize=3, lw=1.5, label=f"{preset} (n={len(runs)})")
                if np.any(np.isfinite(half)):
                    ax.fill_between(grid, mean - half, mean + half, color=c, alpha=0.2, lw=0)
            if hlines and math.isfinite(_num(hlines.get(key))):
                ax.axhline(hlines[key], color="0.4", ls="--", lw=1.2, label="base model")
            ax.set_title(key, fontsize=10)
            ax.set_xlabel(x_label, fontsize=9)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
    axes[0][0].legend(fontsize=8, loc="best")
    fig.suptitle(f"{panel.title} - mean and 95% CI over seeds", fontsize=12)
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


PRESET_COLUMNS = ("preset", "seeds", "final eval pass@1", "train accuracy (last 10%)", "wall time (s)",
                  "peak memory (GB)", "tokens", "samples")


def preset_table(groups: dict[str, list[Run]]) -> list[list[str]]:
    """One row per preset: mean ± 95% CI over seeds (peak memory: max over seeds)."""
    rows = []
    for preset, runs in groups.items():
        f = [run_finals(r) for r in runs]
        col = lambda k: [d[k] for d in f]  # noqa: E731
        mem = [v for v in col("peak_memory_gb") if math.isfinite(v)]
        rows.append([
            preset, str(len(runs)),
            fmt(*mean_ci95(col("final_eval"))), fmt(*mean_ci95(col("train_acc"))),
            fmt(*mean_ci95(col("elapsed_s")), digits=0), fmt(max(mem) if mem else math.nan, digits=2),
            fmt(mean_ci95(col("tokens"))[0], digits=0), fmt(mean_ci95(col("samples"))[0], digits=0),
        ])
    return rows


RUN_COLUMNS = ("preset", "seed", "run", "steps", "final eval pass@1", "train accuracy (last 10%)",
               "wall time (s)", "peak memory (GB)", "tokens", "samples", "finished")


def run_table(groups: dict[str, list[Run]], root: Path) -> list[list[str]]:
    """One row per run with its own final numbers."""
    rows = []
    for preset, runs in groups.items():
        for r in runs:
            f = run_finals(r)
            rel = str(r.path.relative_to(root)) if r.path != root else "."
            rows.append([preset, "n/a" if r.seed is None else str(r.seed), rel, fmt(f["steps"], digits=0),
                         fmt(f["final_eval"]), fmt(f["train_acc"]), fmt(f["elapsed_s"], digits=0),
                         fmt(f["peak_memory_gb"], digits=2), fmt(f["tokens"], digits=0),
                         fmt(f["samples"], digits=0), "yes" if r.summary else "no"])
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
                    base: dict) -> str:
    parts = [f"# {title}", "", "Mean ± 95% Student-t confidence interval over seeds.", "",
             "## Final numbers per preset", "", _md_table(PRESET_COLUMNS, presets), ""]
    if base_line(base):
        parts += [base_line(base), ""]
    parts += [
             "## Runs", "", _md_table(RUN_COLUMNS, runs), ""]
    if compare:
        parts += ["## Comparison settings (compare.json)", "", "```json",
                  json.dumps(compare, indent=2, default=str)[:4000], "```", ""]
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
                base: dict) -> str:
    """A self-contained page: tables plus the plots embedded as base64 PNG."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{HTML_STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             "<p>Mean ± 95% Student-t confidence interval over seeds.</p>",
             "<h2>Final numbers per preset</h2>", _html_table(PRESET_COLUMNS, presets, "presets")]
    if base_line(base):
        parts.append(f'<p id="base">{html.escape(base_line(base))}</p>')
    parts += ["<h2>Runs</h2>", _html_table(RUN_COLUMNS, runs, "runs")]
    if compare:
        parts += ["<h2>Comparison settings (compare.json)</h2>",
                  f"<pre>{html.escape(json.dumps(compare, indent=2, default=str)[:4000])}</pre>"]
    parts.append("<h2>Curves</h2>")
    for panel, path in plots:
        b64 = base64.b64encode(path.read_bytes()).decode("ascii")
        parts += [f"<h3>{html.escape(panel.title)}</h3>",
                  f'<img id="plot-{panel.name}" alt="{panel.name}" src="data:image/png;base64,{b64}">']
    if notes:
        parts += ["<h2>Notes</h2><ul>"] + [f"<li>{html.escape(n)}</li>" for n in notes] + ["</ul>"]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def make_report(run_dir: str | Path, out_dir: str | Path | None = None, panels: tuple[Panel, ...] = PANELS) -> dict:
    """Load ``run_dir``, write the PNG plots of ``panels``, ``report.md`` and ``report.html`` into
    ``out_dir`` (default ``run_dir/report``). Returns the written paths and the per-preset table."""
    root = Path(run_dir).expanduser().resolve()
    notes: list[str] = []
    runs, compare, base = find_runs(root, notes)
    groups = group_by_preset(runs, compare)
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
    presets, per_run = preset_table(groups), run_table(groups, root)
    title = f"rlvr report: {root.name}"
    args = (title, presets, per_run, plots, notes, compare, base)
    (out / "report.md").write_text(render_markdown(*args), encoding="utf-8")
    (out / "report.html").write_text(render_html(*args), encoding="utf-8")
    return {"out_dir": out, "markdown": out / "report.md", "html": out / "report.html",
            "plots": [p for _, p in plots], "presets": presets, "notes": notes}


# ----------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory or a compare directory")
    p.add_argument("--out", metavar="DIR", default=None, help="output directory (default: RUN_DIR/report)")


def run(args: argparse.Namespace) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # truncated lines etc. are listed as notes below
        res = make_report(args.run_dir, args.out)
    for n in res["notes"]:
        print(f"note: {n}")
    print(f"wrote {len(res['plots'])} plots, {res['markdown']} and {res['html']}")
    return 0
