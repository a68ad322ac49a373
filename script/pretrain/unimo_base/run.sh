#!/usr/bin/env bash
# UNIMO-base pre-training (paper settings): bash script/pretrain/unimo_base/run.sh [KEY=value ...]
# Multi-GPU: CUDA_VISIBLE_DEVICES=0,1,...,7 bash script/pretrain/unimo_base/run.sh; CPU processes: NPROC=N.
# Resume: resume_from_checkpoint=output/pretrain_unimo_base/checkpoint-N
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
launch "$ROOT/src/unimo/pretrain/run.py" script/pretrain/unimo_base/conf.yaml pretrain_unimo_base "$@"
