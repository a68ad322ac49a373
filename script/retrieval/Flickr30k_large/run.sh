#!/usr/bin/env bash
# Flickr30k image-text retrieval, UNIMO-large: bash script/retrieval/Flickr30k_large/run.sh [KEY=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/retrieval/Flickr30k_large/conf.yaml" flickr30k_large "$@"
