#!/usr/bin/env bash
# CMCL ablations on the demo world: pre-train each variant (run.sh, 300 steps), fine-tune retrieval and visual
# entailment from it (script/demo/{retrieval,ve}.yaml), then one summary:
#   bash script/pretrain/demo/compare.sh [OUT] [KEY=value ...]        (OUT default demo_output/pretrain_compare)
# COMPARE_RUNS="dual joint ..." picks variants (default: all below); COMPARE_FINETUNE=0 skips the fine-tunings.
# Variants (paper section 3.1 defines CMCL on the joint sequence; equation 1 has no in-batch negatives):
#   joint                  the paper's: one joint pass per (image, candidate text), W+ and the rewritten W- only
#   joint_in_batch         joint + the other pairs' captions as negatives (cmcl_in_batch_negatives; ~7x the passes)
#   dual                   separate image / text encodings, in-batch negatives + own rewrites (conf.yaml)
#   dual_no_hard_negatives dual with in-batch negatives only (cmcl_negatives=0)
#   no_cmcl                cmcl_weight=0 (the other losses of the pair stream stay)
# Writes OUT/summary.json: per variant the zero-shot retrieval on the held-out images (scored as trained: joint
# or dual), the fine-tuned Flickr-style retrieval avg R@1 and SNLI-VE-style accuracy, first/last losses, seconds.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
OUT="${1:-demo_output/pretrain_compare}"; shift || true
cd "$ROOT"
source "$ROOT/script/common.sh"
DATA="${DEMO_DATA:-demo_data}"
STORE="$DATA/world/features/store"
declare -A RUNS=([joint]="cmcl_encoding=joint cmcl_head=pooler"
                 [joint_in_batch]="cmcl_encoding=joint cmcl_head=pooler cmcl_in_batch_negatives=true"
                 [dual]="" [dual_no_hard_negatives]="cmcl_negatives=0" [no_cmcl]="cmcl_weight=0")
NAMES="${COMPARE_RUNS:-joint joint_in_batch dual dual_no_hard_negatives no_cmcl}"
for name in $NAMES; do
  [ -n "${RUNS[$name]+x}" ] || { echo "compare.sh: error: unknown variant $name (known: ${!RUNS[*]})" >&2; exit 2; }
done
for name in $NAMES; do
  if [ ! -f "$OUT/$name/results.json" ]; then
    # shellcheck disable=SC2086
    DEMO_DATA="$DATA" LOG_DIR="$OUT/log_$name" bash "$HERE/run.sh" output_dir="$OUT/$name" disable_tqdm=true \
      ${RUNS[$name]} "$@"
  fi
  [ "${COMPARE_FINETUNE:-1}" = 0 ] && continue
  for task in retrieval ve; do
    data=flickr; [ "$task" = ve ] && data=snli_ve
    [ -f "$OUT/${name}_$task/results.json" ] && continue
    LOG_DIR="$OUT/log_${name}_$task" run_finetune "script/demo/$task.yaml" "compare_${name}_$task" \
      data_dir="$DATA/$data" feature_store="$STORE" init_checkpoint="$OUT/$name/final" \
      output_dir="$OUT/${name}_$task" disable_tqdm=true
  done
done
"$PY" - "$OUT" $NAMES <<'PY'
import json, os, sys
out, names = sys.argv[1], sys.argv[2:]


def load(path):
    return json.load(open(path)) if os.path.isfile(path) else None


summary = {}
for name in names:
    r = load(os.path.join(out, name, "results.json"))
    ret = r["retrieval"] or {}
    row = {"zero_shot": {k: ret.get(k) for k in ("encoding", "avg_recall@1", "img_recall@1", "cap_recall@1",
                                                 "avg_recall@10", "chance_recall@1", "num_images", "num_captions")},
           "losses_first": r["losses"]["first"], "losses_last": r["losses"]["last"],
           "pretrain_seconds": r["train_seconds"]}
    for task, key in (("retrieval", "avg_recall@1"), ("ve", "acc")):
        f = load(os.path.join(out, f"{name}_{task}", "results.json"))
        if f is not None:
            split = "test" if "test" in f["metrics"] else "dev"
            row[f"finetuned_{task}"] = {"split": split, key: f["metrics"][split].get(key)}
    summary[name] = row
tmp = os.path.join(out, "summary.json.tmp")
with open(tmp, "w") as fh:
    json.dump(summary, fh, indent=1)
os.replace(tmp, os.path.join(out, "summary.json"))
print(json.dumps({k: {"zero_shot_R@1": v["zero_shot"]["avg_recall@1"],
                      "retrieval_R@1": (v.get("finetuned_retrieval") or {}).get("avg_recall@1"),
                      "ve_acc": (v.get("finetuned_ve") or {}).get("acc")} for k, v in summary.items()}))
PY
