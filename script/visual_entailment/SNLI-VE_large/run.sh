#!/usr/bin/env bash
# SNLI-VE visual entailment, UNIMO-large: bash script/visual_entailment/SNLI-VE_large/run.sh [KEY=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/visual_entailment/SNLI-VE_large/conf.yaml" snli_ve_large "$@"
