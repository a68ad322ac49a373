"""Time to build the demo world (default 2000 scenes, 128 px, classic features) on one CPU core.

    python bench/bench_demo_world.py [--num-scenes 2000] [--cores 1] [--keep DIR]

Target: under a minute for 2000 scenes with extraction included. Prints JSON (and keeps bench/results/demo_world.json):
wall and CPU seconds, per-stage timings (wall and CPU), classic extraction CPU ms per image, regions per image and
bytes on disk. On a shared machine the CPU seconds are the figure to compare with the target: wall time then
includes waiting for the core.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: before paddle/numpy pick their thread counts

from common import emit  # noqa: E402  (imports unimo: CPU environment)

import cv2  # noqa: E402

from preprocess.demo_world import build_demo_world  # noqa: E402


def folder_bytes(path: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for p in path.rglob("*"):
        if p.is_file():
            top = p.relative_to(path).parts[0]
            key = "/".join(p.relative_to(path).parts[:2]) if top == "features" else top
            sizes[key] = sizes.get(key, 0) + p.stat().st_size
    return dict(sorted(sizes.items()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num-scenes", type=int, default=2000)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cores", type=int, default=1, help="pin the process to this many cores (0 = no pinning)")
    p.add_argument("--keep", default=None, help="build here and keep the result (default: a temporary folder)")
    args = p.parse_args()
    if args.cores:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.cores])
        cv2.setNumThreads(args.cores)
    parent = Path(tempfile.mkdtemp(prefix="bench_demo_world."))
    out = Path(args.keep) if args.keep else parent / "world"
    try:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        result = build_demo_world(out, seed=args.seed, num_scenes=args.num_scenes, image_size=args.image_size,
                                  progress=False)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        sizes = folder_bytes(out)
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    counts = result["counts"]
    emit("demo_world", {
        "num_scenes": args.num_scenes, "image_size": args.image_size, "pinned_cores": args.cores,
        "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "target_s": 60,
        "stages_s": result["timings"],
        "classic_extract_cpu_ms_per_image": round(1000 * result["timings"]["extract_only_cpu_s"] / args.num_scenes, 2),
        "regions_per_image": round(counts["regions"] / args.num_scenes, 2),
        "objects_with_region_iou_gt_0.5": round(counts["objects_with_region_iou_gt_0.5"] / counts["objects"], 4),
        "bytes": sizes, "total_mb": round(sum(sizes.values()) / 1e6, 1),
        "counts": {k: counts[k] for k in ("images", "objects", "captions_coco", "vqa_questions", "snli_ve_pairs")},
    })


if __name__ == "__main__":
    main()
