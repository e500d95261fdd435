#!/usr/bin/env bash
# Runs the emulated kernel tests (tests/test_cuda_emulated*.py) with the CUDA emulation built under a sanitizer (the
# stand-in for compute-sanitizer on a machine without a GPU):
#   tests/cuda_emu/sanitize.sh thread     racecheck: ThreadSanitizer reports every unsynchronised access between
#                                         a block's threads (shared or global memory), whatever the values
#   tests/cuda_emu/sanitize.sh address    memcheck: AddressSanitizer + UBSan (out-of-bounds, use after free, array
#                                         bounds of fixed-size register arrays, misaligned accesses, overflow)
#   tests/cuda_emu/sanitize.sh undefined  UBSan alone
# Extra arguments go to pytest (e.g. -k float32, or a test file: tests/test_cuda_emulated_mru_scan.py). Libraries are cached
# apart from the normal build.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
CXX=${CXX:-g++}
kind=${1:-thread}
shift || true
opts=()
case "$kind" in
  thread) san=thread; preload=libtsan.so; opts=(TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1) ;;
  address) san=address,undefined; preload=libasan.so
           opts=(ASAN_OPTIONS=detect_leaks=0:alloc_dealloc_mismatch=0 UBSAN_OPTIONS=print_stacktrace=1) ;;
  undefined) san=undefined; preload="" ; opts=(UBSAN_OPTIONS=print_stacktrace=1) ;;
  *) echo "usage: $0 thread|address|undefined [pytest args]" >&2; exit 2 ;;
esac
export LRNN_EMU_SANITIZE=$san
export LRNN_EMU_BUILD_DIR=${LRNN_EMU_BUILD_DIR:-${TMPDIR:-/tmp}/lrnn_cuda_emu-$(id -u)-$kind}
# Paddle's CPU kernels use OpenMP, whose synchronisation ThreadSanitizer cannot see: keep them on one thread.
export OMP_NUM_THREADS=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "$preload" ]; then
  lib=$("$CXX" -print-file-name="$preload")
  [ -f "$lib" ] || { echo "$CXX has no $preload" >&2; exit 2; }
  opts+=(LD_PRELOAD="$lib")
fi
# The preload must be set when Python starts; it is then dropped from the environment so that the subprocesses
# Paddle runs at import (ldd) do not inherit it. -s: the sanitizer's report goes to the terminal.
exec env "${opts[@]}" "$PY" -c '
import glob, os, sys, pytest
os.environ.pop("LD_PRELOAD", None)
files = [a for a in sys.argv[1:] if a.startswith("tests/")]
rest = [a for a in sys.argv[1:] if not a.startswith("tests/")]
files = files or sorted(glob.glob("tests/test_cuda_emulated_*.py"))
sys.exit(pytest.main(["-q", "-s", "-p", "no:cacheprovider", *files, *rest]))
' "$@"
