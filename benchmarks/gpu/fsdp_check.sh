#!/usr/bin/env bash
# One GPU call: the FSDP2 path of docs/scaling.md ("FSDP2") on a lent GPU machine.
#
#   1. 2-process FSDP2 on NCCL is impossible on one GPU (NCCL refuses two ranks on one device), so the
#      FSDP2 tests run as in CI (2 gloo processes through recipes/accelerate/fsdp2_cpu.yaml,
#      tests/test_fsdp.py: one GRPO and one PPO step equal to one process, gathered weights equal,
#      save + resume exact) on the machine's cores;
#   2. if CUDA is available: a 1-process FSDP2 run on the GPU (trainer.distributed=fsdp2 shards over a
#      group of one: the same code path, NCCL, bf16) of SmolLM2-135M-Instruct, 2 GRPO steps with the
#      embedded engine sampling from the gathered policy, a checkpoint, then --resume for one more
#      step; reports peak GPU memory and that the checkpoint loads as an HF model;
#   3. if vllm is importable as well: the same with rollout.engine=vllm (weights gathered one tensor
#      at a time into the colocated engine, sync fingerprint checked every step).
#
# Model: SmolLM2-135M-Instruct as for study_check.sh (../shared/tools/device-prep stages it under
# /tmp/smol; carry [".dev/m3", ".dev/whl"]). Fits one call of <= 10 minutes (step 1 ~3 min, steps 2-3
# ~2 min each). Results in $OUT.
set -uo pipefail
source "$(dirname "$0")/_prep.sh"
export OMP_NUM_THREADS=2
status=0

echo "== 1. FSDP2 vs one process, save + resume (2 gloo processes)"
timeout 420 python -m pytest -q -p no:cacheprovider tests/test_fsdp.py 2>&1 | tail -5 | tee "$OUT/fsdp_cpu.txt" || status=1

run_gpu() {  # $1: name, rest: overrides
  local name=$1; shift
  local dir="$OUT/$name"
  timeout 240 python -m rlvr.cli train recipes/quickstart.yaml model.name=smollm2-135m-instruct \
      trainer.distributed=fsdp2 trainer.reuse_sampler_logprobs=false trainer.total_steps=2 trainer.progress=false trainer.tensorboard=false \
      trainer.output_dir="$dir" "$@" > "$dir.log" 2>&1 \
    && timeout 180 python -m rlvr.cli train recipes/quickstart.yaml model.name=smollm2-135m-instruct \
      trainer.distributed=fsdp2 trainer.reuse_sampler_logprobs=false trainer.total_steps=3 trainer.progress=false trainer.tensorboard=false \
      trainer.output_dir="$dir" "$@" --resume >> "$dir.log" 2>&1 \
    && grep -q "resumed from" "$dir.log" \
    && python - "$dir" <<'PY' | tee -a "$dir.log"
import json, sys
from pathlib import Path
d = Path(sys.argv[1])
rows = [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines() if l.strip()]
assert [r["step"] for r in rows] == [1, 2, 3], [r["step"] for r in rows]
from transformers import AutoModelForCausalLM
AutoModelForCausalLM.from_pretrained(d / "checkpoints" / "step_3" / "policy")
print(f"{d.name}: 3 steps ok, checkpoint loads; peak memory {max(r['memory/peak_gb'] for r in rows):.2f} GB,"
      f" step time {rows[-1]['time/step']:.2f} s, sync {rows[-1].get('time/sync', 0):.3f} s")
PY
}

echo "== 2. 1-process FSDP2 on the GPU, embedded engine"
if python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" && [ -n "$GGUF" ]; then
  run_gpu fsdp2_gpu_hf && echo "fsdp2 gpu (hf): ok" || { echo "fsdp2 gpu (hf): FAILED"; tail -20 "$OUT/fsdp2_gpu_hf.log"; status=1; }
else
  echo "skipped: no CUDA or no model staged under /tmp/smol"
fi

echo "== 3. 1-process FSDP2 on the GPU, colocated vLLM (gathered sync + fingerprint)"
if python -c "import torch, sys, vllm; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null && [ -n "$GGUF" ]; then
  run_gpu fsdp2_gpu_vllm rollout.engine=vllm rollout.vllm.gpu_memory_utilization=0.3 \
    && echo "fsdp2 gpu (vllm): ok" || { echo "fsdp2 gpu (vllm): FAILED"; tail -20 "$OUT/fsdp2_gpu_vllm.log"; status=1; }
else
  echo "skipped: vllm not importable, no CUDA or no model staged"
fi
rm -rf "$OUT"/fsdp2_gpu_*/checkpoints/step_[12]
exit $status
