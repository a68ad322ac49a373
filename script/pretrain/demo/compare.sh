#!/usr/bin/env bash
# CMCL ablations on the demo world (each a 300-step run of run.sh, ~2-8 min on 2 CPU cores), then one summary:
#   bash script/pretrain/demo/compare.sh [OUT=demo_output/pretrain_compare] [KEY=value ...]
# Runs: full (conf.yaml: CMCL + 20 own hard negatives), no_cmcl (cmcl_weight=0), no_hard_negatives
# (cmcl_negatives=0: in-batch negatives only), shared_hard_negatives (every image against every pair's rewrites).
# Writes OUT/summary.json: zero-shot retrieval by CMCL similarity on the held-out test images + first/last losses.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
OUT="${1:-demo_output/pretrain_compare}"; shift || true
cd "$ROOT"
declare -A RUNS=([full]="" [no_cmcl]="cmcl_weight=0" [no_hard_negatives]="cmcl_negatives=0"
                 [shared_hard_negatives]="cmcl_share_negatives=true")
for name in full no_cmcl no_hard_negatives shared_hard_negatives; do
  [ -f "$OUT/$name/results.json" ] && continue
  # shellcheck disable=SC2086
  LOG_DIR="$OUT/log_$name" bash "$HERE/run.sh" output_dir="$OUT/$name" disable_tqdm=true ${RUNS[$name]} "$@"
done
"$ROOT/.venv/bin/python" - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
summary = {}
for name in ("full", "no_cmcl", "no_hard_negatives", "shared_hard_negatives"):
    r = json.load(open(os.path.join(out, name, "results.json")))
    ret = r["retrieval"] or {}
    summary[name] = {"retrieval": {k: ret.get(k) for k in ("avg_recall@1", "img_recall@1", "cap_recall@1",
                                                          "img_recall@5", "cap_recall@5", "avg_recall@10",
                                                          "chance_recall@1", "num_images", "num_captions")},
                     "losses_first": r["losses"]["first"], "losses_last": r["losses"]["last"],
                     "train_seconds": r["train_seconds"]}
tmp = os.path.join(out, "summary.json.tmp")
with open(tmp, "w") as f:
    json.dump(summary, f, indent=1)
os.replace(tmp, os.path.join(out, "summary.json"))
print(json.dumps({k: v["retrieval"]["avg_recall@1"] for k, v in summary.items()}))
PY
