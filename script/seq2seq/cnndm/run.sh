#!/usr/bin/env bash
# CNN/DailyMail summarisation fine-tuning + beam-search evaluation: bash script/seq2seq/cnndm/run.sh [KEY=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/seq2seq/cnndm/conf.yaml" cnndm "$@"
