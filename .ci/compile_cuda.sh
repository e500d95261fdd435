#!/usr/bin/env bash
# Compiles every CUDA source with nvcc: the operator library's for sm_80 and sm_90 (custom_ops/paddle/*.cu, against
# the installed CPU Paddle's headers) and the GPU harness's raw-pointer entry points for sm_90, the one target
# tests/gpu/ext.py builds (tests/gpu/torch_ops_cuda*.cu, which need no torch). No GPU is needed: this catches CUDA
# compile errors on machines that cannot run the kernels.
# Usage: .ci/compile_cuda.sh [NVCC]   (default: nvcc from the nvidia-cuda-nvcc wheel in the active environment)
# Environment: PYTHON (default python), JOBS (parallel compiles, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
JOBS=${JOBS:-2}
NVCC=${1:-$($PY -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13", "bin", "nvcc"))')}
PADDLE_INC=$($PY -c 'import os, paddle; print(os.path.join(os.path.dirname(paddle.__file__), "include"))')
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
ARCH=(-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90)
# -DPADDLE_NO_PYTHON: extension.h would otherwise pull in pybind and GPU-library headers a CPU wheel lacks.
PADDLE_FLAGS=(-std=c++17 -O3 -w -DPADDLE_WITH_CUDA -DPADDLE_NO_PYTHON -DPADDLE_WITH_CUSTOM_KERNEL
              -I"$PADDLE_INC" -I"$PADDLE_INC/third_party" -Icustom_ops -Xcompiler -fPIC --expt-relaxed-constexpr
              "${ARCH[@]}")
HARNESS_FLAGS=(-std=c++17 -O3 -Icustom_ops -Itests/gpu -Xcompiler -fPIC --expt-relaxed-constexpr
               -gencode arch=compute_90,code=sm_90)

compile() {  # compile SOURCE FLAGS...: prints "nvcc ok/FAILED: SOURCE" and the compiler's output on failure
  local src=$1 log
  shift
  log="$OUT/$(echo "$src" | tr / _).log"
  if "$NVCC" "$@" -c "$src" -o "$log.o" >"$log" 2>&1; then
    echo "nvcc ok: $src"
  else
    echo "nvcc FAILED: $src"
    cat "$log"
    return 1
  fi
}

pids=()
status=0
run() {  # at most JOBS compiles at once
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || status=1; done
  compile "$@" &
  pids+=($!)
}
for src in custom_ops/paddle/*.cu; do run "$src" "${PADDLE_FLAGS[@]}"; done
for src in tests/gpu/torch_ops_cuda*.cu; do run "$src" "${HARNESS_FLAGS[@]}"; done
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
