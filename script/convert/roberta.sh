#!/usr/bin/env bash
# HuggingFace RoBERTa dir (config.json + model.safetensors) -> UNIMO save_pretrained dir (image layers fresh).
#   bash script/convert/roberta.sh --input /path/to/roberta-base --output model_files/unimo_from_roberta_base
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"; [ -x "$PY" ] || PY=python
exec "$PY" -m unimo.convert roberta "$@"
