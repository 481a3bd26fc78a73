#!/usr/bin/env bash
# Prepare the environment for `make test` / `make bench` / `make demo`:
#   1. a virtual environment ($VENV, default .venv) that also sees the system's site-packages,
#      so a machine that already has torch and the rest (and no network) installs nothing;
#   2. the packages of requirements/tested.txt that are missing, at the exact versions of
#      requirements/constraints.txt (FASTPROMPT_DEPS=pinned, the default), or at the newest
#      versions the registry serves (FASTPROMPT_DEPS=latest, used by `make test-latest`);
#      packages already present are kept and their versions printed;
#   3. the extension built for this environment's torch and copied into fastprompt/_C*.so
#      (ninja rebuilds only what changed; each virtual environment has its own build folder).
# FASTPROMPT_OFFLINE=1 installs nothing (a machine with no network); what is missing is reported.
# Packages marked optional may fail to install (no network): tests that need them then skip,
# except with CI=true, where every package of the tested set must be there.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
DEPS=${FASTPROMPT_DEPS:-pinned}
IN_CI=0
case "${CI:-}" in 1 | true | TRUE | True | yes) IN_CI=1 ;; esac

if [ ! -x "$VENV/bin/python" ]; then
  echo "[bootstrap] creating $VENV (with system site-packages)"
  # A Python without ensurepip cannot make a venv with pip; where every package is present, none
  # is needed.
  "$PYTHON" -m venv --system-site-packages "$VENV" 2>/dev/null ||
    "$PYTHON" -m venv --system-site-packages --without-pip "$VENV"
  # When $PYTHON is itself a virtual environment, a venv made from it sees the base interpreter's
  # site-packages, not its own: list those in a .pth file so that its packages are seen too.
  parent_sites=$("$PYTHON" -c 'import site, sys; print("\n".join(site.getsitepackages()) if sys.prefix != sys.base_prefix else "")')
  if [ -n "$parent_sites" ]; then
    own_site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$parent_sites" > "$own_site/_fastprompt_parent_site_packages.pth"
    echo "[bootstrap] $PYTHON is a virtual environment: its site-packages are visible in $VENV"
  fi
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check -q --retries 1 --timeout 30)

# name|optional(0/1)|no_deps(0/1) per line of requirements/tested.txt
entries=$(sed -n 's/^\([A-Za-z0-9_.-][A-Za-z0-9_.-]*\)[[:space:]]*\(#.*\)\{0,1\}$/\1|\2/p' requirements/tested.txt |
  awk -F'|' '{ printf "%s|%d|%d\n", $1, ($2 ~ /optional/), ($2 ~ /no-deps/) }')

installed_version() {  # prints the installed version of a distribution, or nothing
  "$PY" - "$1" <<'EOF' 2>/dev/null || true
import importlib.metadata, sys
try:
    print(importlib.metadata.version(sys.argv[1]))
except importlib.metadata.PackageNotFoundError:
    pass
EOF
}

pinned_version() { sed -n "s/^$1==//Ip" requirements/constraints.txt | head -1; }

install() {  # install <no_deps 0/1> <names...>
  local no_deps=$1; shift
  [ $# -gt 0 ] || return 0
  local args=() how=$DEPS
  if [ "$no_deps" = 1 ]; then args+=(--no-deps); how="$how, no deps"; fi
  if [ "$DEPS" = latest ]; then args+=(--upgrade); else args+=(-c requirements/constraints.txt); fi
  echo "[bootstrap] installing ($how): $*"
  "${PIP[@]}" "${args[@]}" "$@"
}

with_deps=(); without_deps=()
while IFS='|' read -r name optional no_deps; do
  have=$(installed_version "$name")
  if [ -z "$have" ] || [ "$DEPS" = latest ]; then
    if [ "$no_deps" = 1 ]; then without_deps+=("$name"); else with_deps+=("$name"); fi
  fi
done <<< "$entries"

if [ ${#with_deps[@]} -eq 0 ] && [ ${#without_deps[@]} -eq 0 ]; then
  echo "[bootstrap] all packages present; installing nothing"
elif [ "${FASTPROMPT_OFFLINE:-0}" = 1 ]; then
  echo "[bootstrap] FASTPROMPT_OFFLINE=1: installing nothing"
else
  failed=0
  install 0 "${with_deps[@]}" || failed=1
  install 1 "${without_deps[@]}" || failed=1
  if [ $failed = 1 ]; then echo "[bootstrap] pip could not install everything (no network?)"; fi
fi

# what is in use, and what is missing
missing_required=(); missing_optional=(); versions=()
while IFS='|' read -r name optional no_deps; do
  have=$(installed_version "$name")
  if [ -z "$have" ]; then
    if [ "$optional" = 1 ]; then missing_optional+=("$name"); else missing_required+=("$name"); fi
    continue
  fi
  pin=$(pinned_version "$name")
  if [ -n "$pin" ] && [ "$pin" != "$have" ]; then versions+=("$name $have (tested: $pin)"); else versions+=("$name $have"); fi
done <<< "$entries"
printf '[bootstrap] in use: %s\n' "$(IFS=,; echo "${versions[*]}" | sed 's/,/, /g')"
if [ ${#missing_required[@]} -gt 0 ]; then
  echo "[bootstrap] missing required packages: ${missing_required[*]}"
  exit 1
fi
if [ ${#missing_optional[@]} -gt 0 ]; then
  if [ $IN_CI = 1 ]; then
    echo "[bootstrap] CI=true: missing packages of the tested set: ${missing_optional[*]}"
    exit 1
  fi
  echo "[bootstrap] not installed (their tests will skip): ${missing_optional[*]}"
fi

build_dir="build/$(basename "$VENV" | sed "s/^\.//")"
echo "[bootstrap] building fastprompt._C (log: $build_dir/build.log)"
mkdir -p "$build_dir"
if ! MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PY" setup.py build_ext --build-temp "$build_dir/temp" \
    --build-lib "$build_dir/lib" > "$build_dir/build.log" 2>&1; then
  grep -E "error|Error" -A5 "$build_dir/build.log" | head -60
  tail -20 "$build_dir/build.log"
  echo "[bootstrap] build failed (full log: $build_dir/build.log)"
  exit 1
fi
for lib in "$build_dir"/lib/fastprompt/_C*.so; do
  cmp -s "$lib" "fastprompt/$(basename "$lib")" || cp "$lib" fastprompt/
done
"$PY" -c "import fastprompt; print('[bootstrap] fastprompt', fastprompt.__version__, 'CUDA kernels:', fastprompt.built_with_cuda())"
