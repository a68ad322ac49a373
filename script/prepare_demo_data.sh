#!/usr/bin/env bash
# Build the embedded demo world and convert it with the SAME converters a user runs on COCO / VQA / SNLI-VE /
# Flickr30k:   bash script/prepare_demo_data.sh [OUT_DIR=demo_data] [NUM_SCENES=2000] [SEED=0]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/demo_data}"; N="${2:-2000}"; SEED="${3:-0}"
PY="${PY:-$ROOT/.venv/bin/python}"
cd "$ROOT"
if [ ! -f "$OUT/world/manifest.json" ]; then
  "$PY" -m preprocess.demo_world --out "$OUT/world" --seed "$SEED" --num-scenes "$N" --no-progress --overwrite
fi
W="$OUT/world"
conv() { "$PY" -m preprocess.datasets "$@" --no-progress > /dev/null; }
[ -f "$OUT/coco/captions_train.jsonl" ] || conv coco-karpathy --input "$W/captions/dataset_coco.json" --output "$OUT/coco"
[ -f "$OUT/flickr/retrieval_test.jsonl" ] || conv flickr30k --input "$W/captions/dataset_flickr30k.json" \
  --output "$OUT/flickr" --image-id-from cocoid
[ -f "$OUT/vqa/answer_vocab.json" ] || conv vqa-v2 --input "$W/vqa" --output "$OUT/vqa" --min-count 1
[ -f "$OUT/snli_ve/ve_train.jsonl" ] || conv snli-ve --input "$W/snli_ve/snli_ve_train.jsonl" \
  "$W/snli_ve/snli_ve_dev.jsonl" "$W/snli_ve/snli_ve_test.jsonl" --output "$OUT/snli_ve"
echo "demo data ready in $OUT (feature store: $W/features/store)"
