#!/usr/bin/env bash
# Compiles every CUDA source of the operator library with nvcc, against the installed (CPU) Paddle's headers, for
# sm_80 and sm_90. No GPU is needed: this catches CUDA compile errors on machines that cannot run the kernels.
# Usage: .ci/compile_cuda.sh [NVCC]   (default: nvcc from the nvidia-cuda-nvcc wheel in the active environment)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
NVCC=${1:-$($PY -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13", "bin", "nvcc"))')}
PADDLE_INC=$($PY -c 'import os, paddle; print(os.path.join(os.path.dirname(paddle.__file__), "include"))')
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
# -DPADDLE_NO_PYTHON: extension.h would otherwise pull in pybind and GPU-library headers a CPU wheel lacks.
FLAGS=(-std=c++17 -O3 -w -DPADDLE_WITH_CUDA -DPADDLE_NO_PYTHON -DPADDLE_WITH_CUSTOM_KERNEL
       -I"$PADDLE_INC" -I"$PADDLE_INC/third_party" -Icustom_ops -Xcompiler -fPIC --expt-relaxed-constexpr
       -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90)
status=0
for src in custom_ops/paddle/*.cu; do
  if "$NVCC" "${FLAGS[@]}" -c "$src" -o "$OUT/$(basename "$src").o"; then
    echo "nvcc ok: $src"
  else
    echo "nvcc FAILED: $src"
    status=1
  fi
done
exit $status
