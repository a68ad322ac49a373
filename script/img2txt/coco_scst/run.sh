#!/usr/bin/env bash
# COCO captioning, SCST stage (CIDEr-D self-critical training) from the cross-entropy stage's best checkpoint:
#   bash script/img2txt/coco/run.sh && bash script/img2txt/coco_scst/run.sh [KEY=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/img2txt/coco_scst/conf.yaml" coco_scst "$@"
