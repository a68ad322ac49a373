"""Reader throughput: captioning batches (batch 32, images with 100 boxes x 2048-d features from the canonical
store, text tokenised and masked) in samples/s on ONE core, against the base model's training step on the same
batch size, to show the reader is never the bottleneck (ratio = reader time per batch / model step time).

usage: OMP_NUM_THREADS=1 python bench/bench_reader.py [--images 400] [--model-step-s S]
  --model-step-s: a measured base-model step for batch 32 (default: 4 x the B=8 step of bench_model_step.json)
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

from common import REPO, emit

import numpy as np

from unimo import UnimoTokenizer
from unimo.finetune.tasks.generation import CaptionTask
from unimo.reader.features import FeatureStoreWriter, RegionFeatures


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--model-step-s", type=float, default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        store = f"{tmp}/store"
        with FeatureStoreWriter(store, feature_dim=2048, num_classes=1601) as w:
            for i in range(args.images):
                xy = rng.uniform(0, 300, (100, 2)).astype(np.float32)
                boxes = np.concatenate([xy, xy + rng.uniform(10, 200, (100, 2)).astype(np.float32)], 1)
                boxes = np.minimum(boxes, np.array([640, 480, 640, 480], np.float32))  # inside the image
                probs = rng.dirichlet(np.ones(1601) * 0.05, 100).astype(np.float32)
                w.add(RegionFeatures(image_id=str(i), image_w=640, image_h=480, boxes=boxes,
                                     features=rng.random((100, 2048), dtype=np.float32), cls_prob=probs))
        words = "a man riding a red bike down the street next to a small dog on a sunny day".split()
        with open(f"{tmp}/captions.jsonl", "w") as f:
            for i in range(args.images * 5):
                cap = " ".join(rng.choice(words, size=int(rng.integers(8, 16))))
                f.write(json.dumps({"image_id": str(i % args.images), "caption": cap, "caption_id": i}) + "\n")
        tok = UnimoTokenizer.from_pretrained(str(REPO / "model_files" / "dict"))
        cfg = CaptionTask.config_class.from_values(task="img2txt", train_file=f"{tmp}/captions.jsonl",
                                                   feature_store=store, batch_size=32)
        task = CaptionTask(cfg, tok, tmp)
        examples = task.load("train")
        order = rng.permutation(len(examples))
        task.collate([examples[j] for j in order[:32]])  # open the store
        t0 = time.perf_counter()
        for b in range(args.batches):
            idx = order[(b * 32) % len(order):][:32]
            batch = task.collate([examples[j] for j in idx])
        per_batch = (time.perf_counter() - t0) / args.batches
    step = args.model_step_s
    if step is None:
        try:
            step = 4 * json.loads((REPO / "bench/results/model_step.json").read_text())["paddle_step_s"]
        except FileNotFoundError:
            step = None
    emit("reader", {"batch_size": 32, "boxes_per_image": 100, "feature_dim": 2048,
                    "image_rows": int(batch["image_features"].shape[1]), "reader_s_per_batch": round(per_batch, 4),
                    "reader_samples_per_s_one_core": round(32 / per_batch, 1),
                    "base_model_step_s_batch32": step,
                    "reader_over_model_step": None if step is None else round(per_batch / step, 4),
                    "note": "image LRU cache cold: each image read once per 5 captions; store pages warm"})


if __name__ == "__main__":
    main()
