#!/usr/bin/env bash
# SQuAD question generation, UNIMO-large: bash script/seq2seq/squad_qg_large/run.sh [KEY=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/seq2seq/squad_qg_large/conf.yaml" squad_qg_large "$@"
