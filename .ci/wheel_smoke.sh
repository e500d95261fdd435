#!/usr/bin/env bash
# The wheel as a user gets it: builds it with `pip wheel --no-build-isolation --no-deps` (default build flags) from
# this checkout's source files alone (tracked and new files, nothing the checkout has built, such as an editable
# install's library), installs it with the same Paddle version into a fresh virtualenv outside the checkout, and runs
# tests/smoke/wheel_smoke.py from another directory with that virtualenv: every module imports, each family's
# fixture converts and matches the original's logits, the converted model generates, a short training run trains
# and generates. Exits non-zero on any failure.
# Usage: .ci/wheel_smoke.sh   (with the environment active that has Paddle and the build tools: README's set-up)
# Environment: PYTHON (default python), KEEP=1 keeps the temporary folder (the wheel, the virtualenv) and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-python}
WORK=$(mktemp -d)
[ "${KEEP:-}" = 1 ] && echo "wheel smoke: keeping $WORK" || trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/src" "$WORK/dist" "$WORK/run"

git ls-files -z --cached --others --exclude-standard |
  tar --null -T - --ignore-failed-read -cf - | tar -xf - -C "$WORK/src"
start=$SECONDS
(cd "$WORK/src" && "$PY" -m pip wheel -q --no-build-isolation --no-deps -w "$WORK/dist" .)
wheel=$(ls "$WORK"/dist/paddle_lrnn-*.whl)
echo "wheel smoke: built $(basename "$wheel") in $((SECONDS - start)) s"

paddle_req=$("$PY" -c 'import importlib.metadata as m
for name in ("paddlepaddle", "paddlepaddle-gpu"):
    try:
        print(f"{name}=={m.version(name)}"); break
    except m.PackageNotFoundError:
        pass')
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q "$paddle_req" "$wheel"
echo "wheel smoke: installed it with $paddle_req into a fresh virtualenv"

cd "$WORK/run"
env -u PYTHONPATH PADDLE_LRNN_CACHE="$WORK/cache" \
  "$WORK/venv/bin/python" "$REPO/tests/smoke/wheel_smoke.py" "$REPO" "$WORK/run"
