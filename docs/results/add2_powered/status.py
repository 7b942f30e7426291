"""Print the status line of docs/results/add2_powered/README.md from the rendered summary.json:
the finished runs' scores and the paired difference with its verdict (as report.md states it).
    python docs/results/add2_powered/status.py"""
import json
import re
from pathlib import Path

here = Path(__file__).resolve().parent
d = json.loads((here / "summary.json").read_text())
by = {}
for r in d["runs"]:
    by.setdefault(r["preset"], {})[r["seed"]] = r["final_eval"]
seeds = sorted(set(by.get("ctrl_critic", {})) & set(by.get("ctrl_group", {})))
line = next(x for x in (here / "report.md").read_text().splitlines() if x.startswith("| ctrl_critic - ctrl_group |"))
diff = re.sub(r"\s*\|\s*$", "", line.split("|")[2]).strip()
fmt = lambda p: " / ".join(f"{by[p][s]:.3f}" for s in seeds)  # noqa: E731
print(f"{2 * len(seeds)} of 20 runs finished (seeds {seeds[0]}-{seeds[-1]} of each preset). Greedy pass@1 on the "
      f"1,024 items: ctrl_critic {fmt('ctrl_critic')}, ctrl_group {fmt('ctrl_group')}; critic - group {diff} "
      f"at {len(seeds)} seeds.")
