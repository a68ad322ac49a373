"""Pre-training throughput of the UNIMO base model on CPU, per stream and with the three streams mixed.

One training step = collate + forward + backward + AdamW (global-norm clip 1.0), the pre-training model with all
its heads (CMCL encoding joint, the paper's, with the official poolers as its FC). Streams measured alone (a model
built for that stream only) and jointly (every step trains all three;
``mixing: joint``). Short sequences so that CPU steps take seconds: text 64 tokens, captions 24, 36 boxes (+ the
[IMG] row), 8 rewritten hard negatives per pair; per step ``--items`` texts, images and pairs.

Reports, per configuration: median step seconds, data seconds (item preparation + collation, included in the step),
and samples/s of each stream; ``mixing_overhead`` = joint step / (sum of the three single-stream steps) - 1 (the
cost of mixing; negative = one optimizer step over all streams is cheaper than three). ``cmcl_only``: the pair stream
with CMCL alone, joint (items x (caption + 2 positives + 8 negatives) joint passes) vs dual (items image passes + one
pass per distinct text), and their ratio ``cmcl_joint_over_dual``.

usage: python bench/bench_pretrain.py [--steps 3] [--items 4] [--data DEMO_DATA] [--config base|tiny]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import REPO, SHARED, emit, peak_rss_mb

import paddle

from unimo import UnimoConfig, UnimoTokenizer
from unimo.pretrain.data import PairCorpus, PretrainCollator, PretrainDataConfig, PretrainDataset, TextCorpus, \
    load_image_ids
from unimo.pretrain.model import UnimoForPretraining
from unimo.reader.image_batch import ImageBatcher

STREAM_SETS = {"text": ["text"], "image": ["image"], "pair": ["pair"], "joint": ["text", "image", "pair"]}


def prepare_data(out: Path) -> Path:
    """A 120-scene demo world + rewrites (a few seconds) when no --data is given."""
    subprocess.run(["bash", str(REPO / "script" / "prepare_demo_data.sh"), str(out), "120"], check=True,
                   capture_output=True, cwd=REPO)
    (out / "rewrite").mkdir(exist_ok=True)
    subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "preprocess.rewrite", "--pairs",
                    str(out / "coco" / "captions_train.jsonl"), "--output", str(out / "rewrite" / "pairs_train.jsonl"),
                    "--positives", "0", "--negatives", "20", "--vocab-dir", str(SHARED / "data" / "vg_1600_400_20"),
                    "--no-progress"], check=True, capture_output=True, cwd=REPO)
    return out


def run_config(name: str, data: Path, tokenizer, model_config: UnimoConfig, items: int, steps: int,
               cmcl_encoding: str = "joint", vl_weight: float = 1.0) -> dict:
    streams = STREAM_SETS[name]
    per = {s: (1 if s in streams else 0) for s in ("text", "image", "pair")}
    cfg = PretrainDataConfig(max_text_len=64, max_caption_len=24, max_img_len=37, fixed_boxes=36, cmcl_positives=0,
                             cmcl_caption_positives=2, cmcl_negatives=8, seed=1, text_per_item=per["text"],
                             image_per_item=per["image"], pair_per_item=per["pair"])
    images = ImageBatcher(str(data / "world" / "features" / "store"), max_img_len=37, fixed_boxes=36)
    ds = PretrainDataset(
        cfg, tokenizer, (steps + 1) * items,
        text=TextCorpus(str(data / "world" / "corpus" / "text_corpus.txt")) if per["text"] else None,
        images=images, image_ids=load_image_ids(images.store) if per["image"] else None,
        pairs=PairCorpus(str(data / "rewrite" / "pairs_train.jsonl"), store=images.store) if per["pair"] else None,
        items_per_step=items)
    collate = PretrainCollator()
    paddle.seed(0)
    model = UnimoForPretraining(model_config, streams=streams, cmcl_encoding=cmcl_encoding, cmcl_head="pooler",
                                vl_weight=vl_weight)
    model.train()
    opt = paddle.optimizer.AdamW(5e-5, parameters=model.parameters(), weight_decay=0.01,
                                 grad_clip=paddle.nn.ClipGradByGlobalNorm(1.0))
    step_s, data_s, shapes = [], [], {}
    for step in range(steps + 1):  # step 0 warms up (allocator, kernels)
        t0 = time.perf_counter()
        batch = collate([ds[i] for i in range(step * items, (step + 1) * items)])
        t1 = time.perf_counter()
        total, _ = model(**{k: paddle.to_tensor(v) for k, v in batch.items()})
        total.backward()
        opt.step()
        opt.clear_grad()
        float(total)
        t2 = time.perf_counter()
        if step:
            step_s.append(t2 - t0)
            data_s.append(t1 - t0)
        shapes = {k: list(v.shape) for k, v in batch.items() if k.endswith(("input_ids", "features"))}
    med = statistics.median(step_s)
    out = {"streams": streams, "cmcl_encoding": cmcl_encoding, "vl_weight": vl_weight, "step_s": round(med, 3),
           "data_s": round(statistics.median(data_s), 3),
           "samples_per_s": {s: round(items / med, 3) for s in streams}, "shapes": shapes}
    del model, opt
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--items", type=int, default=4, help="examples per stream and step")
    p.add_argument("--data", help="demo data folder (script/prepare_demo_data.sh + rewrites); default: build one")
    p.add_argument("--config", choices=["base", "tiny"], default="base")
    args = p.parse_args()
    tokenizer = UnimoTokenizer.from_pretrained(str(SHARED / "data" / "unimo_dict"))
    model_config = UnimoConfig.from_json_file(str(REPO / "model_files" / "config" / f"unimo_{args.config}_en.json"))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else prepare_data(Path(tmp) / "demo")
        results = {name: run_config(name, data, tokenizer, model_config, args.items, args.steps)
                   for name in ("text", "image", "pair", "joint")}
        # CMCL alone (vl_weight 0): the paper's joint encoding (one pass per image x candidate text) vs dual
        cmcl = {enc: run_config("pair", data, tokenizer, model_config, args.items, args.steps, cmcl_encoding=enc,
                                vl_weight=0.0) for enc in ("joint", "dual")}
    single = sum(results[s]["step_s"] for s in ("text", "image", "pair"))
    emit("pretrain", {
        "model": args.config, "device": "cpu", "items_per_stream_and_step": args.items, "steps": args.steps,
        "lengths": {"text": 64, "caption": 24, "image_rows": 37, "hard_negatives_per_pair": 8,
                    "caption_positives_per_pair": 2},
        "configs": results,
        "sum_single_stream_step_s": round(single, 3),
        "joint_step_s": results["joint"]["step_s"],
        "mixing_overhead": round(results["joint"]["step_s"] / single - 1.0, 3),
        "cmcl_only": cmcl,
        "cmcl_joint_over_dual": round(cmcl["joint"]["step_s"] / cmcl["dual"]["step_s"], 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    })


if __name__ == "__main__":
    main()
