#!/usr/bin/env bash
# make gpu-check: on a machine with a GPU (no network needed), in one command and in under
# 8 minutes:
#   1. build the extension for the GPU present (TORCH_CUDA_ARCH_LIST = its compute capability),
#      through tools/bootstrap.sh (which installs nothing when the packages are present);
#   2. run the CUDA tests (every test id containing "cuda", tests/test_cuda.py included);
#   3. run the GPU benchmarks and write benchmarks/results/<family>_cuda.md (device, torch
#      version, date, ratios vs eager and torch.compile, fraction of the copy bandwidth measured
#      in the same run), <family>_cuda.png charts and latest_cuda.{csv,json}.
# A log of each step goes to build/gpu_check/. Exit status: 0 when the build and every test
# passed, 1 otherwise, 2 without a GPU.
#
# Environment: GPU_CHECK_BUDGET (seconds for the whole check, default 460), GPU_CHECK_TEST_TIMEOUT
# (default 200), VENV (default .venv), PYTHON (the interpreter that has torch, default python3),
# GPU_CHECK_DRY_RUN=1 (no GPU needed: CPU device, quick sizes; checks the script itself).
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
BUDGET=${GPU_CHECK_BUDGET:-460}
TEST_TIMEOUT=${GPU_CHECK_TEST_TIMEOUT:-200}
DRY=${GPU_CHECK_DRY_RUN:-0}
LOGS=build/gpu_check
RESULTS=${GPU_CHECK_RESULTS:-benchmarks/results}
mkdir -p "$LOGS"
t0=$(date +%s)
elapsed() { echo $(( $(date +%s) - t0 )); }
say() { echo "[gpu-check $(elapsed)s] $*"; }

if [ "$DRY" = "1" ]; then
  device=cpu
  say "dry run: CPU device, quick sizes"
else
  if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    say "no GPU visible to $PYTHON (torch.cuda.is_available() is false); nothing run"
    exit 2
  fi
  device=cuda
  arch=$("$PYTHON" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$arch}
  export FASTPROMPT_CUDA=${FASTPROMPT_CUDA:-1}
  "$PYTHON" -c "import torch; print('[gpu-check] GPU:', torch.cuda.get_device_name(), '| torch', torch.__version__, '| CUDA', torch.version.cuda)"
  nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm,clocks.max.sm --format=csv 2>/dev/null || true
fi

# 1. build (bootstrap: venv that sees the packages already installed, ninja build). Nothing is
#    installed unless FASTPROMPT_OFFLINE=0: the GPU machine has no network.
export FASTPROMPT_OFFLINE=${FASTPROMPT_OFFLINE:-1}
say "building (TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-unset}, MAX_JOBS=${MAX_JOBS:-$(nproc)})"
if ! PYTHON="$PYTHON" VENV="$VENV" bash tools/bootstrap.sh > "$LOGS/build.log" 2>&1; then
  tail -40 "$LOGS/build.log"
  say "build failed (log: $LOGS/build.log, build/build.log)"
  exit 1
fi
tail -1 "$LOGS/build.log"
PY="$VENV/bin/python"
if [ "$device" = "cuda" ] && ! "$PY" -c "import fastprompt, sys; sys.exit(0 if fastprompt.built_with_cuda() else 1)"; then
  say "the extension was built without its CUDA kernels"
  exit 1
fi
say "build done"

# 2. CUDA tests (the GPU ones; without a GPU they all skip, which the dry run shows)
status=0
say "CUDA tests (timeout ${TEST_TIMEOUT}s, log: $LOGS/tests.log)"
workers=()  # pytest-xdist, where installed: the CUDA tests in 4 processes sharing the GPU
"$PY" -c "import xdist" 2>/dev/null && [ "$DRY" != "1" ] && workers=(-n 4)
timeout --signal=INT "$TEST_TIMEOUT" "$PY" -m pytest -q tests -k cuda -p no:cacheprovider \
  "${workers[@]}" --durations=15 > "$LOGS/tests.log" 2>&1
rc=$?
grep -E "passed|failed|error|skipped" "$LOGS/tests.log" | tail -3
grep -E "^(FAILED|ERROR)" "$LOGS/tests.log" | head -40
if [ $rc -ne 0 ]; then
  status=1
  [ $rc -eq 124 ] && say "tests stopped at the timeout"
fi
say "tests done (exit $rc)"

# 3. benchmarks in the time that is left (each case gets its warm-up and timing; cases that do
#    not fit are listed as left out in the tables)
left=$(( BUDGET - $(elapsed) - 20 ))
if [ $left -lt 30 ]; then
  say "no time left for the benchmarks (${left}s)"
  exit $status
fi
bench_args=(--device "$device" --min-time 0.3 --warmup-time 0.3 --budget $(( left - 45 > 15 ? left - 45 : 15 ))
            --output "$RESULTS/latest_$device" --markdown "$RESULTS" --charts "$RESULTS")
[ "$DRY" = "1" ] && bench_args+=(--quick --ops rational)
say "benchmarks (budget ${left}s, log: $LOGS/bench.log)"
timeout --signal=INT "$left" "$PY" -m fastprompt.bench "${bench_args[@]}" 2>&1 | tee "$LOGS/bench.log" || true
say "done: tables in $RESULTS/*_${device}.md (total $(elapsed)s)"
exit $status
