#!/usr/bin/env bash
# One GPU call: the study harness on a lent H100/H200 (step cost per preset, then one seed of the
# controlled critic-vs-group comparison on 2-digit addition, the same recipe as the CPU study).
#
# Before the call, on the CPU machine: ../shared/tools/device-prep  (stages the GGUF in three parts,
# the wheels the device image lacks: gguf, math-verify, latex2sympy2-extended, antlr4) and its first
# two carry calls; then run this script in the third call with carry [".dev/m3", ".dev/whl"] and the
# model joined under /tmp/smol (device-prep prints how). Results land in $OUT (JSON + report).
# Fits one call of <= 10 minutes: bench ~1 min, compare of 3 presets x 1 seed ~2-4 min on an H200.
set -euo pipefail
source "$(dirname "$0")/_prep.sh"
[ -n "$GGUF" ] || { echo "study_check: no GGUF under /tmp/smol (run device-prep's carry calls first)"; exit 2; }
python -m rlvr.cli bench step recipes/study_add2.yaml --presets ctrl_group,ctrl_critic,ppo --steps 3 \
  --label "GPU study_check" --out "$OUT/step_cuda.json" trainer.gradvar_every=0
python -m rlvr.cli compare recipes/study_add2.yaml --controlled --seeds 1 --out "$OUT/study_add2_gpu"
python -m rlvr.cli report "$OUT/study_add2_gpu" --out "$OUT/report"
rm -rf "$OUT"/study_add2_gpu/*/seed*/checkpoints
