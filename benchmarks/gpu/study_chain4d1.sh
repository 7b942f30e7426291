#!/usr/bin/env bash
# One GPU call: the chain4d1 critic-vs-group study (recipes/study_chain4d1.yaml, docs/results/chain4d1):
# ctrl_critic vs ctrl_group, 48 steps, the base model evaluated once, then `rlvr report`.
#
# Which subset: the whole study is 10 runs (5 seeds x 2 presets); by the estimate in
# docs/results/chain4d1/README.md a run takes about 5 minutes alone on an H100, so 10 runs do not
# fit one call of <= 10 minutes. By default this call runs seeds 0-2 of both presets (SEEDS=3, 6
# runs) all side by side (JOBS=6: SmolLM2-135M leaves the GPU mostly idle in one process, its decode
# loop is bound by launches). A second call with SEEDS=5 RESUME=<the first call's runs.tar.gz,
# carried> adds seeds 3-4 (finished runs are never redone; the code must be the same commit).
#
# Before the call, on the CPU machine: ../shared/tools/device-prep and its first two carry calls;
# then this script in the third call with carry [".dev/m3", ".dev/whl"] and the model joined under
# /tmp/smol (device-prep prints how), e.g.
#   cp .dev/m3/part_ac /tmp/smol/ && cat /tmp/smol/part_a? > /tmp/smol/SmolLM2-135M-Instruct.Q4_1.gguf \
#     && benchmarks/gpu/study_chain4d1.sh
#
# Time: the study gets BUDGET_S seconds (default 450: with _prep.sh, 60 s of grace after the
# deadline, the report and the packing, the call stays under 600 s). At the deadline every running trainer is sent SIGINT: it finishes its step, checkpoints
# and exits; unfinished runs are left out of the report (their records are packed for a look, and
# the same command on the same warm machine continues them from their checkpoints).
#
# Results in $OUT: gpu.txt, compare.log, runs.tar.gz (compare.json, the base eval and each run's
# config.yaml, provenance.json, metrics.jsonl -- value/explained_variance every step for
# ctrl_critic --, eval.jsonl, eval_items.jsonl, summary.json; an unfinished run has no
# summary.json), report.md and report.html.
# Knobs (environment): SEEDS, JOBS, BUDGET_S, STUDY (the study directory, default /tmp/chain4d1),
# RESUME (a runs.tar.gz of an earlier call: its finished runs and base eval are unpacked into
# STUDY first), MODEL (default smollm2-135m-instruct, which needs the staged GGUF), PREP=0 (skip
# _prep.sh: a dry run of the plumbing on a machine already set up, e.g. MODEL=tiny-random); extra
# arguments are passed to rlvr compare as overrides (e.g. trainer.total_steps=2).
set -uo pipefail
if [ "${PREP:-1}" = 1 ]; then source "$(dirname "$0")/_prep.sh"; else OUT=${OUT:-/tmp/out}; GGUF=; mkdir -p "$OUT"; fi
SEEDS=${SEEDS:-3} JOBS=${JOBS:-6} BUDGET_S=${BUDGET_S:-450} STUDY=${STUDY:-/tmp/chain4d1}
MODEL=${MODEL:-smollm2-135m-instruct}
if [ "$MODEL" = smollm2-135m-instruct ] && [ -z "$GGUF" ]; then
  echo "study_chain4d1: no GGUF under /tmp/smol (run device-prep's carry calls first)"; exit 2
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
if [ -n "${RESUME:-}" ]; then  # finished runs and the base eval of an earlier call
  mkdir -p "$STUDY" && tar xzf "$RESUME" -C "$STUDY" --strip-components=1
  for run in "$STUDY"/*/seed*; do [ -f "$run/summary.json" ] || rm -rf "$run"; done
  echo "resumed: $(ls "$STUDY"/*/seed*/summary.json 2>/dev/null | wc -l) finished runs from $RESUME"
fi
t0=$(date +%s)
timeout --signal=INT --kill-after=60 "$BUDGET_S" \
  python -m rlvr.cli compare recipes/study_chain4d1.yaml --presets ctrl_critic,ctrl_group --seeds "$SEEDS" \
    --jobs "$JOBS" --out "$STUDY" model.name="$MODEL" "$@" 2>&1 | tee "$OUT/compare.log" | grep -v "^\s*$" | tail -40
echo "compare: $(( $(date +%s) - t0 )) s (budget $BUDGET_S s)"
python -m rlvr.cli report "$STUDY" --presets ctrl_critic,ctrl_group --reference ctrl_group --out "$STUDY/report" \
  2>&1 | tail -5 && cp "$STUDY"/report/report.md "$STUDY"/report/report.html "$OUT/" 2>/dev/null
tmp=$(mktemp -d); name=$(basename "$STUDY"); mkdir -p "$tmp/$name"
cp "$STUDY/compare.json" "$tmp/$name/" 2>/dev/null
[ -d "$STUDY/base" ] && mkdir -p "$tmp/$name/base" && cp "$STUDY"/base/*.json* "$tmp/$name/base/"
for run in "$STUDY"/*/seed*; do
  [ -d "$run" ] || continue
  rel=${run#"$STUDY"/}; mkdir -p "$tmp/$name/$rel"
  for f in config.yaml provenance.json metrics.jsonl eval.jsonl eval_items.jsonl summary.json; do
    [ -f "$run/$f" ] && cp "$run/$f" "$tmp/$name/$rel/"
  done
done
tar czf "$OUT/runs.tar.gz" -C "$tmp" "$name" && rm -rf "$tmp"
echo "finished runs: $(ls "$STUDY"/*/seed*/summary.json 2>/dev/null | wc -l) of $((2 * SEEDS)); records in $OUT/runs.tar.gz"
