#!/usr/bin/env bash
# CoLA fine-tuning (Matthews correlation): bash script/classification/CoLA/run.sh [KEY=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/classification/CoLA/conf.yaml" cola "$@"
