#!/usr/bin/env bash
# VQA v2 (not in the official release), UNIMO-large: bash script/vqa/VQAv2_large/run.sh [KEY=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/vqa/VQAv2_large/conf.yaml" vqav2_large "$@"
