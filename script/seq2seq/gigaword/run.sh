#!/usr/bin/env bash
# Gigaword fine-tuning + beam-search evaluation: bash script/seq2seq/gigaword/run.sh [KEY=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/seq2seq/gigaword/conf.yaml" gigaword "$@"
