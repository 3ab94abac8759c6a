#!/usr/bin/env bash
# The first run on a CUDA machine, prepared so that a short GPU lease is not wasted (issue 18).
#
#   bash bench/gpu_check.sh OUTDIR
#
# From a clean checkout: installs the project as the README does (`make .venv/.installed`, a no-op
# with an up-to-date .venv), then runs, each step under its own time limit and all within
# GPU_CHECK_BUDGET_S (default 480 s) of wall time:
#   cuda_tests    pytest -m cuda (tests/test_cuda.py): device choice, bf16 autocast, PGD, training,
#                 the attack suite, NCCL + SyncBatchNorm on one GPU (2-GPU DDP if there are 2)
#   pipeline      the tiny profile end to end on CUDA, fp32 and bf16 at once, in temporary copies;
#                 per-sample agreement of every attack between the two
#   pgd           our PGD vs torchattacks' at batch 256 and 1024, fp32 and bf16, with and without
#                 early stopping: image-steps/s and the ratio
#   train         the full profile's largest image models on random inputs for 2 minutes in all:
#                 images/s and peak GPU memory
# and writes OUTDIR/gpu_check.json (every number), OUTDIR/gpu_check.md (a summary) and
# OUTDIR/gpu_check_logs.tar.gz (every step's log). A failing or hanging step is recorded and the
# script goes on. Exit status: 0 when every step that ran passed, 1 otherwise.
#
# Without CUDA it says so in one line, checks the install without installing, runs the timing
# harnesses at a tiny size on the CPU (so that their code runs; tests/test_gpu_check.py) and writes
# the same files. GPU_CHECK_PYTHON=/path/to/python uses that interpreter (with the project
# installed in it) instead of .venv, and installs nothing.
set -uo pipefail # no -e: a failing step is recorded, and the next one runs

BUDGET_S=${GPU_CHECK_BUDGET_S:-480}
REPORT_RESERVE_S=15 # kept back from the last step for the report
NO_CUDA="no CUDA device: ran only the CPU-side steps (install check, timing harnesses at a tiny size); nothing was measured on a GPU"

log() { echo "[gpu_check $(($(date +%s) - START))s] $*"; }

# record NAME STATUS RC SECONDS LIMIT [REASON]: one row of steps.tsv, which the report reads
record() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "${6:-}" >>"$WORK/steps.tsv"
  log "$1: $2${6:+ ($6)} in $4 s"
}

# run_step NAME LIMIT_S CMD...: run CMD under `timeout`, never past the budget, output to WORK/NAME.log.
# The command sees its limit as GPU_CHECK_STEP_LIMIT_S, so a step can stop itself cleanly before it.
run_step() {
  local name=$1 limit=$2 left rc start
  shift 2
  left=$((DEADLINE - REPORT_RESERVE_S - $(date +%s)))
  if ((left < 10)); then
    record "$name" skipped "" 0 0 "out of the ${BUDGET_S} s budget"
    return
  fi
  ((limit > left)) && limit=$left
  log "$name: running (limit $limit s)"
  start=$(date +%s)
  GPU_CHECK_STEP_LIMIT_S=$limit timeout --kill-after=10 "$limit" "$@" >"$WORK/$name.log" 2>&1
  rc=$?
  case $rc in
    0) record "$name" ok 0 $(($(date +%s) - start)) "$limit" ;;
    124 | 137) record "$name" timeout "$rc" $(($(date +%s) - start)) "$limit" "stopped at its limit" ;;
    *) record "$name" failed "$rc" $(($(date +%s) - start)) "$limit" "exit status $rc" ;;
  esac
}

has_gpu() { command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; }

