#!/usr/bin/env bash
# Create or refresh the project venv (.venv) with the pinned runtime + test requirements, and the vocabulary.
# Sourced by script/test.sh and script/demo.sh. Idempotent: reinstalls only when requirements changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
VENV="$ROOT/.venv"
stamp="$VENV/.requirements.sha"
want=$(cat "$ROOT/requirements.txt" "$ROOT/requirements-test.txt" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing requirements into $VENV (first run: a few minutes)"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/requirements.txt" -r "$ROOT/requirements-test.txt" 2>&1 \
    | grep -v "^WARNING: Location" || true
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e "$ROOT" 2>&1 | grep -v "^WARNING: Location" || true
  "$VENV/bin/pip" check
  echo "$want" > "$stamp"
fi
bash "$ROOT/model_files/download_dict.sh" >/dev/null
export MKL_DEBUG_CPU_TYPE="${MKL_DEBUG_CPU_TYPE:-5}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
