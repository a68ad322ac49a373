#!/usr/bin/env bash
# Shared by every script/<task>/<dataset>/run.sh: environment, then the package's entry point under
# `python -m paddle.distributed.launch`.
#   NPROC=N        processes on this machine (CPU: gloo; default 1). On GPU machines CUDA_VISIBLE_DEVICES selects cards.
#   LOG_DIR=DIR    per-worker logs (default log/<name>)
#   NNODES=N MASTER=HOST:PORT   multi-node: run the same command on every node (paddle.distributed.launch --nnodes
#                  N --master HOST:PORT; each node runs NPROC processes)
# Arguments after the script name override the YAML: KEY=value or --key value. `run.sh --sweep [...]` runs the
# YAML's sweep: grid instead (python -m unimo.sweep; --emit-jobs prints one command per point for a scheduler).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source "$ROOT/script/setup_env.sh"
PY="$ROOT/.venv/bin/python"

launch() {  # launch ENTRY_MODULE_FILE CONF NAME [overrides...]
  local entry="$1" conf="$2" name="$3"; shift 3
  local nproc="${NPROC:-1}" devices=()
  if [ -n "${CUDA_VISIBLE_DEVICES:-}" ] && "$PY" -c "import paddle,sys; sys.exit(0 if paddle.is_compiled_with_cuda() else 1)" 2>/dev/null; then
    devices=(--devices "$CUDA_VISIBLE_DEVICES")
  else
    devices=(--nproc_per_node "$nproc")
    # one OpenMP thread pool per process: split the cores
    if [ "$nproc" -gt 1 ]; then export OMP_NUM_THREADS=$(( $(nproc) / nproc > 0 ? $(nproc) / nproc : 1 )); fi
  fi
  local nodes=()
  if [ -n "${NNODES:-}" ]; then nodes=(--nnodes "$NNODES" --master "${MASTER:?MASTER=HOST:PORT is needed with NNODES}"); fi
  "$PY" -m paddle.distributed.launch "${nodes[@]}" "${devices[@]}" --log_dir "${LOG_DIR:-log/$name}" \
    "$entry" --config "$conf" "$@"
}

run_finetune() {  # run_finetune CONF NAME [--sweep [sweep options]] [overrides...]
  if [ "${3:-}" = "--sweep" ]; then  # the config's hyper-parameter grid, one run per point (python -m unimo.sweep)
    local conf="$1"; shift 3
    "$PY" -m unimo.sweep --config "$conf" --nproc "${NPROC:-1}" "$@"
    return
  fi
  launch "$ROOT/src/unimo/finetune/run.py" "$@"
}