# install: the README's install on a GPU machine; elsewhere only whether it is up to date (no network, no time)
install() {
  if [[ -n ${GPU_CHECK_PYTHON:-} ]]; then
    record install skipped "" 0 0 "GPU_CHECK_PYTHON=$GPU_CHECK_PYTHON"
  elif has_gpu; then
    run_step install 300 make .venv/.installed
  elif [[ ! -x .venv/bin/python ]]; then
    record install failed 1 0 0 "checked: no .venv (run make .venv/.installed)"
  elif make -q .venv/.installed 2>/dev/null; then
    record install ok 0 0 0 "checked: .venv is up to date"
  else # still usable: the check goes on with it
    record install ok 0 0 0 "checked: .venv is older than pyproject.toml; make .venv/.installed would reinstall"
  fi
}

gpu_steps() {
  # torchattacks 3.5.1 pins an old requests: --no-deps, and a folder of its own, leave the locked venv as it is
  run_step torchattacks 60 "$PY" -m pip install -q --no-deps --target "$WORK/torchattacks" torchattacks==3.5.1
  run_step cuda_tests 90 "$PY" -m pytest -m cuda tests/test_cuda.py -p no:cacheprovider -rfEs \
    --junitxml "$WORK/cuda_tests.xml"
  run_step pipeline 240 "$PY" "$DRIVER" pipeline --device cuda --work "$WORK/repos" --out "$WORK/pipeline.json"
  run_step pgd 75 env PYTHONPATH="$WORK/torchattacks" "$PY" "$DRIVER" pgd --device cuda --batches 256 1024 \
    --out "$WORK/pgd.json"
  run_step train 150 "$PY" "$DRIVER" train --device cuda --seconds 120 --out "$WORK/train.json"
}

cpu_steps() {
  record torchattacks skipped "" 0 0 "no CUDA: installs nothing"
  record cuda_tests skipped "" 0 0 "no CUDA"
  record pipeline skipped "" 0 0 "no CUDA"
  run_step pgd 60 "$PY" "$DRIVER" pgd --device cpu --tiny --batches 16 32 --precisions fp32 --repeats 1 \
    --fit-steps 20 --out "$WORK/pgd.json"
  run_step train 60 "$PY" "$DRIVER" train --device cpu --tiny --seconds 2 --out "$WORK/train.json"
}

main() {
  if [[ $# -ne 1 ]]; then
    echo "usage: bash bench/gpu_check.sh OUTDIR" >&2
    exit 2
  fi
  mkdir -p "$1" && OUT=$(cd "$1" && pwd) || exit 2
  cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
  START=$(date +%s)
  DEADLINE=$((START + BUDGET_S))
  DRIVER=bench/gpu_check.py
  PY=${GPU_CHECK_PYTHON:-.venv/bin/python}
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
  mkdir -p "$WORK/repos"
  : >"$WORK/steps.tsv"

  install
  run_step env 60 "$PY" "$DRIVER" env --out "$WORK/env.json"
  local mode note=""
  mode=$(cat "$WORK/env.mode" 2>/dev/null || echo cpu)
  if [[ $mode == cuda ]]; then
    gpu_steps
  else
    note=$NO_CUDA
    if has_gpu; then # a driver too old for the pinned CUDA wheels, say: the lease is lost, so say it loudly
      note="nvidia-smi lists a GPU but torch cannot use it (see the env step); ran only the CPU-side steps"
      record torch_cuda failed 1 0 0 "$note"
    fi
    echo "$note"
    cpu_steps
  fi

  # the report needs only the standard library: any python3 writes it if the install failed
  local report_py=$PY status=0
  [[ -x $report_py ]] || report_py=python3
  if ! timeout 60 "$report_py" "$DRIVER" report --mode "$mode" --note "$note" --budget-s "$BUDGET_S" \
    --started-unix "$START" "$WORK" "$OUT"; then
    log "report: failed; the raw step table is in the logs"
    status=1
  fi
  cut -f2 "$WORK/steps.tsv" | grep -qE '^(failed|timeout)$' && status=1
  tar -czf "$OUT/gpu_check_logs.tar.gz" -C "$WORK" --exclude=./repos --exclude=./torchattacks . && rm -rf "$WORK"
  log "done: $OUT/gpu_check.md"
  return $status
}

main "$@"
