#!/usr/bin/env bash
# MNLI fine-tuning, UNIMO-large: bash script/classification/MNLI-AX_large/run.sh [KEY=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/classification/MNLI-AX_large/conf.yaml" mnli_large "$@"
