#!/usr/bin/env bash
# VQA v2 (not in the official release): bash script/vqa/VQAv2/run.sh [KEY=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/vqa/VQAv2/conf.yaml" vqav2 "$@"
