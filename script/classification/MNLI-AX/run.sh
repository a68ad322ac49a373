#!/usr/bin/env bash
# MNLI fine-tuning (dev matched/mismatched; test m/mm + AX diagnostic predictions): bash script/classification/MNLI-AX/run.sh [KEY=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/classification/MNLI-AX/conf.yaml" mnli "$@"
