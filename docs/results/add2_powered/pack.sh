#!/usr/bin/env bash
# Pack the records of a study directory's runs into docs/results/add2_powered/runs.tar.gz:
# compare.json, the base eval and, for every run, config.yaml, provenance.json, metrics.jsonl,
# eval.jsonl, eval_items.jsonl, summary.json (finished runs only; no checkpoints).
#   docs/results/add2_powered/pack.sh PATH/TO/runs/add2_powered
set -euo pipefail
src=$(cd "$1" && pwd)
dest="$(cd "$(dirname "$0")" && pwd)/runs.tar.gz"
name=add2_powered
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/$name"
cp "$src/compare.json" "$tmp/$name/"
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
