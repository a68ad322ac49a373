#!/usr/bin/env bash
# SNLI-VE visual entailment: bash script/visual_entailment/SNLI-VE/run.sh [KEY=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/visual_entailment/SNLI-VE/conf.yaml" snli_ve "$@"
