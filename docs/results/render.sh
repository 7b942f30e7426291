#!/usr/bin/env bash
# Re-render the committed reports of docs/results from the committed raw records (no training):
#   docs/results/render.sh            # every study whose records are committed
#   docs/results/render.sh add2_stock # one of them
# Each study's records are a tarball of run directories (config, metrics, eval, eval_items,
# provenance where recorded, summary; no checkpoints). tests/test_results_render.py re-renders one
# study this way and compares every number with the committed summary.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
only="${1:-}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
want() { [ -z "$only" ] || [ "$only" = "$1" ]; }

# The add2 pages (stock, ladder, DPO, TRPO, controlled) come from add2_algos (every preset at one
# commit; the first round's records, add2_main_runs.tar.gz, are in the history at 05b95c7), and the
# controlled pilot's page (add2_controlled_pilot) is not re-rendered.
# add2_pages DIR "TITLE PREFIX" PAGE...: the add2 pages, from a study folder with their runs
add2_pages() {
  local A=$1 T=$2 page
  shift 2
  for page in "$@"; do
    want "$page" || continue
    case $page in
      add2_stock) rlvr report "$A" --presets grpo,ppo,dr_grpo --reference grpo --out docs/results/add2_stock \
        --title "$T: stock presets grpo, ppo, dr_grpo" ;;
      add2_ladder) rlvr report "$A" --presets reinforce,reinforce_baseline,a2c,a2c_gae,ppo_noclip,ppo,grpo \
        --reference reinforce --steps --out docs/results/add2_ladder --title "$T: the REINFORCE -> PPO ladder (and GRPO)" ;;
      add2_dpo) rlvr report "$A" --presets grpo,dpo --reference grpo --out docs/results/add2_dpo \
        --title "$T: online DPO from verifier pairs vs GRPO" ;;
      add2_trpo) rlvr report "$A" --presets ppo,trpo,trpo_full_fisher,grpo --reference ppo --out docs/results/add2_trpo \
        --title "$T: TRPO (Fisher on every 5th sample) and TRPO with the full-batch Fisher (1 seed) against ppo and grpo" ;;
      add2_controlled) rlvr report "$A" --presets ctrl_critic,ctrl_group,ctrl_loo --reference ctrl_group \
        --out docs/results/add2_controlled \
        --title "$T: critic vs group vs leave-one-out baseline, controlled (margin ±0.03 declared first)" ;;
    esac
  done
}
pages=""
for page in add2_stock add2_ladder add2_dpo add2_trpo add2_controlled; do want "$page" && pages="$pages $page"; done
if [ -n "$pages" ]; then
  tar xzf docs/results/add2_algos/runs.tar.gz -C "$tmp"
  add2_pages "$tmp/add2_algos" "2-digit addition, one commit" $pages
fi
if want add2_powered && [ -f docs/results/add2_powered/runs.tar.gz ]; then
  tar xzf docs/results/add2_powered/runs.tar.gz -C "$tmp"
  rlvr report "$tmp/add2_powered" --presets ctrl_critic,ctrl_group --reference ctrl_group \
    --out docs/results/add2_powered --title "Critic vs group baseline, 2-digit addition, powered (margin ±0.02 declared before the runs)"
fi
if want sub2_controlled && [ -f docs/results/sub2_controlled/runs.tar.gz ]; then
  tar xzf docs/results/sub2_controlled/runs.tar.gz -C "$tmp"
  rlvr report "$tmp/sub2_controlled" --presets ctrl_critic,ctrl_group --reference ctrl_group \
    --out docs/results/sub2_controlled --title "2-digit subtraction, controlled: critic vs group baseline (margin ±0.03 declared before the runs)"
fi
if want chain4d1 && [ -f docs/results/chain4d1/runs.tar.gz ]; then
  tar xzf docs/results/chain4d1/runs.tar.gz -C "$tmp"
  rlvr report "$tmp/chain4d1" --presets ctrl_critic,ctrl_group --reference ctrl_group \
    --out docs/results/chain4d1 --title "Critic vs group baseline, 4-number addition worked step by step (margin ±0.03 declared before the runs)"
fi
