#!/usr/bin/env bash
# Fetches the original projects' kernels that tests/gpu/bench.py compares ours with (tests/gpu/originals.py) into a
# git-ignored folder (default: originals/ at the repository root), each from a pinned commit or release, so that
# every run compares with the same code. Nothing of it is committed. Needs git and pip reaching GitHub and PyPI;
# run it on any machine and copy the folder (about 6 MB) to the GPU machine if that one is offline.
#   rwkv4/           RWKV-v4/cuda/wkv_cuda.cu, wkv_op.cpp           github.com/BlinkDL/RWKV-LM at RWKV_LM_COMMIT
#   rwkv2/           RWKV-v2-RNN/cuda/timex_cuda.cu, timex_op.cpp   the same
#   mru-lm/          mru_scans/hs_mru.py, bk_mru.py                 github.com/mikayahlevi/mru-lm at MRU_LM_COMMIT
#   mru-lm/cuda_mru/ the mru_scans/cuda_mru submodule (mru-lm's default scan: a CUDA torch extension), at the
#                    commit mru-lm's tree pins                      github.com/mikayahlevi/cuda_mru
#   py/              fla (fla-core 0.6.0), einops, packaging         PyPI (pip download; pure Python wheels)
# SOURCES.txt in the folder records where each file came from. The repositories are cloned without their file
# contents (--filter=blob:none), so only the files copied here are downloaded.
# Usage: tests/gpu/fetch_originals.sh [DIR]
# Environment: PYTHON (default python3, with pip), FLA_VERSION (default 0.6.0), GIT_BASE (default https://github.com).
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=${1:-originals}
PY=${PYTHON:-python3}
FLA_VERSION=${FLA_VERSION:-0.6.0}
GIT_BASE=${GIT_BASE:-https://github.com}
RWKV_LM_COMMIT=524481d5099b38d9bc8ef1e89209161b86c8011b  # the commit tests/fixtures/rwkv2 was made from
MRU_LM_COMMIT=c45d36dae4a650b54dd9278d2175913c07f6bc5e    # the commit tests/fixtures/mru was made from
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
rm -rf "$DIR/rwkv4" "$DIR/rwkv2" "$DIR/mru-lm" "$DIR/py"
mkdir -p "$DIR/rwkv4" "$DIR/rwkv2" "$DIR/mru-lm/cuda_mru" "$DIR/py"
sources="$DIR/SOURCES.txt"
echo "# fetched $(date -u +%Y-%m-%dT%H:%MZ) by tests/gpu/fetch_originals.sh" >"$sources"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# clone REPO: a clone of github.com/REPO without file contents, in $work
clone() {
  git clone -q --bare --filter=blob:none "$GIT_BASE/$1.git" "$work/${1/\//+}"
}
# copy REPO COMMIT PATH DEST: one file of REPO at COMMIT into $DIR/DEST
copy() {
  git --git-dir="$work/${1/\//+}" show "$2:$3" >"$DIR/$4"
  echo "$4  github.com/$1 ${2:0:12}:$3" >>"$sources"
}
clone BlinkDL/RWKV-LM
copy BlinkDL/RWKV-LM "$RWKV_LM_COMMIT" RWKV-v4/cuda/wkv_cuda.cu rwkv4/wkv_cuda.cu
copy BlinkDL/RWKV-LM "$RWKV_LM_COMMIT" RWKV-v4/cuda/wkv_op.cpp rwkv4/wkv_op.cpp
copy BlinkDL/RWKV-LM "$RWKV_LM_COMMIT" RWKV-v2-RNN/cuda/timex_cuda.cu rwkv2/timex_cuda.cu
copy BlinkDL/RWKV-LM "$RWKV_LM_COMMIT" RWKV-v2-RNN/cuda/timex_op.cpp rwkv2/timex_op.cpp
clone mikayahlevi/mru-lm
copy mikayahlevi/mru-lm "$MRU_LM_COMMIT" mru_scans/hs_mru.py mru-lm/hs_mru.py
copy mikayahlevi/mru-lm "$MRU_LM_COMMIT" mru_scans/bk_mru.py mru-lm/bk_mru.py
# the submodule: the commit recorded in mru-lm's tree, every file of it but the README's plot
cuda_mru=$(git --git-dir="$work/mikayahlevi+mru-lm" rev-parse "$MRU_LM_COMMIT:mru_scans/cuda_mru")
clone mikayahlevi/cuda_mru
git --git-dir="$work/mikayahlevi+cuda_mru" ls-tree -r --name-only "$cuda_mru" | grep -E '\.(py|cu|cuh|cpp)$|^LICENSE$' |
  while read -r path; do
    mkdir -p "$DIR/mru-lm/cuda_mru/$(dirname "$path")"
    copy mikayahlevi/cuda_mru "$cuda_mru" "$path" "mru-lm/cuda_mru/$path"
  done

# fla-core is pure Python over Triton; einops and packaging are its imports that a torch install may lack (they are
# put after site-packages on sys.path, so installed ones win).
"$PY" -m pip download -q --no-deps -d "$work/wheels" "fla-core==$FLA_VERSION" einops packaging
for whl in "$work"/wheels/*.whl; do
  "$PY" -m zipfile -e "$whl" "$DIR/py"
  echo "py/  pypi.org $(basename "$whl")" >>"$sources"
done
rm -rf "$DIR"/py/*.dist-info
find "$DIR/py" -name __pycache__ -prune -exec rm -rf {} +

cat "$sources"
echo "$(du -sh "$DIR" | cut -f1) in $DIR"
