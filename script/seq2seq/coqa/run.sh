#!/usr/bin/env bash
# CoQA as dialog generation, evaluated on dev: bash script/seq2seq/coqa/run.sh [KEY=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/seq2seq/coqa/conf.yaml" coqa "$@"
