#!/usr/bin/env bash
# COCO captioning (Karpathy split), fine-tuning + beam search + COCO metrics: bash script/img2txt/coco/run.sh [KEY=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/img2txt/coco/conf.yaml" coco "$@"
