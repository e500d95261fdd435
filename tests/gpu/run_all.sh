#!/usr/bin/env bash
# Everything the GPU harness does, in one command (tests/gpu/README.md): build the torch extension
# (while the originals of originals.py are built and fla's Triton kernels tuned, in the background), bench.py (ours
# and the originals), check.py (every op, dtype and shape), then compute-sanitizer (memcheck on all ops, racecheck
# and synccheck on the kernels that use shared memory and barriers: TimeX, GLA, the MRU scan). Each step has its own
# time limit, cut to what is left of 590 s, so that the whole stays under 10 minutes, and prints only its tail.
# Into $OUT (default ./gpu-out), five files: run.log (every step's full log), bench.md, bench.json, bench.png,
# check.json. Exit status: non-zero if any step failed. The originals come from $LRNN_ORIGINALS or originals/
# (tests/gpu/fetch_originals.sh); without them bench.py times ours only.
# LRNN_GPU_BACKEND=emulated runs the same steps without a GPU (a dry run of the script: the CUDA kernels under the
# CPU emulation, time limits 20 times longer; put stand-ins for `compute-sanitizer` (running its command) and
# `nvidia-smi` on PATH). LRNN_BENCH_ARGS and LRNN_CHECK_ARGS add arguments (e.g. --ops mru, --quick).
# Needs: python3 with a CUDA build of torch, nvcc, ninja, compute-sanitizer (fla: Triton). No Paddle, no network.
set -u -o pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT
PY=${PYTHON:-python3}
BACKEND=${LRNN_GPU_BACKEND:-cuda}
SCALE=$([ "$BACKEND" = cuda ] && echo 1 || echo 20)
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16} LRNN_TORCH_EXT_DIR=${LRNN_TORCH_EXT_DIR:-/tmp/lrnn_torch_ext}
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-$LRNN_TORCH_EXT_DIR/triton}  # fla's compiled kernels and tunings
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
DEADLINE=$((590 * SCALE))
: >"$OUT/run.log"
summary=""
failed=0

# step NAME LIMIT_S FILTER LINES COMMAND...: runs COMMAND with a time limit (LIMIT_S, or what is left before the
# deadline), its log appended to $OUT/run.log; prints the last LINES lines of the log that match FILTER (an extended
# regex) and its last 3 lines.
step() {
  local name=$1 limit=$(($2 * SCALE)) filter=$3 lines=$4
  shift 4
  [ $limit -le $((DEADLINE - SECONDS)) ] || limit=$((DEADLINE - SECONDS))
  if [ $limit -lt 5 ]; then
    echo "=== $name: skipped (no time left)" | tee -a "$OUT/run.log"
    summary+=" $name=skipped"
    failed=1
    return
  fi
  echo "=== $name (limit $limit s): $*" | tee "$LOGS/$name.log"
  local t0=$SECONDS
  timeout --kill-after=5 "$limit" "$@" >>"$LOGS/$name.log" 2>&1
  local rc=$?
  grep -E "$filter" "$LOGS/$name.log" | grep -v "^=== " | tail -n "$lines"
  tail -n 3 "$LOGS/$name.log" | grep -v "^=== "
  echo "=== $name: exit $rc after $((SECONDS - t0)) s$([ $rc -eq 124 ] && echo ' (time limit)')" |
    tee -a "$LOGS/$name.log"
  cat "$LOGS/$name.log" >>"$OUT/run.log"
  summary+=" $name=$rc"
  [ $rc -eq 0 ] || failed=1
}

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv,noheader
  "$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)'
  "$PY" -c 'import triton; print("triton", triton.__version__)' 2>/dev/null || echo "no triton: fla cannot run"
  command -v nvcc >/dev/null && nvcc --version | tail -n 2
  "$SAN" --version | head -n 2
} 2>&1 | tee -a "$OUT/run.log"

# 1. Build the extension (nvcc compiles the CUDA sources in parallel; the later steps load it from the cache). Next
#    to it, in the background: the originals' builds and fla's Triton compilation and autotuning at the benchmark
#    shapes (cached on disk for bench.py; the GPU is idle while nvcc runs, so the tuning is undisturbed).
timeout --kill-after=5 $((180 * SCALE)) "$PY" tests/gpu/originals.py --prepare wkv,timex,mru,gla --backend "$BACKEND" \
  >"$LOGS/originals.log" 2>&1 &
prepare=$!
step build 200 'error|Error|^#' 20 "$PY" tests/gpu/ext.py "$BACKEND"
wait $prepare
echo "=== originals prepared (exit $?, after $SECONDS s):" | tee -a "$LOGS/originals.log"
grep -E '^#|Error' "$LOGS/originals.log" | tail -n 12
cat "$LOGS/originals.log" >>"$OUT/run.log"

# 2. Timings at the benchmark shapes, against the originals, times against T (bench.png), errors of ours and the
#    originals against the float64 reference: markdown tables for BENCHMARKS.md (bench.md).
step bench 150 '^(\||#|\()' 90 "$PY" tests/gpu/bench.py --backend "$BACKEND" --json "$OUT/bench.json" \
  ${LRNN_BENCH_ARGS:-}

# 3. Check: CUDA kernels against the CPU kernels and the float64 torch reference.
step check 180 '^(FAIL|#)' 40 "$PY" tests/gpu/check.py --backend "$BACKEND" --json "$OUT/check.json" \
  ${LRNN_CHECK_ARGS:-}

# 4. memcheck: out-of-bounds and misaligned accesses. Without torch's caching allocator every tensor is its own
#    cudaMalloc, so an access past a tensor is past an allocation.
PYTORCH_NO_CUDA_MEMORY_CACHING=1 step memcheck 120 'ERROR SUMMARY|Invalid|^(FAIL|#)' 40 \
  "$SAN" --tool memcheck --error-exitcode 9 --print-limit 20 \
  "$PY" tests/gpu/check.py --backend "$BACKEND" --quick --no-reference --dtypes float32,bfloat16

# 5. racecheck and synccheck on the kernels with shared memory and __syncthreads (TimeX, GLA, MRU scan).
step racecheck 80 'ERROR SUMMARY|RACECHECK SUMMARY|hazard|^(FAIL|#)' 40 \
  "$SAN" --tool racecheck --racecheck-report hazard --error-exitcode 9 --print-limit 20 \
  "$PY" tests/gpu/check.py --backend "$BACKEND" --quick --no-reference --dtypes float32 --ops timex,gla,mru
step synccheck 60 'ERROR SUMMARY|^(FAIL|#)' 40 \
  "$SAN" --tool synccheck --error-exitcode 9 --print-limit 20 \
  "$PY" tests/gpu/check.py --backend "$BACKEND" --quick --no-reference --dtypes float32 --ops timex,gla,mru

echo "=== summary:$summary after $SECONDS s (in $OUT: run.log, bench.md, bench.json, bench.png, check.json)" |
  tee -a "$OUT/run.log"
exit $failed
