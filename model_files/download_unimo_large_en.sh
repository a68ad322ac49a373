#!/usr/bin/env bash
# Fetch the released unimo_large_en checkpoint into model_files/unimo_large_en/, then print the convert command.
# Official URL: https://unimo.bj.bcebos.com/model/unimo_large_en.tar.gz
# Options via environment (mirror, timeout, expected sha256): see script/convert/download_legacy.sh.
set -euo pipefail
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/script/convert/download_legacy.sh" unimo_large_en
