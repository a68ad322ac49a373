#!/usr/bin/env bash
# CoQA conversational QA, UNIMO-large: bash script/seq2seq/coqa_large/run.sh [KEY=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/seq2seq/coqa_large/conf.yaml" coqa_large "$@"
