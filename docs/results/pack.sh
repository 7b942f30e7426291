#!/usr/bin/env bash
# Pack the records of a study directory's runs into docs/results/NAME/runs.tar.gz (as NAME/...):
# compare.json (and any compare_*.json), the base eval and, for every run, config.yaml, provenance.json, metrics.jsonl,
# eval.jsonl, eval_items.jsonl, summary.json (finished runs only; no checkpoints).
#   docs/results/pack.sh add2_powered PATH/TO/runs/add2_powered
#   docs/results/pack.sh chain4d1 PATH/TO/runs/chain4d1
set -euo pipefail
name=$1
src=$(cd "$2" && pwd)
dest="$(cd "$(dirname "$0")" && pwd)/$name/runs.tar.gz"
[ -d "$(dirname "$dest")" ] || { echo "pack.sh: no docs/results/$name"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/$name"
cp "$src/compare.json" "$tmp/$name/"
# manifests of earlier calls set aside before a later call into the same folder (code before the
# manifest kept every call's record rewrote compare.json with the last call's alone)
for m in "$src"/compare_*.json; do [ -f "$m" ] && cp "$m" "$tmp/$name/"; done
[ -d "$src/base" ] && mkdir -p "$tmp/$name/base" && cp "$src"/base/*.json* "$tmp/$name/base/"
n=0
for run in "$src"/*/seed*; do
  [ -f "$run/summary.json" ] || continue
  rel=${run#"$src"/}
  mkdir -p "$tmp/$name/$rel"
  for f in config.yaml provenance.json metrics.jsonl eval.jsonl eval_items.jsonl summary.json; do
    [ -f "$run/$f" ] && cp "$run/$f" "$tmp/$name/$rel/"
  done
  n=$((n + 1))
done
tar czf "$dest" -C "$tmp" "$name"
echo "packed $n finished runs into $dest"
