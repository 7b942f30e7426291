"""``rlvr plan STUDY_DIR --effect 0.02 [--presets A,B] [--json]``: seeds and held-out items a comparison
needs, from its pilot runs (:func:`evals.plan.make_plan`, which describes the method)."""
from __future__ import annotations

import argparse
import json

from rlvr.errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("study", metavar="STUDY_DIR", help="a rlvr compare directory, or a report's summary.json")
    p.add_argument("--effect", type=float, required=True, help="difference in accuracy to detect or exclude, e.g. 0.02")
    p.add_argument("--presets", default=None, help="the two presets compared, A,B (default: the first two found)")
    p.add_argument("--metric", default="greedy/pass@1", help="per-item metric (default greedy/pass@1)")
    p.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
    p.add_argument("--items", default=None, help="comma-separated held-out item counts to plan for "
                                                 "(default: the pilot's, 1024, 2048)")
    p.add_argument("--seeds", default=None, help="comma-separated seed counts for the table")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def _ints(text: str | None, name: str) -> list[int] | None:
    if text is None:
        return None
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--{name}: expected comma-separated integers, got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise ConfigError(f"--{name}: expected positive integers, got {text!r}")
    return vals


def run(args: argparse.Namespace) -> int:
    from evals.plan import make_plan, render

    presets = [x.strip() for x in args.presets.split(",")] if args.presets else None
    if presets is not None and len(presets) != 2:
        raise ConfigError(f"--presets: expected two presets A,B, got {args.presets!r}")
    plan = make_plan(args.study, args.effect, presets, args.metric, args.power, _ints(args.items, "items"),
                     _ints(args.seeds, "seeds"))
    print(json.dumps(plan, indent=2) if args.json else render(plan))
    return 0
