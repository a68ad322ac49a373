"""Throughput of the sharded pre-training data preparation, and its projection to Table 1 on K machines x C cores.

    python bench/bench_preprocess.py [--images 24] [--captions 20000] [--machines 1,8,32] [--cores 16]

Measured on one core each (OMP/OpenCV threads 1): classic region extraction (images/s/core, synthetic
640x480 photos-like images, 36 boxes, 2048-d), dump conversion (BUTD TSV -> store, images/s/core), the merge of
shard stores, and the caption rewriting of ``preprocess.rewrite`` (captions/s/core: 100 scene-graph negatives +
10 TF-IDF negatives per caption, no back-translation -- that needs a MarianMT model). A shard's fixed start-up
cost is measured both ways the issue asks: re-reading the pairs and re-fitting the TF-IDF index, or loading the
index saved once by ``python -m preprocess.rewrite index``. Retrieval cost per query grows with the number of
captions (it is the summed document frequency of the query's words), so it is timed on sampled queries at two
index sizes and extended to 9.6M by the power law between them (the method of bench/bench_rewrite.py).
Result JSON: bench/results/preprocess.json (and stdout).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
from common import REPO, SHARED, emit, peak_rss_mb  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

cv2.setNumThreads(1)

# Table 1 of the paper: image-text pairs (captions) per source; images are the distinct images behind them
# (COCO: Karpathy train+restval images; VG: its 108,077 images; CC and SBU: one image per caption) + 300K images.
TABLE1_CAPTIONS = {"COCO": 533_000, "VG": 5_060_000, "CC": 3_000_000, "SBU": 990_000}
TABLE1_IMAGES = {"COCO": 113_287, "VG": 108_077, "CC": 3_000_000, "SBU": 990_000, "Images": 300_000}


def photo_like(seed: int, h: int = 480, w: int = 640) -> np.ndarray:
    """A textured image with a few shapes (the classic backend's cost depends on edges/texture, not content)."""
    rng = np.random.default_rng(seed)
    img = np.broadcast_to(rng.integers(60, 200, 3).astype(np.float32), (h, w, 3)).copy()
    img += np.linspace(-40, 40, w, dtype=np.float32)[None, :, None]
    img += cv2.GaussianBlur(rng.normal(0, 30, (h, w, 3)).astype(np.float32), (0, 0), 5)
    for _ in range(int(rng.integers(4, 9))):
        c = tuple(int(v) for v in rng.integers(0, 255, 3))
        x, y = int(rng.integers(20, w - 60)), int(rng.integers(20, h - 60))
        if rng.random() < 0.5:
            cv2.circle(img, (x, y), int(rng.integers(12, 60)), c, -1)
        else:
            cv2.rectangle(img, (x, y), (x + int(rng.integers(20, 120)), y + int(rng.integers(20, 120))), c, -1)
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def bench_extraction(tmp: Path, n_images: int) -> dict:
    from preprocess.extract_features import extract_directory
    from preprocess.features import merge

    images = tmp / "images"
    images.mkdir()
    for i in range(n_images):
        cv2.imwrite(str(images / f"{i:06d}.jpg"), photo_like(i), [cv2.IMWRITE_JPEG_QUALITY, 90])
    one = extract_directory(images, tmp / "one", backend="classic", feature_dim=2048, progress=False)
    shard_seconds = []
    for i in range(2):
        s = extract_directory(images, tmp / "shards", backend="classic", feature_dim=2048, progress=False,
                              shard=(i, 2))
        shard_seconds.append(s["seconds"])
    merged = merge(str(tmp / "shards"), str(tmp / "merged"), progress=False)
    return {"images": n_images, "size": "640x480 jpg", "boxes_per_image": one["boxes_per_image"],
            "seconds": one["seconds"], "images_per_second_per_core": round(n_images / one["seconds"], 2),
            "extract_ms_per_image": one["extract_ms_per_image"],
            "two_shards_seconds": shard_seconds, "merge_seconds": merged["seconds"],
            "merge_images_per_second": round(n_images / merged["seconds"], 1),
            "store_mb": round(sum(f.stat().st_size for f in (tmp / "one").iterdir()) / 1e6, 1)}


def bench_convert(tmp: Path, n_images: int) -> dict:
    from preprocess.features import convert
    from unimo.reader.features import RegionFeatures, write_butd_tsv

    rng = np.random.default_rng(0)
    recs = []
    for i in range(n_images):
        xy = rng.uniform(0, 300, (36, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(10, 300, (36, 2))], 1)
        recs.append(RegionFeatures(str(i), 640, 640, boxes, rng.gamma(1.0, 1.0, (36, 2048)).astype(np.float32),
                                   cls_prob=None, obj_conf=rng.uniform(0.2, 1, 36).astype(np.float32)))
    write_butd_tsv(tmp / "dump.tsv", recs)
    one = convert(str(tmp / "dump.tsv"), "butd", str(tmp / "conv"), progress=False)
    shard = convert(str(tmp / "dump.tsv"), "butd", str(tmp / "conv_shards"), progress=False, shard=(0, 4))
    return {"images": n_images, "boxes_per_image": 36, "seconds": one["seconds"],
            "images_per_second_per_core": round(n_images / one["seconds"], 1),
            "one_of_4_shards_seconds": shard["seconds"],
            "note": "every shard reads every line (to learn its image id) but decodes only its own images"}


def bench_rewrite(tmp: Path, n: int, sample_sizes: list[int], sample: int) -> dict:
    from bench_rewrite import synth_captions
    from preprocess.rewrite.data_io import read_pairs
    from preprocess.rewrite.pipeline import RewriteConfig, run
    from preprocess.rewrite.retrieval import CaptionIndex
    from preprocess.rewrite.saved_index import index_options, load_index, save_index

    vocab = SHARED / "data" / "vg_1600_400_20"
    imgs, caps = synth_captions(n, vocab)
    pairs = tmp / "pairs.jsonl"
    with pairs.open("w", encoding="utf-8") as fh:
        for k, (i, c) in enumerate(zip(imgs, caps)):
            fh.write(json.dumps({"image_id": i, "caption_id": str(k), "caption": c}) + "\n")
    cfg = dict(pairs=str(pairs), positives=0, negatives=100, retrieval_negatives=10, vocab_dir=str(vocab),
               progress=False)
    full = run(RewriteConfig(output=str(tmp / "rw.jsonl"), **cfg))
    # a shard's fixed cost: rebuild (read pairs + fit) vs load the saved index
    t = time.perf_counter()
    p, _ = read_pairs(pairs)
    CaptionIndex.build([x.image_id for x in p], [x.caption for x in p], tfidf=True)
    rebuild = time.perf_counter() - t
    save = save_index(str(pairs), str(tmp / "idx"))
    t = time.perf_counter()
    load_index(str(tmp / "idx"), index_options(1.0, None, False))
    load = time.perf_counter() - t
    shard = run(RewriteConfig(output=str(tmp / "rw_shards"), shard=(0, 4), **cfg))
    # retrieval per query at larger indexes (sampled queries), for the 9.6M extrapolation
    trend = []
    for size in sample_sizes:
        si, sc = synth_captions(size, vocab, seed=2)
        index = CaptionIndex.build(si, sc, tfidf=True)
        q = np.sort(np.random.default_rng(1).choice(size, sample, replace=False))
        t = time.perf_counter()
        index.retrieve(q, 10)
        trend.append({"captions": size, "retrieval_ms_per_query": round(1000 * (time.perf_counter() - t) / sample, 4)})
        del index, si, sc
    a, b = trend[-2], trend[-1]
    exponent = math.log(b["retrieval_ms_per_query"] / a["retrieval_ms_per_query"]) / math.log(b["captions"] / a["captions"])
    return {"captions": n, "pipeline_seconds": full["seconds"],
            "captions_per_second_per_core": round(n / full["seconds"], 1),
            "one_of_4_shards_seconds": shard["seconds"],
            "shard_start": {"rebuild_seconds": round(rebuild, 3), "load_saved_index_seconds": round(load, 3),
                            "saved_index_mb": round(sum(f.stat().st_size for f in (tmp / "idx").iterdir()) / 1e6, 1),
                            "tfidf_nnz": save["tfidf_nnz"]},
            "retrieval_trend": trend, "per_query_cost_exponent": round(exponent, 3),
            "peak_rss_mb": round(peak_rss_mb(), 1)}


def project(ext: dict, rw: dict, machines: list[int], cores: int) -> dict:
    images = sum(TABLE1_IMAGES.values())
    captions = sum(TABLE1_CAPTIONS.values())
    n = rw["captions"]
    # per caption: the rest of the pipeline (scene graph, I/O) is linear; retrieval grows by the measured power law
    last = rw["retrieval_trend"][-1]
    ms_query_full = last["retrieval_ms_per_query"] * (captions / last["captions"]) ** rw["per_query_cost_exponent"]
    ms_query_n = last["retrieval_ms_per_query"] * (n / last["captions"]) ** rw["per_query_cost_exponent"]
    ms_other = max(1000 * rw["pipeline_seconds"] / n - ms_query_n - 1000 * rw["shard_start"]["rebuild_seconds"] / n,
                   0.0)
    rewrite_core_h = captions * (ms_query_full + ms_other) / 1000 / 3600
    scale = captions / n
    start_rebuild_s = rw["shard_start"]["rebuild_seconds"] * scale
    start_load_s = rw["shard_start"]["load_saved_index_seconds"] * scale
    extract_core_h = images / ext["images_per_second_per_core"] / 3600
    rows = []
    for k in machines:
        total = k * cores
        rows.append({"machines": k, "cores_per_machine": cores,
                     "extraction_wall_hours": round(extract_core_h / total, 2),
                     "rewriting_wall_hours_saved_index": round((rewrite_core_h * 3600 / total + start_load_s) / 3600,
                                                               2),
                     "rewriting_wall_hours_rebuild_per_shard": round(
                         (rewrite_core_h * 3600 / total + start_rebuild_s) / 3600, 2)})
    return {"images": images, "captions": captions, "image_counts": TABLE1_IMAGES, "caption_counts": TABLE1_CAPTIONS,
            "extraction_core_hours": round(extract_core_h, 1), "rewriting_core_hours": round(rewrite_core_h, 1),
            "retrieval_ms_per_query_at_9.6M": round(ms_query_full, 2),
            "other_ms_per_caption": round(ms_other, 3),
            "shard_start_seconds_at_9.6M": {"rebuild": round(start_rebuild_s, 1), "load_saved_index":
                                            round(start_load_s, 1)},
            "layout": "one shard per machine (--num-shards K --shard I --workers C: the index is shared by the "
                      "forked workers), so a shard's start-up cost is paid once per machine, in parallel",
            "wall_time": rows,
            "not_included": "back-translation positives (MarianMT, GPU), the Faster R-CNN of the paper (GPU) -- "
                            "this is the CPU classic backend -- and tokenising the 54 GB text corpus"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=24, help="images extracted (default: %(default)s)")
    ap.add_argument("--convert-images", type=int, default=300, help="images converted (default: %(default)s)")
    ap.add_argument("--captions", type=int, default=20_000, help="captions rewritten (default: %(default)s)")
    ap.add_argument("--sampled-sizes", default="100000,400000",
                    help="index sizes timed on sampled queries for the per-query trend (default: %(default)s)")
    ap.add_argument("--sample", type=int, default=300, help="queries per sampled size (default: %(default)s)")
    ap.add_argument("--machines", default="1,8,32", help="K values of the projection (default: %(default)s)")
    ap.add_argument("--cores", type=int, default=16, help="C, cores per machine (default: %(default)s)")
    args = ap.parse_args()
    load_start = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="bench_preprocess_"))
    try:
        (tmp / "x").mkdir()
        ext = bench_extraction(tmp / "x", args.images)
        (tmp / "c").mkdir()
        conv = bench_convert(tmp / "c", args.convert_images)
        (tmp / "r").mkdir()
        rw = bench_rewrite(tmp / "r", args.captions, [int(s) for s in args.sampled_sizes.split(",")], args.sample)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit("preprocess", {"load_average_at_start": [round(v, 2) for v in load_start],
                        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
                        "extraction_classic": ext, "convert_butd": conv, "rewrite": rw,
                        "projection_table1": project(ext, rw, [int(k) for k in args.machines.split(",")], args.cores)})


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
