#!/usr/bin/env bash
# Fetch the released unimo_base_en checkpoint into model_files/unimo_base_en/, then print the convert command.
# Official URL: https://unimo.bj.bcebos.com/model/unimo_base_en.tar.gz
# Options via environment (mirror, timeout, expected sha256): see script/convert/download_legacy.sh.
set -euo pipefail
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/script/convert/download_legacy.sh" unimo_base_en
