#!/usr/bin/env bash
# UNIMO pre-training on the demo world, tiny model on CPU:  bash script/pretrain/demo/run.sh [KEY=value ...]
# Builds the demo data (script/prepare_demo_data.sh) and the CMCL rewrites (python -m preprocess.rewrite) when
# missing. DEMO_DATA=DIR (default demo_data), DEMO_SCENES=N (default 2000). NPROC=2 runs two processes (gloo).
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
DATA="${DEMO_DATA:-demo_data}"
[ -f "$DATA/coco/captions_test.jsonl" ] || bash script/prepare_demo_data.sh "$DATA" "${DEMO_SCENES:-2000}"
if [ ! -f "$DATA/rewrite/pairs_train.jsonl" ]; then
  bash model_files/download_vg_vocab.sh >/dev/null
  mkdir -p "$DATA/rewrite"
  # No machine-translation model offline: no back-translated positives (--positives 0); hard negatives come from
  # TF-IDF retrieval and scene-graph rewriting.
  "$PY" -m preprocess.rewrite --pairs "$DATA/coco/captions_train.jsonl" --output "$DATA/rewrite/pairs_train.jsonl" \
    --positives 0 --negatives 20 --retrieval-negatives 10 --no-progress > "$DATA/rewrite/summary.json"
fi
launch "$ROOT/src/unimo/pretrain/run.py" script/pretrain/demo/conf.yaml pretrain_demo data_dir="$DATA" "$@"
