#!/usr/bin/env bash
# SST-2 fine-tuning: bash script/classification/SST-2/run.sh [KEY=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/classification/SST-2/conf.yaml" sst2 "$@"
