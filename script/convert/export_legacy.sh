#!/usr/bin/env bash
# Our save_pretrained dir -> official Paddle 1.x checkpoint dir (official variable names, one file each).
#   bash script/convert/export_legacy.sh --input model_files/unimo_base_en_paddle --output /tmp/unimo_base_en_legacy
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"; [ -x "$PY" ] || PY=python
exec "$PY" -m unimo.convert export-legacy "$@"
