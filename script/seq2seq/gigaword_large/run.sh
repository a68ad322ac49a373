#!/usr/bin/env bash
# Gigaword headline generation, UNIMO-large: bash script/seq2seq/gigaword_large/run.sh [KEY=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/seq2seq/gigaword_large/conf.yaml" gigaword_large "$@"
