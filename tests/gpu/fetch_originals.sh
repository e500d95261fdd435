#!/usr/bin/env bash
# Copies the original projects' kernels that tests/gpu/bench.py compares ours with (tests/gpu/originals.py) into a
# git-ignored folder (default: originals/ at the repository root), on a machine with the search tool's mirrors and
# PyPI; the device tool then carries the folder to the GPU machine (tests/gpu/README.md). Nothing of it is committed.
#   rwkv4/   RWKV-v4/cuda/wkv_cuda.cu, wkv_op.cpp          from the BlinkDL/RWKV-LM mirror (HEAD)
#   rwkv2/   RWKV-v2-RNN/cuda/timex_cuda.cu, timex_op.cpp  from the same mirror
#   mru-lm/  mru_scans/hs_mru.py, bk_mru.py                from the mikayahlevi/mru-lm mirror (HEAD)
#   py/      fla (fla-core 0.6.0), einops, packaging        from PyPI (pip download; pure Python wheels)
# SOURCES.txt in the folder records where each file came from.
# Usage: tests/gpu/fetch_originals.sh [DIR]
# Environment: MIRRORS (default /work/.mirror: fetch github:BlinkDL/RWKV-LM and github:mikayahlevi/mru-lm first),
# PYTHON (default python3, with pip), FLA_VERSION (default 0.6.0).
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=${1:-originals}
MIRRORS=${MIRRORS:-/work/.mirror}
PY=${PYTHON:-python3}
FLA_VERSION=${FLA_VERSION:-0.6.0}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
rm -rf "$DIR/rwkv4" "$DIR/rwkv2" "$DIR/mru-lm" "$DIR/py"
mkdir -p "$DIR/rwkv4" "$DIR/rwkv2" "$DIR/mru-lm" "$DIR/py"
sources="$DIR/SOURCES.txt"
echo "# fetched $(date -u +%Y-%m-%dT%H:%MZ) by tests/gpu/fetch_originals.sh" >"$sources"

# from_mirror REPO PATH DEST: one file of a mirrored repository's HEAD
from_mirror() {
  local git_dir="$MIRRORS/${1/\//+}/repo"
  if ! git --git-dir="$git_dir" rev-parse --verify -q HEAD >/dev/null; then
    echo "no mirror of $1 at $git_dir: fetch github:$1 with the search tool first" >&2
    exit 1
  fi
  git --git-dir="$git_dir" show "HEAD:$2" >"$DIR/$3"
  echo "$3  github.com/$1 $(git --git-dir="$git_dir" rev-parse --short=12 HEAD):$2" >>"$sources"
}
from_mirror BlinkDL/RWKV-LM RWKV-v4/cuda/wkv_cuda.cu rwkv4/wkv_cuda.cu
from_mirror BlinkDL/RWKV-LM RWKV-v4/cuda/wkv_op.cpp rwkv4/wkv_op.cpp
from_mirror BlinkDL/RWKV-LM RWKV-v2-RNN/cuda/timex_cuda.cu rwkv2/timex_cuda.cu
from_mirror BlinkDL/RWKV-LM RWKV-v2-RNN/cuda/timex_op.cpp rwkv2/timex_op.cpp
from_mirror mikayahlevi/mru-lm mru_scans/hs_mru.py mru-lm/hs_mru.py
from_mirror mikayahlevi/mru-lm mru_scans/bk_mru.py mru-lm/bk_mru.py

# fla-core is pure Python over Triton; einops and packaging are its imports that a torch install may lack (they are
# put after site-packages on sys.path, so installed ones win).
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
"$PY" -m pip download -q --no-deps -d "$wheels" "fla-core==$FLA_VERSION" einops packaging
for whl in "$wheels"/*.whl; do
  "$PY" -m zipfile -e "$whl" "$DIR/py"
  echo "py/  pypi.org $(basename "$whl")" >>"$sources"
done
rm -rf "$DIR"/py/*.dist-info
find "$DIR/py" -name __pycache__ -prune -exec rm -rf {} +

cat "$sources"
echo "$(du -sh "$DIR" | cut -f1) in $DIR (the device tool carries at most 64 MiB)"
