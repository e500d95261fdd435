#!/usr/bin/env bash
# Everything the GPU harness does, in one call of the device tool (tests/gpu/README.md): build the torch extension,
# check.py (every op, dtype and shape), bench.py, then compute-sanitizer (memcheck on all ops, racecheck and
# synccheck on the kernels that use shared memory and barriers). Each step has its own time limit so that the whole
# stays under the tool's 600 s; each writes its full log to $OUT (what the tool brings back; ./gpu-out elsewhere)
# and prints only its tail. Exit status: non-zero if any step failed.
# Needs: python3 with a CUDA build of torch, nvcc, ninja, compute-sanitizer. No Paddle, no network.
set -u -o pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16} LRNN_TORCH_EXT_DIR=${LRNN_TORCH_EXT_DIR:-/tmp/lrnn_torch_ext}
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
summary=""
failed=0

# step NAME LIMIT_S FILTER COMMAND...: runs COMMAND with a time limit, log to $OUT/NAME.log (appended), prints the
# lines of the log that match FILTER (an extended regex) and the last 3.
step() {
  local name=$1 limit=$2 filter=$3
  shift 3
  echo "=== $name: $*" | tee -a "$OUT/$name.log"
  local t0=$SECONDS
  timeout --kill-after=5 "$limit" "$@" >>"$OUT/$name.log" 2>&1
  local rc=$?
  grep -E "$filter" "$OUT/$name.log" | grep -v "^=== " | tail -n 40
  tail -n 3 "$OUT/$name.log"
  echo "=== $name: exit $rc after $((SECONDS - t0)) s$([ $rc -eq 124 ] && echo ' (time limit)')"
  summary+=" $name=$rc"
  [ $rc -eq 0 ] || failed=1
}

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv,noheader
  "$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)'
  command -v nvcc >/dev/null && nvcc --version | tail -n 2
  "$SAN" --version | head -n 2
} 2>&1 | tee "$OUT/check.log"

# 1. Build + check: CUDA kernels against the CPU kernels and the float64 torch reference.
step check 270 '^(FAIL|#)' "$PY" tests/gpu/check.py --json "$OUT/check.json"

# 2. Timings at the benchmark shapes (a markdown table for BENCHMARKS.md), before the slow sanitizer runs.
step bench 90 '^(\||#|\()' "$PY" tests/gpu/bench.py --json "$OUT/bench.json"

# 3. memcheck: out-of-bounds and misaligned accesses. Without torch's caching allocator every tensor is its own
#    cudaMalloc, so an access past a tensor is past an allocation.
PYTORCH_NO_CUDA_MEMORY_CACHING=1 step memcheck 120 'ERROR SUMMARY|Invalid|^(FAIL|#)' \
  "$SAN" --tool memcheck --error-exitcode 9 --print-limit 20 \
  "$PY" tests/gpu/check.py --quick --no-reference --dtypes float32,bfloat16

# 4. racecheck and synccheck on the kernels with shared memory and __syncthreads (TimeX).
step racecheck 60 'ERROR SUMMARY|RACECHECK SUMMARY|hazard|^(FAIL|#)' \
  "$SAN" --tool racecheck --racecheck-report hazard --error-exitcode 9 --print-limit 20 \
  "$PY" tests/gpu/check.py --quick --no-reference --dtypes float32 --ops timex
step synccheck 40 'ERROR SUMMARY|^(FAIL|#)' \
  "$SAN" --tool synccheck --error-exitcode 9 --print-limit 20 \
  "$PY" tests/gpu/check.py --quick --no-reference --dtypes float32 --ops timex

echo "=== summary:$summary (logs and JSON in $OUT)"
exit $failed
