#!/usr/bin/env bash
# Official Paddle 1.x checkpoint dir -> our save_pretrained dir.
#   bash script/convert/legacy.sh --input model_files/unimo_base_en --config model_files/config/unimo_base_en.json \
#        --output model_files/unimo_base_en_paddle [--task ...] [--num-labels N] [--dry-run]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"; [ -x "$PY" ] || PY=python
exec "$PY" -m unimo.convert legacy "$@"
