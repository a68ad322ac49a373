#!/usr/bin/env bash
# Flickr30k image-text retrieval: bash script/retrieval/Flickr30k/run.sh [KEY=value ...]
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
run_finetune "script/retrieval/Flickr30k/conf.yaml" flickr30k "$@"
