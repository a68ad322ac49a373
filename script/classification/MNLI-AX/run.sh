#!/usr/bin/env bash
# MNLI fine-tuning: bash script/classification/MNLI-AX/run.sh [KEY=value ...] (dev m/mm; test m/mm + AX predictions)
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/classification/MNLI-AX/conf.yaml" mnli "$@"
