#!/usr/bin/env bash
# `make gpu-check`: musicrep on a fresh GPU machine with no network, in one go. The machine's own
# python (with its CUDA torch) gets the missing pure wheels from .whl/ (`make gpu-wheels` fills it
# where there is network) and musicrep itself, built with CUDA for this machine's GPU; then the
# CUDA tests, the whole suite (pytest-xdist) and the CUDA benchmark rows run. Logs and the
# benchmark JSON go to one folder: $OUT when set, else build/gpu-check. Without a GPU it builds,
# says so and exits 0. Exit status: non-zero when any step failed (each step runs regardless).
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${GPU_PYTHON:-python3}
if [ -z "${GPU_PYTHON:-}" ] && ! python3 -c "import torch" 2>/dev/null && [ -x .venv/bin/python ]; then
  PY=.venv/bin/python  # a machine without a torch of its own: rehearse with `make setup`'s venv
fi
WHEELS=${GPU_WHEELS_DIR:-.whl}
LOGS=${OUT:-build/gpu-check}
mkdir -p "$LOGS"
LOGS=$(cd "$LOGS" && pwd)
SUMMARY="$LOGS/summary.txt"
: >"$SUMMARY"
failed=0

say() { echo "gpu-check: $*" | tee -a "$SUMMARY"; }

# step NAME LOG CMD...: runs CMD with its output in LOG, and records pass/fail with the seconds taken.
step() {
  local name=$1 log=$2 start rc
  shift 2
  start=$(date +%s)
  echo "gpu-check: $name ..."
  "$@" >"$LOGS/$log" 2>&1
  rc=$?
  say "$name: $([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)") in $(($(date +%s) - start)) s (log: $log)"
  [ $rc -eq 0 ] || { failed=1; tail -n 30 "$LOGS/$log"; }
  return $rc
}

"$PY" - >"$LOGS/env.txt" 2>&1 <<'EOF'
import platform, sys, torch
print("python", sys.version.split()[0], sys.executable)
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0), "capability %d.%d" % torch.cuda.get_device_capability(0))
print("machine", platform.machine(), platform.node())
EOF
[ $? -eq 0 ] || { say "$PY cannot import torch (see env.txt); install a torch first"; exit 1; }
cat "$LOGS/env.txt"

# The GPU decides the build: its own architecture only (one arch compiles in about half the time),
# and MUSICREP_CUDA=ON so a build that silently left the kernels out fails here.
arch=$("$PY" -c "import torch; print('%d%d' % torch.cuda.get_device_capability(0) if torch.cuda.is_available() else '')")
if [ -n "$arch" ]; then
  export MUSICREP_CUDA=ON MUSICREP_CMAKE_ARGS="${MUSICREP_CMAKE_ARGS:--DCMAKE_CUDA_ARCHITECTURES=$arch}"
fi
export MUSICREP_BUILD_JOBS=${MUSICREP_BUILD_JOBS:-$(nproc)}

# Only what the machine lacks is installed: a name already there is left as it is.
names=$(ls "$WHEELS"/*.whl 2>/dev/null | sed 's|.*/||; s|-[0-9].*||' | sort -u)
if [ -n "$names" ]; then
  step "install wheels from $WHEELS" install.log "$PY" -m pip install --no-index --no-deps --no-compile \
    --find-links "$WHEELS" $names || exit 1
fi
step "build musicrep (CUDA archs: ${arch:-default}, $MUSICREP_BUILD_JOBS jobs)" build.log \
  "$PY" -m pip install --no-index --no-deps --no-build-isolation -e . || exit 1
"$PY" -c "from musicrep._native import has_cuda_kernels as h; print('gpu-check: CUDA kernels built:', h())" \
  | tee -a "$SUMMARY"

if [ -z "$arch" ]; then
  say "no CUDA device on this machine (torch.cuda.is_available() is False): built, nothing to run"
  exit 0
fi

export PYTHONUNBUFFERED=1
step "CUDA tests (pytest -m cuda)" cuda-tests.log "$PY" -m pytest -q -m cuda -p no:cacheprovider tests
# one thread a worker: -n auto already starts one worker per core
step "whole suite (pytest -n auto)" suite.log env OMP_NUM_THREADS=1 "$PY" -m pytest -q -n auto -p no:cacheprovider tests
step "CUDA benchmark rows" bench.log "$PY" -m pytest -q -m cuda -p no:cacheprovider benchmarks --benchmark-enable \
  --benchmark-json="$LOGS/bench-cuda.json"

say "logs and bench-cuda.json in $LOGS"
exit $failed
