#!/usr/bin/env bash
# COCO captioning (Karpathy split), UNIMO-large: bash script/img2txt/coco_large/run.sh [KEY=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/img2txt/coco_large/conf.yaml" coco_large "$@"
