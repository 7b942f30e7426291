# Sourced by the GPU check scripts of this folder (not run on its own): the set-up every device call
# shares. Installs the staged wheels (.dev/whl, carried by ../shared/tools/device-prep) and rlvr
# itself without dependencies, points rlvr at the staged model and data, and records the GPU.
# Sets OUT (default /tmp/out), GGUF (the staged SmolLM2 GGUF under /tmp/smol, or empty), and exports
# RLVR_CACHE, RLVR_DATA_DIR and, when the GGUF is there, RLVR_SMOLLM2_GGUF.
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python -m pip install -q --no-index --find-links .dev/whl gguf math-verify latex2sympy2-extended antlr4-python3-runtime 2>/dev/null \
  || echo "_prep.sh: the staged wheels did not install (is .dev/whl carried?)"
python -m pip install -q --no-deps -e . >/dev/null
GGUF=$(ls /tmp/smol/*.gguf 2>/dev/null | head -n 1 || true)
export RLVR_CACHE=/tmp/rlvr-cache RLVR_DATA_DIR=.dev/data
if [ -n "$GGUF" ]; then export RLVR_SMOLLM2_GGUF="$GGUF"; fi
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU visible (nvidia-smi failed)"; } \
  | tee "$OUT/gpu.txt"
