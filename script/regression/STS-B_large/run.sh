#!/usr/bin/env bash
# STS-B regression, UNIMO-mnli-large: bash script/regression/STS-B_large/run.sh [KEY=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/regression/STS-B_large/conf.yaml" stsb_large "$@"
