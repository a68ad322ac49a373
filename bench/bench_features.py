"""Benchmark of the feature pipeline; prints one JSON object.

Measures, on synthetic BUTD data (default 2000 images x 100 boxes x 2048-d, ~2.2 GB of TSV):
  * convert throughput (images/s) of ``preprocess.features convert`` into fp32 and fp16 stores;
  * store random access latency (ms per image): "warm" (pages cached) and "cold-ish" (the store's pages are
    dropped from the page cache with posix_fadvise(DONTNEED) before the pass, so reads hit the disk / host cache);
  * region_inputs cost (ms per image) with the official settings and with the adaptive 10-100 threshold.

    python bench/bench_features.py [--images 2000] [--boxes 100] [--dim 2048] [--reads 300] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `preprocess` lives at the repository root

import unimo  # noqa: E402,F401  (environment setup)
import numpy as np  # noqa: E402

from preprocess.features import convert  # noqa: E402
from unimo.reader.features import FeatureStore, RegionFeatures, region_inputs, write_butd_tsv  # noqa: E402


def synthetic_records(images: int, boxes: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for i in range(images):
        xy = rng.uniform(0, 400, (boxes, 2)).astype(np.float32)
        box = np.concatenate([xy, xy + rng.uniform(8, 200, (boxes, 2)).astype(np.float32)], 1)
        box = np.minimum(box, np.array([640, 480, 640, 480], np.float32))  # inside the 640 x 480 image
        # post-ReLU-like features (non-negative, heavy tail) as BUTD pool5 outputs are
        feats = rng.exponential(0.5, (boxes, dim)).astype(np.float32)
        yield RegionFeatures(str(100000 + i), 640, 480, box, feats)


def drop_cache(store_dir: Path) -> bool:
    if not hasattr(os, "posix_fadvise"):
        return False
    for f in store_dir.iterdir():
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def access_pass(store_dir: Path, ids: list[str], cold: bool) -> dict:
    if cold:
        drop_cache(store_dir)
    store = FeatureStore.open(store_dir)  # open inside the pass: index loading is part of a cold start
    times = []
    for image_id in ids:
        t0 = time.perf_counter()
        rec = store[image_id]
        _ = float(rec.features[-1, -1])  # touch the data
        times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1e3
    return {"ms_mean": round(float(ms.mean()), 4), "ms_p50": round(float(np.median(ms)), 4),
            "ms_p95": round(float(np.percentile(ms, 95)), 4), "reads": len(ids)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--boxes", type=int, default=100)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--reads", type=int, default=300, help="random reads per access pass")
    parser.add_argument("--workdir", default=None, help="scratch directory (default: a temporary one, removed)")
    args = parser.parse_args()

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_features_"))
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"images": args.images, "boxes_per_image": args.boxes, "dim": args.dim,
                    "python": platform.python_version(), "cpus": os.cpu_count(),
                    "omp_threads": os.environ.get("OMP_NUM_THREADS")}
    try:
        tsv = work / "synthetic_butd.tsv"
        t0 = time.perf_counter()
        write_butd_tsv(tsv, synthetic_records(args.images, args.boxes, args.dim))
        result["tsv_bytes"] = tsv.stat().st_size
        result["tsv_write_seconds"] = round(time.perf_counter() - t0, 2)

        for dtype, fp16 in (("fp32", False), ("fp16", True)):
            out = work / f"store_{dtype}"
            summary = convert(str(tsv), "butd", str(out), fp16=fp16, progress=False)
            result[f"convert_{dtype}"] = {"images_per_second": summary["images_per_second"],
                                          "seconds": summary["seconds"],
                                          "store_bytes": sum(f.stat().st_size for f in out.iterdir())}

        rng = np.random.default_rng(1)
        ids = [str(100000 + i) for i in rng.integers(0, args.images, args.reads)]
        for dtype in ("fp32", "fp16"):
            store_dir = work / f"store_{dtype}"
            cold = access_pass(store_dir, ids, cold=True)
            access_pass(store_dir, ids, cold=False)  # make sure everything touched is cached
            warm = access_pass(store_dir, ids, cold=False)
            result[f"access_{dtype}"] = {"cold_ish": cold, "warm": warm}
        result["cache_drop"] = "posix_fadvise(DONTNEED)" if hasattr(os, "posix_fadvise") else "unavailable"

        store = FeatureStore.open(work / "store_fp32")
        recs = [store[i] for i in ids[:50]]
        for rec in recs:
            rec.obj_conf = np.random.default_rng(2).uniform(0, 1, rec.num_boxes).astype(np.float32)
        for name, kwargs in (("official", {}), ("adaptive_10_100", {"conf_threshold": 0.2})):
            t0 = time.perf_counter()
            reps = 4
            for _ in range(reps):
                for rec in recs:
                    region_inputs(rec, **kwargs)
            result[f"region_inputs_{name}_ms"] = round((time.perf_counter() - t0) * 1e3 / (reps * len(recs)), 4)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
