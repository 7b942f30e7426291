"""``rlvr report RUN_DIR [--presets A,B] [--reference A] [--steps]``: plots and a Markdown/HTML summary of
a run or a comparison directory (:func:`evals.report.make_report`, which describes the report)."""
from __future__ import annotations

import argparse
import warnings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory or a compare directory")
    p.add_argument("--out", metavar="DIR", default=None, help="output directory (default: RUN_DIR/report)")
    p.add_argument("--presets", default=None, help="comma-separated presets to include, in this order")
    p.add_argument("--reference", default=None, help="preset the others are compared with (default: the first)")
    p.add_argument("--title", default=None, help="report title")
    p.add_argument("--margin", type=float, default=None,
                   help="equivalence margin for the verdicts (default: the one compare.json declared)")
    p.add_argument("--steps", action="store_true",
                   help="a ladder: also compare each preset with the one before it in --presets order, "
                        "and list the settings that change at each step")


def run(args: argparse.Namespace) -> int:
    from evals.report import make_report

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # truncated lines etc. are listed as notes below
        presets = [x.strip() for x in args.presets.split(",") if x.strip()] if args.presets else None
        res = make_report(args.run_dir, args.out, presets=presets, reference=args.reference, title=args.title,
                          steps=args.steps, margin=args.margin)
    for n in res["notes"]:
        print(f"note: {n}")
    print(f"wrote {len(res['plots'])} plots, {res['markdown']} and {res['html']}")
    return 0
