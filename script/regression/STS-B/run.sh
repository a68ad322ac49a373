#!/usr/bin/env bash
# STS-B regression from the UNIMO-mnli checkpoint: bash script/regression/STS-B/run.sh [KEY=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/regression/STS-B/conf.yaml" stsb "$@"
