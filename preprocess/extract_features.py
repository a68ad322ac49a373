"""Raw images -> region features in the canonical feature store (``unimo.reader.features.FeatureStore``).

    python -m preprocess.extract_features --input DIR --output STORE --backend classic \
        [--feature-dim 2048] [--max-boxes 36] [--min-boxes 10] [--fp16] [--skip-bad]
    python -m preprocess.extract_features --input DIR --output STORE --backend grid --weights resnet50.pdparams
    python -m preprocess.extract_features --input DIR --output STORES --num-shards N --shard I   # shard I of N

With ``--num-shards N --shard I`` only the images whose id falls in shard I (crc32 of the UTF-8 image id mod N:
stable across runs and machines) are extracted, into ``STORES/shard-IIIII-of-NNNNN``; every reader of a feature
store opens the directory ``STORES`` as one store, and ``python -m preprocess.features merge`` writes one store,
byte for byte what the unsharded run writes.

Images are read with OpenCV (jpg, jpeg, png, bmp, webp, tif, tiff; ``--recursive`` descends into folders).
The image id is the file name without extension, or the part matched by ``--image-id-regex`` (group 1; all-digit
ids are normalised with ``int``, so ``COCO_val2014_000000391895.jpg`` with ``(\\d+)$`` becomes ``391895``, the
id BUTD dumps use). An unreadable image or a duplicate id stops the run with an error naming the file, unless
``--skip-bad`` skips and counts it. The store appears only when complete (written to a temporary name first);
``--overwrite`` replaces only a store's own files and refuses an output folder holding anything else.
The last stdout line is a JSON summary (also written to ``--json PATH``; ``--summary`` is the old spelling). Bad input prints one line
``error: <file>: <what> (<hint>)`` and exits with 2 (1 = internal error, with its traceback).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Sequence

import unimo  # noqa: F401  (CPU environment before paddle; the grid backend imports paddle)

import cv2
import numpy as np
from tqdm import tqdm

from preprocess.datasets.common import file_mode
from preprocess.extractors import ExtractorError, available_backends, create_extractor
from unimo.reader.feature_store import check_store_destination
from unimo.reader.features import FeatureStoreWriter, RegionFeatures
from unimo.utils.cli import HelpFormatter
from unimo.utils.errors import DataError, UserError, run_cli
from unimo.utils.io import atomic_write
from unimo.utils.shards import (PARTITION_RULE, add_distributor_arguments, add_shard_arguments,
                                check_shard_arguments, ray_shards, run_shards_with_ray, shard_of, shard_output)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class ImageReadError(DataError):
    """An image file OpenCV cannot decode (or an id clash): ``<file>: <message>``; ``reason`` counts skips."""

    def __init__(self, path: Path, reason: str, message: str) -> None:
        super().__init__(str(path), None, None, message, reason)
        self.path = path


def list_images(images_dir: str | os.PathLike, recursive: bool = False) -> tuple[list[Path], int]:
    """Image files under ``images_dir`` sorted by relative path, and the number of other files ignored."""
    root = Path(images_dir)
    if not root.exists():
        raise FileNotFoundError(f"image directory not found: {root}")
    if not root.is_dir():
        raise UserError("not a directory", file=str(root), hint="--images takes a folder of image files")
    entries = root.rglob("*") if recursive else root.iterdir()
    images, ignored = [], 0
    for p in entries:
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            images.append(p)
        else:
            ignored += 1
    images.sort(key=lambda p: p.relative_to(root).as_posix())
    return images, ignored


def image_id_for(path: Path, pattern: re.Pattern | None) -> str:
    """Image id from a file name (see the module docstring)."""
    stem = path.stem
    if pattern is None:
        return stem
    m = pattern.search(stem)
    if m is None:
        raise ImageReadError(path, "bad_image_id", f"file name {stem!r} does not match --image-id-regex "
                                                   f"{pattern.pattern!r}")
    value = m.group(1) if m.groups() else m.group(0)
    return str(int(value)) if value.isdigit() else value


def read_image(path: Path) -> np.ndarray:
    """BGR uint8 image; raises :class:`ImageReadError` when OpenCV cannot decode the file."""
    # imdecode on the bytes: cv2.imread returns None silently and cannot read non-ASCII paths on every platform
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise ImageReadError(path, "unreadable", f"cannot read file ({exc.strerror})") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ImageReadError(path, "unreadable", "not a decodable image (empty, truncated or not an image format "
                                                 "OpenCV reads)")
    return image


def extract_directory(images_dir: str | os.PathLike, output: str | os.PathLike, backend: str = "classic",
                      feature_dim: int = 2048, max_boxes: int | None = None, min_boxes: int | None = None,
                      fp16: bool = False, weights: str | None = None, random_init: bool = False,
                      skip_bad: bool = False, overwrite: bool = False, recursive: bool = False,
                      image_id_regex: str | None = None, limit: int | None = None, progress: bool = True,
                      shard: tuple[int, int] | None = None, **backend_options) -> dict:
    """Run ``backend`` on every image of ``images_dir`` and write the store ``output``; returns the summary.

    ``shard=(I, N)``: only the images of shard I (:func:`unimo.utils.shards.shard_of` of the image id) are
    extracted, into ``output/shard-IIIII-of-NNNNN``; a file whose id cannot be derived belongs to shard 0."""
    t0 = time.perf_counter()
    container = output
    output = shard_output(output, shard)
    if shard is not None and (Path(container) / "meta.json").exists():
        raise UserError("is a feature store; --num-shards writes its shards into a directory of shard stores",
                        file=str(container), field="--output", hint="choose another --output")
    options = dict(feature_dim=feature_dim, fp16=fp16, weights=weights, random_init=random_init, **backend_options)
    if max_boxes is not None:
        options["max_boxes"] = max_boxes
    if min_boxes is not None:
        options["min_boxes"] = min_boxes
    check_store_destination(output, overwrite)
    try:
        pattern = re.compile(image_id_regex) if image_id_regex else None
    except re.error as exc:
        raise UserError(f"not a valid regular expression ({exc})", field="--image-id-regex",
                        hint=f"got {image_id_regex!r}") from None
    extractor = create_extractor(backend, **options)
    files, ignored = list_images(images_dir, recursive)
    if limit is not None:
        files = files[:limit]
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {images_dir}")
    positions = list(range(len(files)))  # each file's place in the whole (sorted) listing: order of the merge
    other_shards = 0
    if shard is not None:
        mine = []
        for position, path in enumerate(files):
            try:
                owner = shard_of(image_id_for(path, pattern), shard[1])
            except ImageReadError:
                owner = 0  # reported (or with --skip-bad counted) once, by shard 0
            if owner == shard[0]:
                mine.append(position)
        other_shards = len(files) - len(mine)
        positions = mine
    skipped: dict[str, int] = {}
    bad_files: list[dict] = []
    seen: dict[str, Path] = {}
    counts: list[int] = []
    extract_s = 0.0
    dtype = "float16" if fp16 else "float32"
    with FeatureStoreWriter(output, feature_dim=extractor.feature_dim, num_classes=extractor.num_classes,
                            dtype=dtype, overwrite=overwrite, shard=shard) as writer:
        for position in tqdm(positions, desc=f"extract[{backend}]", unit="img", disable=not progress,
                             file=sys.stderr):
            path = files[position]
            try:
                image_id = image_id_for(path, pattern)
                if image_id in seen:
                    raise ImageReadError(path, "duplicate_id",
                                         f"image id {image_id!r} already used by {seen[image_id]}")
                image = read_image(path)
            except ImageReadError as err:
                if not skip_bad:
                    raise
                skipped[err.reason] = skipped.get(err.reason, 0) + 1
                if len(bad_files) < 100:
                    bad_files.append({"file": str(path), "reason": err.reason, "message": str(err)})
                continue
            seen[image_id] = path
            t1 = time.perf_counter()
            regions = extractor.extract(image)
            extract_s += time.perf_counter() - t1
            h, w = image.shape[:2]
            writer.add(RegionFeatures(image_id, w, h, regions.boxes, regions.features, cls_prob=regions.cls_prob,
                                      obj_conf=regions.obj_conf), None if shard is None else position)
            counts.append(len(regions))
        if not counts and (shard is None or positions):
            raise ImageReadError(Path(images_dir), "no_images", f"none of the {len(positions)} image files "
                                 f"{'of this shard ' if shard else ''}could be read")
    seconds = time.perf_counter() - t0
    arr = np.asarray(counts if counts else [0])
    sharding = {} if shard is None else {"shard": shard[0], "num_shards": shard[1], "partition": PARTITION_RULE,
                                         "images_other_shards": other_shards}
    return {
        **extractor.describe(), "output": str(output), "dtype": dtype, "images_found": len(files),
        "images_written": len(counts), "skipped": skipped, "bad_files": bad_files, "ignored_files": ignored,
        "boxes": int(arr.sum()),
        "boxes_per_image": {"min": int(arr.min()), "mean": round(float(arr.mean()), 3), "max": int(arr.max())},
        **sharding, "seconds": round(seconds, 3),
        "extract_ms_per_image": round(1000 * extract_s / len(counts), 3) if counts else None,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m preprocess.extract_features", description=__doc__.split("\n")[0],
                                epilog=__doc__.split("\n", 1)[1], formatter_class=HelpFormatter)
    p.add_argument("--input", "--images", dest="images", required=True,
                   help="folder of images (--images: the old spelling)")
    p.add_argument("--output", required=True,
                   help="feature store directory to create (with --num-shards: the directory of shard stores)")
    p.add_argument("--backend", default="classic", choices=available_backends(), help="extractor (default: %(default)s)")
    p.add_argument("--feature-dim", type=int, default=2048, help="feature dimension per region (default: %(default)s)")
    p.add_argument("--max-boxes", type=int, default=None,
                   help="most regions per image (default: classic 36; grid grid_size^2 + 1)")
    p.add_argument("--min-boxes", type=int, default=None, help="fewest regions per image (default: classic 10)")
    p.add_argument("--conf-thresh", type=float, default=None,
                   help="classic: keep proposals scoring at least this (default: the BUTD rule, 0.2)")
    p.add_argument("--fp16", action="store_true",
                   help="store features as float16; the grid backend also runs the CNN in float16 on a GPU "
                        "(default: float32)")
    p.add_argument("--weights", default=None, help="grid: paddle.vision ResNet state dict (.pdparams; default: none)")
    p.add_argument("--random-init", action="store_true", help="grid: random weights (tests only; default: off)")
    p.add_argument("--arch", default=None, help="grid: resnet18/34/50/101/152 (default: resnet50)")
    p.add_argument("--grid-size", type=int, default=None, help="grid: cells per side (default: 6)")
    p.add_argument("--input-size", type=int, default=None, help="grid: shorter image side fed to the CNN (default: 448)")
    p.add_argument("--image-id-regex", default=None,
                   help=r"image id = group 1 of this regex on the file stem, e.g. '(\d+)$' (default: the stem)")
    p.add_argument("--recursive", action="store_true", help="also read images in sub-folders (default: off)")
    p.add_argument("--limit", type=int, default=None,
                   help="only the first N images, sorted by path (default: %(default)s = all)")
    add_shard_arguments(p)
    add_distributor_arguments(p)
    p.add_argument("--skip-bad", action="store_true",
                   help="skip and count unreadable images (default: the first one is an error)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output store (only its own files; a folder holding anything else is "
                        "refused; default: an existing output is an error)")
    p.add_argument("--json", "--summary", dest="summary", nargs="?", const=None, default=None, metavar="PATH",
                   help="also write the JSON summary to PATH (no PATH: stdout only, which is always printed; "
                        "default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown on stderr)")
    return p


def _run(argv: Sequence[str] | None) -> dict:
    args = build_parser().parse_args(argv)
    extra = {k: v for k, v in (("conf_thresh", args.conf_thresh), ("arch", args.arch), ("grid_size", args.grid_size),
                               ("input_size", args.input_size)) if v is not None}
    if args.summary and os.path.isdir(args.summary):
        raise UserError("is a directory", file=args.summary, hint="--summary takes a file name")
    options = dict(images_dir=args.images, output=args.output, backend=args.backend, feature_dim=args.feature_dim,
                   max_boxes=args.max_boxes, min_boxes=args.min_boxes, fp16=args.fp16, weights=args.weights,
                   random_init=args.random_init, skip_bad=args.skip_bad, overwrite=args.overwrite,
                   recursive=args.recursive, image_id_regex=args.image_id_regex, limit=args.limit, **extra)
    shards = ray_shards(args.distributor, args.num_shards, args.shard)
    if shards:
        results = run_shards_with_ray("preprocess.extract_features", "extract_directory",
                                      [dict(options, shard=s, progress=False) for s in shards], args.ray_address)
        summary = {"distributor": "ray", "output": str(args.output), "num_shards": len(shards),
                   "images_written": sum(r["images_written"] for r in results), "shards": results}
    else:
        summary = extract_directory(**options, progress=not args.no_progress,
                                    shard=check_shard_arguments(args.num_shards, args.shard))
    text = json.dumps(summary)
    if args.summary:
        with atomic_write(args.summary) as fh:
            fh.write(text + "\n")
        os.chmod(args.summary, file_mode())  # atomic_write's temporary file is private (0600)
    print(text)
    return summary


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the CLI; returns the summary. Bad input: one ``error:`` line on stderr and ``SystemExit(2)``."""
    out: dict = {}
    code = run_cli(lambda a: out.update(summary=_run(a)), list(argv) if argv is not None else None,
                   user_exceptions=(ExtractorError,))
    if code:
        raise SystemExit(code)
    return out["summary"]


if __name__ == "__main__":
    main()
