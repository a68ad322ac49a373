#!/usr/bin/env bash
# Build the embedded demo world and convert it with the SAME converters a user runs on COCO / VQA / SNLI-VE /
# Flickr30k:   bash script/prepare_demo_data.sh [OUT_DIR=demo_data] [NUM_SCENES=2000] [SEED=0]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/demo_data}"; N="${2:-2000}"; SEED="${3:-0}"
PY="${PY:-$ROOT/.venv/bin/python}"
cd "$ROOT"
# a world from an older generator version (other features / texts) or of another size is rebuilt, with its conversions
want="$(cd "$ROOT" && "$PY" -c 'from preprocess.demo_world import WORLD_VERSION; print(WORLD_VERSION)' 2>/dev/null)"
have="$("$PY" -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["version"], m["options"]["num_scenes"], m["seed"])' \
  "$OUT/world/manifest.json" 2>/dev/null || true)"
if [ -f "$OUT/world/manifest.json" ] && [ "$have" != "$want $N $SEED" ]; then
  echo "demo world in $OUT is '$have' (version scenes seed), wanted '$want $N $SEED': rebuilding"
  rm -rf "$OUT/world" "$OUT/coco" "$OUT/flickr" "$OUT/vqa" "$OUT/snli_ve" "$OUT/rewrite"
fi
if [ ! -f "$OUT/world/manifest.json" ]; then
  "$PY" -m preprocess.demo_world --output "$OUT/world" --seed "$SEED" --num-scenes "$N" --no-progress --overwrite
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
