"""Print what a running study has packed so far (its README's status sentence) from its committed
records (docs/results/STUDY/runs.tar.gz): finished runs per seed, in the study's preset order, and
the range of their run times.

    python3 docs/results/packed.py add2_algos --planned 40
"""
import argparse
import io
import json
import tarfile
from pathlib import Path

here = Path(__file__).resolve().parent
ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("study", help="a folder of docs/results with a runs.tar.gz")
ap.add_argument("--planned", type=int, required=True, help="runs the study declared before it started")
args = ap.parse_args()
manifests, runs = {}, {}
with tarfile.open(here / args.study / "runs.tar.gz") as tar:
    for m in tar.getmembers():
        parts = m.name.split("/")
        if len(parts) == 2 and parts[1].startswith("compare") and parts[1].endswith(".json"):
            manifests[parts[1]] = json.load(tar.extractfile(m))
        elif len(parts) == 4 and parts[3] == "summary.json" and parts[2].startswith("seed"):
            runs[parts[1], int(parts[2][4:])] = json.load(io.TextIOWrapper(tar.extractfile(m), encoding="utf-8"))
# compare.json last: manifests of earlier calls (compare_*.json, set aside) name the presets first
order = list(dict.fromkeys(p for name in sorted(manifests, key=lambda n: n == "compare.json")
                           for p in manifests[name].get("presets") or []))
order += sorted({p for p, _ in runs} - set(order))  # arms run by a later compare into the same folder
# what each call planned (a manifest's "invocations", or its own presets x seeds): per seed, its presets
planned: dict[int, set[str]] = {}
for m in manifests.values():
    for call in m.get("invocations") or [m]:
        for seed in call.get("seeds") or []:
            planned.setdefault(seed, set()).update(call.get("presets") or [])
by_seed: dict[int, list[str]] = {}
for preset in order:
    for (p, seed) in sorted(runs):
        if p == preset:
            by_seed.setdefault(seed, []).append(preset)


def names(presets):
    quoted = [f"`{p}`" for p in presets]
    return ", ".join(quoted[:-1]) + " and " + quoted[-1] if len(quoted) > 1 else quoted[0]


listed = []
for seed, presets in sorted(by_seed.items()):
    want = [p for p in order if p in planned.get(seed, set())] or presets
    missing = [p for p in want if p not in presets]
    if set(presets) <= set(want) and len(missing) <= 3:  # every planned preset, or all but a few
        listed.append(f"seed {seed} of all {len(want)} presets" + (f" but {names(missing)}" if missing else ""))
    else:
        listed.append(f"seed {seed} of {names(presets)}")
times = [r["elapsed_s"] for r in runs.values()]
span = f"; each ran {min(times):,.0f}-{max(times):,.0f} s, up to the end of its final eval" if times else ""
print(f"{len(runs)} of the {args.planned} runs: " + "; ".join(listed) + span + ".")
