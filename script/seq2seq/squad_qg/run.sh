#!/usr/bin/env bash
# SQuAD question generation fine-tuning + beam-search evaluation: bash script/seq2seq/squad_qg/run.sh [KEY=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/seq2seq/squad_qg/conf.yaml" squad_qg "$@"
