"""How many seeds and held-out items a comparison needs: :func:`make_plan` (``rlvr plan``).

Reads the pilot runs of a study (a ``rlvr compare`` directory, or the ``summary.json`` a report
wrote), measures the variance components of the paired difference between two presets (seed, item,
seed x item; :func:`evals.stats.components`) and prints, for a grid of seeds x items:

* the power to find a true difference of ``--effect`` (95% interval excluding 0), and
* the power to show equivalence within +/-``--effect`` when the true difference is 0 (TOST),

then the fewest seeds reaching ``--power`` at each item count, and the smallest difference the
pilot's own size detects. With per-item results (``eval_items.jsonl``) the item and residual parts
are measured and projections to other item counts are made; with per-seed scores only (a report's
summary.json) the seed-level variance already contains the pilot's item noise, so only the pilot's
item count can be planned for, and it says so.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np

from rlvr.errors import ConfigError, RlvrError

DEFAULT_SEEDS = (3, 5, 8, 10, 15, 20, 30)


def _pilot_from_runs(root: Path, presets: list[str] | None, metric: str):
    from evals.report import find_runs, group_by_preset, item_matrix

    notes: list[str] = []
    runs, compare, _ = find_runs(root, notes)
    groups = group_by_preset(runs, compare)
    names = presets or list(groups)[:2]
    if len(names) != 2 or any(n not in groups for n in names):
        raise ConfigError(f"--presets: need two presets with runs under {root}; found {', '.join(groups) or 'none'}")
    a, b = groups[names[0]], groups[names[1]]
    with_items = [r for r in a + b if r.items]
    if with_items:
        ids = sorted(set.intersection(*(set(r.items) for r in with_items)))
        A, sa = item_matrix(a, metric, ids)
        B, sb = item_matrix(b, metric, ids)
        common = [s for s in sa if s in sb]
        if len(common) >= 2 and ids:
            D = A[[sa.index(s) for s in common]] - B[[sb.index(s) for s in common]]
            return names, D, common, "items"
    # per-seed finals only
    fa = {r.seed: r.summary.get("final_eval/pass@1") for r in a}
    fb = {r.seed: r.summary.get("final_eval/pass@1") for r in b}
    common = sorted(s for s in fa if s in fb and fa[s] is not None and fb[s] is not None)
    D = np.array([[fa[s] - fb[s]] for s in common], dtype=np.float64)
    return names, D, common, "seeds"


def _pilot_from_summary(path: Path, presets: list[str] | None):
    data = json.loads(path.read_text())
    runs = data.get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, list):
        raise RlvrError(f"{path}: not a report summary.json (no 'runs' list)")
    by: dict[str, dict[int, float]] = {}
    for r in runs:
        if r.get("finished") is False:  # a study in progress: its last logged eval is not a final score
            continue
        v = r.get("final_eval") if r.get("final_eval") is not None else r.get("final_eval/pass@1")
        if r.get("preset") is not None and r.get("seed") is not None and v is not None:
            by.setdefault(r["preset"], {})[r["seed"]] = float(v)
    names = presets or list(by)[:2]
    if len(names) != 2 or any(n not in by for n in names):
        raise ConfigError(f"--presets: need two presets in {path}; found {', '.join(by) or 'none'}")
    common = sorted(s for s in by[names[0]] if s in by[names[1]])
    D = np.array([[by[names[0]][s] - by[names[1]][s]] for s in common], dtype=np.float64)
    items = (data.get("stats") or {}).get("items")
    return names, D, common, "seeds", items


def make_plan(study: str | Path, effect: float, presets: list[str] | None = None, metric: str = "greedy/pass@1",
              target: float = 0.8, items: list[int] | None = None, seeds: list[int] | None = None) -> dict:
    """The plan as a dict (what ``rlvr plan`` prints)."""
    from evals.stats import (Components, components, equivalence_power, minimum_detectable, paired_difference, power,
                             seeds_needed, verdict)

    if not (0 < effect < 1):
        raise ConfigError(f"--effect: {effect} must be a difference in accuracy between 0 and 1")
    if not (0 < target < 1):
        raise ConfigError(f"--power: {target} must be between 0 and 1")
    path = Path(study).expanduser()
    if not path.exists():
        raise RlvrError(f"{path}: no such study directory or summary.json")
    pilot_items = None
    if path.is_file():
        names, D, common, level, pilot_items = _pilot_from_summary(path, presets)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            names, D, common, level = _pilot_from_runs(path, presets, metric)
    if len(common) < 2:
        raise RlvrError(f"{path}: {names[0]} and {names[1]} share {len(common)} seed(s); a plan needs at least 2 "
                        "(the seed-to-seed spread is what it measures)")
    S = D.shape[0]
    if level == "items":
        comp = components(D)
        pilot_items = D.shape[1]
        grid_items = items or sorted({pilot_items, 1024, 2048})
    else:  # per-seed differences: their variance holds the pilot's item noise; no projection in items
        var = float(np.var(D[:, 0], ddof=1))
        comp = Components(seed=var, item=0.0, res=0.0, seeds=S, items=pilot_items or 0)
        grid_items = [pilot_items or 0]
    est = paired_difference(D, np.zeros((1, D.shape[1])))  # the pilot's own interval (seed level)
    grid_seeds = seeds or list(DEFAULT_SEEDS)
    table = []
    for I in grid_items:
        Ie = max(I, 1)
        for n in grid_seeds:
            table.append({"seeds": n, "items": I, "se": comp.se(n, Ie),
                          "power_detect": power(effect, comp, n, Ie),
                          "power_equivalence": equivalence_power(effect, comp, n, Ie),
                          "half_width_95": comp.se(n, Ie) * _t975(comp.df(n, Ie))})
    needed = {str(I): {"detect": seeds_needed(target, lambda c, n, i: power(effect, c, n, i), comp, max(I, 1)),
                       "equivalence": seeds_needed(target, lambda c, n, i: equivalence_power(effect, c, n, i), comp, max(I, 1))}
              for I in grid_items}
    return {"study": str(path), "presets": names, "metric": metric, "effect": effect, "power": target,
            "pilot": {"seeds": common, "items": pilot_items, "level": level,
                      "mean_difference": float(D.mean()), "per_seed_difference": [float(x) for x in D.mean(axis=1)],
                      "interval_95": [est.lo, est.hi], "verdict": verdict(est, effect),
                      "components": comp.to_dict(),
                      "minimum_detectable": minimum_detectable(comp, S, max(pilot_items or 1, 1), target)},
            "table": table, "seeds_needed": needed}


def _t975(df: float) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, df)) if df > 0 else math.nan


def _fmt_needed(n: int | None) -> str:
    return "> 200" if n is None else str(n)


def render(plan: dict) -> str:
    p, pil, comp = plan, plan["pilot"], plan["pilot"]["components"]
    a, b = p["presets"]
    lines = [f"pilot: {a} - {b}, {p['metric']}, {len(pil['seeds'])} shared seeds x "
             f"{pil['items'] if pil['items'] else '?'} items; mean difference {pil['mean_difference']:+.4f}; per seed "
             + ", ".join(f"{x:+.3f}" for x in pil["per_seed_difference"])]
    if pil["level"] == "items":
        lines.append(f"variance components of the difference (per cell): seed {comp['seed']:.3g} (sd {math.sqrt(comp['seed']):.4f}), "
                     f"item {comp['item']:.3g} (sd {math.sqrt(comp['item']):.4f}), seed x item {comp['res']:.3g}")
    else:
        lines.append(f"per-seed differences only (no eval_items.jsonl): between-seed variance {comp['seed']:.3g} "
                     f"(sd {math.sqrt(comp['seed']):.4f}), which includes the pilot's item noise; plans are for "
                     "the pilot's item count only")
    lines.append(f"pilot's 95% interval {pil['interval_95'][0]:+.3f}..{pil['interval_95'][1]:+.3f}: "
                 f"{pil['verdict']} (margin ±{p['effect']})")
    lines.append(f"smallest difference the pilot's size finds with power {p['power']}: "
                 f"{pil['minimum_detectable']:.3f}")
    lines.append("")
    lines.append(f"effect {p['effect']}: power to find it (95% interval excludes 0) / power to show equivalence "
                 f"within ±{p['effect']} if the truth is 0 / expected 95% half-width")
    lines.append(f"{'seeds':>6} {'items':>6} {'detect':>7} {'equiv':>7} {'half-width':>10}")
    for r in p["table"]:
        lines.append(f"{r['seeds']:>6} {r['items']:>6} {r['power_detect']:>7.2f} {r['power_equivalence']:>7.2f} "
                     f"{r['half_width_95']:>10.4f}")
    lines.append("")
    for I, n in p["seeds_needed"].items():
        lines.append(f"at {I} items: {_fmt_needed(n['detect'])} seeds to find ±{p['effect']} with power {p['power']}; "
                     f"{_fmt_needed(n['equivalence'])} seeds to show equivalence within ±{p['effect']}")
    return "\n".join(lines)
