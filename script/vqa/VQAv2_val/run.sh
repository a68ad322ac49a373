#!/usr/bin/env bash
# VQA v2, trained on train, evaluated on val: bash script/vqa/VQAv2_val/run.sh [KEY=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/vqa/VQAv2_val/conf.yaml" vqav2_val "$@"
