#!/usr/bin/env bash
# CoLA fine-tuning, UNIMO-large: bash script/classification/CoLA_large/run.sh [KEY=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/classification/CoLA_large/conf.yaml" cola_large "$@"
