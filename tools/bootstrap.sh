#!/usr/bin/env bash
# Prepare the environment for `make test` / `make bench`:
#   1. a virtual environment in .venv that also sees the system's site-packages, so a machine
#      that already has torch (and no network) installs nothing;
#   2. only the packages that are missing (checked by import, not by asking the network);
#   3. the extension built in place (fastprompt/_C*.so), rebuilt by ninja when sources change.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
  echo "[bootstrap] creating $VENV (with system site-packages)"
  "$PYTHON" -m venv --system-site-packages "$VENV"
fi
PY="$VENV/bin/python"

# module-to-import : requirement-to-install
required=(
  "torch:torch>=2.4"
  "ninja:ninja"
  "setuptools:setuptools>=64"
  "safetensors:safetensors"
  "numpy:numpy"
  "pytest:pytest"
  "pytest_benchmark:pytest-benchmark"
  "hypothesis:hypothesis"
  "transformers:transformers>=4.40"
  "peft:peft>=0.10"
  "accelerate:accelerate"
)
missing=()
for entry in "${required[@]}"; do
  mod=${entry%%:*}; req=${entry#*:}
  "$PY" -c "import $mod" >/dev/null 2>&1 || missing+=("$req")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[bootstrap] installing: ${missing[*]}"
  "$PY" -m pip install --disable-pip-version-check -q "${missing[@]}"
else
  echo "[bootstrap] all packages present; installing nothing"
fi

echo "[bootstrap] building fastprompt._C (log: build/build.log)"
mkdir -p build
if ! MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PY" setup.py build_ext --inplace > build/build.log 2>&1; then
  grep -E "error|Error" -A5 build/build.log | head -60
  tail -20 build/build.log
  echo "[bootstrap] build failed (full log: build/build.log)"
  exit 1
fi
"$PY" -c "import fastprompt, sys; print('[bootstrap] fastprompt', fastprompt.__version__, 'CUDA kernels:', fastprompt.built_with_cuda())"
