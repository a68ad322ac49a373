#!/usr/bin/env bash
# CNN/DailyMail summarisation, UNIMO-large: bash script/seq2seq/cnndm_large/run.sh [KEY=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/seq2seq/cnndm_large/conf.yaml" cnndm_large "$@"
