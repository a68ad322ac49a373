#!/usr/bin/env bash
# Run the test suite: creates/refreshes .venv (runtime + test deps) and .venv-oracle (torch + transformers, used only
# as an independent reference by tests/oracle/*), then pytest. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source "$ROOT/script/setup_env.sh"

ORACLE="$ROOT/.venv-oracle"
ostamp="$ORACLE/.oracle.sha"
owant=$(sha256sum "$ROOT/tests/oracle/requirements.txt" | cut -d' ' -f1)
if [ ! -x "$ORACLE/bin/python" ] || [ "$(cat "$ostamp" 2>/dev/null)" != "$owant" ]; then
  echo "[test] building the oracle venv $ORACLE (torch CPU wheel from the local cache + transformers)"
  "${PYTHON:-python3}" -m venv "$ORACLE"
  "$ORACLE/bin/pip" install -q --disable-pip-version-check -r "$ROOT/tests/oracle/requirements.txt" 2>&1 \
    | grep -v "^WARNING: Location" || true
  "$ORACLE/bin/python" -c "import torch, transformers" && echo "$owant" > "$ostamp"
fi

set +e
"$ROOT/.venv/bin/python" -m pytest "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then echo "[test] pytest collected no tests" >&2; exit 1; fi
exit $rc
