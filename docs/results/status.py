"""Print a study's status line (its README's "Status:" line) from its rendered summary.json and
report.md: the finished runs' scores per shared seed and the paired difference with its verdict,
as report.md states it.

    python3 docs/results/status.py add2_powered --planned 10
    python3 docs/results/status.py chain4d1 --planned 5 --items 1,024
"""
import argparse
import json
import re
from pathlib import Path

here = Path(__file__).resolve().parent
ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("study", help="a folder of docs/results with a rendered report (summary.json, report.md)")
ap.add_argument("--presets", default="ctrl_critic,ctrl_group", help="A,B: the comparison A - B (default: %(default)s)")
ap.add_argument("--planned", type=int, required=True, help="seeds per preset declared before the runs")
ap.add_argument("--items", default="1,024", help="held-out items of the final eval, as printed (default: %(default)s)")
args = ap.parse_args()
a, b = args.presets.split(",")
d = json.loads((here / args.study / "summary.json").read_text())
by: dict[str, dict[int, float]] = {}
for r in d["runs"]:
    if r.get("finished", True):  # an unfinished run's final_eval is its last mid-training eval
        by.setdefault(r["preset"], {})[r["seed"]] = r["final_eval"]
seeds = sorted(set(by.get(a, {})) & set(by.get(b, {})))
fmt = lambda p: " / ".join(f"{by[p][s]:.3f}" for s in seeds)  # noqa: E731
n = 2 * len(seeds)
total = 2 * args.planned
if not seeds:
    print(f"0 of {total} runs finished in both presets.")
    raise SystemExit
which = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}-{seeds[-1]}"
head = f"{n} of {total} runs finished ({which} of each preset). Greedy pass@1 on the {args.items} items: " \
       f"{a} {fmt(a)}, {b} {fmt(b)}"
row = next((x for x in (here / args.study / "report.md").read_text().splitlines() if x.startswith(f"| {a} - {b} |")), None)
if row is None or len(seeds) < 2:
    print(head + f"; no interval from {len(seeds)} seed{'s' if len(seeds) > 1 else ''}.")
else:
    diff = re.sub(r"\s*\|\s*$", "", row.split("|")[2]).strip()
    interim = "" if len(seeds) >= args.planned else \
        f" (interim: the study's verdict is the one at the declared {args.planned} seeds)"
    print(head + f"; {a.replace('ctrl_', '')} - {b.replace('ctrl_', '')} {diff} at {len(seeds)} seeds{interim}.")
