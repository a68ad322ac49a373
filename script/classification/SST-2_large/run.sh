#!/usr/bin/env bash
# SST-2 fine-tuning, UNIMO-large: bash script/classification/SST-2_large/run.sh [KEY=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/classification/SST-2_large/conf.yaml" sst2_large "$@"
