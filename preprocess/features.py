"""Convert region-feature dumps into the canonical feature store, and inspect a store.

    python -m preprocess.features convert --input FILE_OR_DIR --input-format butd --output STORE [--fp16]
                                          [--skip-bad] [--clip-boxes] [--overwrite] [--no-class-probs]
                                          [--feature-dim 2048] [--image-id-regex '(\\d+)$']
    python -m preprocess.features convert ... --output STORES --num-shards N --shard I   # shard I of N
    python -m preprocess.features merge --input STORES --output STORE     # one store from the N shards
    python -m preprocess.features manifest --input STORE_A STORE_B --output all.json   # read several as one
    python -m preprocess.features inspect STORE [--image-id ID] [--top-k 10] [--objects-vocab objects_vocab.txt]

Sharding: the shard of an image is crc32(UTF-8 image id) mod N (stable across runs and machines); shard I writes
STORES/shard-IIIII-of-NNNNN. A directory of shard stores, or a manifest, is read by every consumer of a feature
store (FeatureStore.open) as one store; merge writes one store, byte for byte what the unsharded run writes.

Every command prints one JSON object on stdout (progress goes to stderr). Bad input prints one line
``error: <file>[:<line>]: field '<field>': <what> (<hint>)`` and exits with 2 (1 = internal error, with traceback).
The store appears only when complete; ``--overwrite`` replaces only a store's own files and refuses an output
folder that holds anything else.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import unimo  # noqa: F401  (environment setup before anything heavy; no paddle import)
import numpy as np
from tqdm import tqdm

from unimo.reader.feature_store import (ShardedFeatureStore, check_store_destination, merge_feature_stores,
                                       write_manifest)
from unimo.reader.features import (FORMATS, FeatureFormatError, FeatureStore, FeatureStoreWriter, read_features)
from unimo.utils.cli import HelpFormatter
from unimo.utils.errors import UserError, run_cli
from unimo.utils.io import write_json_atomic
from unimo.utils.shards import (PARTITION_RULE, add_distributor_arguments, add_shard_arguments,
                                check_shard_arguments, ray_shards, run_shards_with_ray, shard_of, shard_output)


def _add(writer: FeatureStoreWriter, rec, skip_bad: bool, summary: dict, position: int | None = None) -> None:
    """Add one image; an image the store rejects (optional fields unlike the first image's, class count) is an
    error naming its file and line, or with --skip-bad counted."""
    try:
        writer.add(rec, position)
    except ValueError as exc:
        src, line = rec.location or (str(writer.path), None)
        message = str(exc)
        prefix = f"feature store {writer.path}: "
        message = message[len(prefix):] if message.startswith(prefix) else message
        err = FeatureFormatError(src, "store_rejected", message, line,
                                 hint="every image of a store carries the same fields" if "lacks" in message
                                 or "which the first image lacked" in message else None)
        if not skip_bad:
            raise err from None
        summary["skipped"]["store_rejected"] = summary["skipped"].get("store_rejected", 0) + 1
        if len(summary["skipped_examples"]) < 10:
            summary["skipped_examples"].append(str(err))


def _first_dimension(input_path: str, input_format: str, image_id_regex: str | None) -> int | None:
    """Feature dimension of the dump's first image with boxes (for a shard that holds none of its own)."""
    for rec in read_features(input_path, input_format, skip_bad=True, summary={}, image_id_regex=image_id_regex,
                             clip_boxes=True):
        if rec.num_boxes:
            return rec.feature_dim
    return None


def convert(input_path: str, input_format: str, output: str, fp16: bool = False, skip_bad: bool = False,
            overwrite: bool = False, class_probs: bool = True, feature_dim: int | None = None,
            image_id_regex: str | None = None, progress: bool = True, clip_boxes: bool = False,
            shard: tuple[int, int] | None = None) -> dict:
    """Stream ``input_path`` into a new store at ``output``; return the summary dict.

    ``shard=(I, N)``: only the images of shard I (:func:`unimo.utils.shards.shard_of`) go into the store
    ``output/shard-IIIII-of-NNNNN``; every shard reads every line but decodes only its own images."""
    summary: dict = {}
    start = time.perf_counter()
    container = output
    output = str(shard_output(output, shard))
    if shard is not None and (Path(container) / "meta.json").exists():
        raise UserError("is a feature store; --num-shards writes its shards into a directory of shard stores",
                        file=str(container), field="--output", hint="choose another --output")
    check_store_destination(output, overwrite)  # before reading anything
    keep = None if shard is None else (lambda image_id: shard_of(image_id, shard[1]) == shard[0])
    records = read_features(input_path, input_format, skip_bad=skip_bad, summary=summary, feature_dim=feature_dim,
                            image_id_regex=image_id_regex, clip_boxes=clip_boxes, keep=keep)
    writer = None
    pending = []  # images without boxes seen before the first one that fixes the feature dimension
    dtype = "float16" if fp16 else "float32"
    bar = tqdm(desc=f"convert {input_format}", unit="img", disable=not progress, file=sys.stderr)

    def new_writer(dim: int) -> FeatureStoreWriter:
        return FeatureStoreWriter(output, dim, dtype=dtype, overwrite=overwrite, class_probs=class_probs,
                                  shard=shard)

    def add(w: FeatureStoreWriter, rec, position: int) -> None:
        _add(w, rec, skip_bad, summary, None if shard is None else position)

    try:
        for rec in records:
            position = summary["lines"]  # the record's place in the whole dump (the same count in every shard)
            if writer is None:
                if rec.num_boxes == 0 and feature_dim is None:
                    pending.append((rec, position))
                    bar.update(1)
                    continue
                writer = new_writer(feature_dim or rec.feature_dim)
                for early, early_position in pending:
                    add(writer, early, early_position)
                pending.clear()
            add(writer, rec, position)
            bar.update(1)
        if writer is None:
            dim = feature_dim
            if dim is None and shard is not None and summary.get("other_shard_lines"):
                dim = _first_dimension(input_path, input_format, image_id_regex)  # this shard got no boxes
            if dim is None:
                what = "only images without boxes" if pending else "no images"
                raise FeatureFormatError(str(input_path), "empty", f"{what} were read; pass --feature-dim to "
                                         "create the store anyway")
            writer = new_writer(dim)
            for early, early_position in pending:
                add(writer, early, early_position)
        writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        bar.close()
    store = FeatureStore.open(output)
    elapsed = time.perf_counter() - start
    return {
        "output": str(Path(output)), "input": str(input_path), "input_format": input_format,
        "dtype": store.dtype, "feature_dim": store.feature_dim, "num_classes": store.num_classes,
        "fields": store.fields, "images": len(store), "images_read": summary.get("images", 0),
        "boxes": int(store.meta["num_boxes"]),
        "files": summary.get("files", 0), "lines": summary.get("lines", 0),
        "repeated_lines": summary.get("repeated_lines", 0),
        "clipped_boxes": summary.get("clipped_boxes", 0), "clipped_images": summary.get("clipped_images", 0),
        "skipped": summary.get("skipped", {}), "skipped_total": int(sum(summary.get("skipped", {}).values())),
        "skipped_examples": summary.get("skipped_examples", []),
        **({} if shard is None else {"shard": shard[0], "num_shards": shard[1], "partition": PARTITION_RULE,
                                      "other_shard_lines": summary.get("other_shard_lines", 0)}),
        "seconds": round(elapsed, 3), "images_per_second": round(len(store) / elapsed, 2) if elapsed > 0 else None,
    }


def _stats(arr: np.ndarray) -> dict:
    if arr.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None}
    a = arr.astype(np.float64)
    return {"mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()), "max": float(a.max())}


def _load_vocab(path: str | None) -> list[str] | None:
    if path is None:
        return None
    with open(path, encoding="utf-8") as fh:
        return [line.rstrip("\n").split(",")[0] for line in fh]


def inspect(store_path: str, image_id: str | None = None, top_k: int = 10, objects_vocab: str | None = None) -> dict:
    """Store summary, or one image: size, boxes, feature statistics and the most confident object classes."""
    store = FeatureStore.open(store_path)
    if image_id is None:
        ids = store.image_ids()
        return {"store": str(store.path), "images": len(store), "boxes": int(store.meta["num_boxes"]),
                "dtype": store.dtype, "feature_dim": store.feature_dim, "num_classes": store.num_classes,
                "fields": store.fields, "first_image_ids": ids[:10]}
    try:
        rec = store[image_id]
    except KeyError as exc:
        raise UserError(exc.args[0], hint=f"the store holds {len(store)} images; inspect without --image-id "
                        "lists the first ids") from None
    vocab = _load_vocab(objects_vocab)
    top: list[dict] = []
    pred = rec.object_predictions()
    if pred is not None and rec.num_boxes:
        obj_id, conf = pred
        for i in np.argsort(-conf, kind="stable")[:top_k]:
            entry = {"box": int(i), "class_id": int(obj_id[i]), "conf": float(conf[i])}
            if vocab is not None:
                entry["name"] = vocab[obj_id[i]] if 0 <= obj_id[i] < len(vocab) else None
            top.append(entry)
    return {
        "store": str(store.path), "image_id": rec.image_id, "image_w": rec.image_w, "image_h": rec.image_h,
        "num_boxes": rec.num_boxes, "feature_dim": rec.feature_dim, "boxes": rec.boxes.round(2).tolist(),
        "features": _stats(rec.features), "has_class_probs": rec.cls_prob is not None,
        "num_classes": None if rec.cls_prob is None else int(rec.cls_prob.shape[1]),
        "has_object_predictions": pred is not None, "top_classes": top,
    }


def merge(input_path: str, output: str, overwrite: bool = False, progress: bool = True) -> dict:
    """One store from a sharded store (a directory of shard stores or a manifest); returns the summary dict."""
    start = time.perf_counter()
    source = FeatureStore.open(input_path)
    shards = len(getattr(source, "shards", [source]))
    source.close()
    store = merge_feature_stores(input_path, output, overwrite=overwrite, progress=progress)
    elapsed = time.perf_counter() - start
    return {"output": str(Path(output)), "input": str(input_path), "shards": shards, "images": len(store),
            "boxes": int(store.meta["num_boxes"]), "dtype": store.dtype, "feature_dim": store.feature_dim,
            "fields": store.fields, "seconds": round(elapsed, 3)}


def _json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                        help="also write the JSON result to PATH (no PATH: stdout only, which is always printed; "
                             "default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m preprocess.features", description=__doc__,
                                     formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", formatter_class=HelpFormatter, help="convert a feature dump into a store")
    c.add_argument("--input", required=True, help="file, .gz file or directory of them (uniter-npz: dir of .npz)")
    c.add_argument("--input-format", required=True, choices=FORMATS, help="dump format")
    c.add_argument("--output", required=True,
                   help="store directory to create (with --num-shards: the directory of shard stores)")
    c.add_argument("--fp16", action="store_true",
                   help="store features/class probabilities as float16 (default: float32)")
    c.add_argument("--skip-bad", action="store_true", help="skip bad records (counted in the summary; default: the "
                   "first bad record is an error)")
    c.add_argument("--clip-boxes", action="store_true",
                   help="clip boxes outside the image into it and raise inverted ones (x2 < x1) to zero width, "
                        "counted in the summary (default: such a box is an error)")
    c.add_argument("--overwrite", action="store_true",
                   help="replace an existing store at --output (only its own files; a folder holding anything else "
                        "is refused; default: an existing output is an error)")
    c.add_argument("--no-class-probs", action="store_true",
                   help="do not store cls_prob/attr_prob (object ids/confidences are still kept; default: stored)")
    c.add_argument("--feature-dim", type=int, default=None,
                   help="expected feature dimension, checked per image (default: %(default)s = the first image with "
                        "boxes)")
    c.add_argument("--image-id-regex", default=None,
                   help="regex applied to the id field (group 1 or whole match; digits are int-normalised; "
                        "default: the id as written, unimo-img2txt: int(id[9:]))")
    add_shard_arguments(c)
    add_distributor_arguments(c)
    _json_arg(c)
    c.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown on stderr)")
    m = sub.add_parser("merge", formatter_class=HelpFormatter, help="write one store from a sharded store (directory of shard stores or manifest)",
                       description="Write one store from the shard stores under --input (a directory written by "
                                   "convert/extract_features --num-shards N, or a manifest). For the N shards of one "
                                   "run the result is byte for byte the store the unsharded run writes.")
    m.add_argument("--input", required=True, help="directory of shard-IIIII-of-NNNNN stores, or a shard manifest")
    m.add_argument("--output", required=True, help="store directory to create")
    m.add_argument("--overwrite", action="store_true",
                   help="replace an existing store at --output (only its own files; default: an error)")
    _json_arg(m)
    m.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown on stderr)")
    mf = sub.add_parser("manifest", formatter_class=HelpFormatter, help="write a manifest that lists stores to read as one sharded store")
    mf.add_argument("--input", nargs="+", required=True, help="store directories (or sharded stores) to list")
    mf.add_argument("--output", required=True, help="manifest file to write (JSON)")
    mf.add_argument("--overwrite", action="store_true", help="replace an existing manifest (default: an error)")
    i = sub.add_parser("inspect", formatter_class=HelpFormatter, help="print a store summary or one image as JSON")
    i.add_argument("store", nargs="?", default=None,
                   help="feature store (directory, directory of shard stores or manifest); or give --features")
    i.add_argument("--features", default=None, help="the feature store (same as the positional STORE)")
    i.add_argument("--image-id", default=None, help="print this image (default: the store summary)")
    i.add_argument("--top-k", type=int, default=10, help="most confident boxes listed (default: %(default)s)")
    i.add_argument("--objects-vocab", default=None,
                   help="vg objects_vocab.txt to name the classes (default: ids only)")
    _json_arg(i)
    return parser


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "convert":
        options = dict(input_path=args.input, input_format=args.input_format, output=args.output, fp16=args.fp16,
                       skip_bad=args.skip_bad, overwrite=args.overwrite, class_probs=not args.no_class_probs,
                       feature_dim=args.feature_dim, image_id_regex=args.image_id_regex, clip_boxes=args.clip_boxes)
        shards = ray_shards(args.distributor, args.num_shards, args.shard)
        if shards:
            results = run_shards_with_ray("preprocess.features", "convert",
                                          [dict(options, shard=s, progress=False) for s in shards], args.ray_address)
            result = {"distributor": "ray", "output": args.output, "num_shards": len(shards),
                      "images": sum(r["images"] for r in results), "boxes": sum(r["boxes"] for r in results),
                      "shards": results}
        else:
            result = convert(**options, progress=not args.no_progress,
                             shard=check_shard_arguments(args.num_shards, args.shard))
    elif args.command == "merge":
        result = merge(args.input, args.output, overwrite=args.overwrite, progress=not args.no_progress)
    elif args.command == "manifest":
        if Path(args.output).exists() and not args.overwrite:
            raise UserError("already exists", file=args.output, hint="pass --overwrite to replace it")
        flat = []
        for item in args.input:
            opened = FeatureStore.open(item)
            flat.extend(getattr(opened, "shards", [opened]))
        ShardedFeatureStore(Path(args.output), flat)  # the listed stores agree (no duplicate id, same fields)
        path = write_manifest(args.output, args.input)
        store = FeatureStore.open(path)
        result = {"output": str(path), "shards": len(store.shards), "images": len(store),
                  "boxes": int(store.meta["num_boxes"])}
    else:
        store = args.features or args.store
        if store is None or (args.features and args.store and args.features != args.store):
            raise UserError("give the store once, as STORE or --features", field="--features")
        result = inspect(store, args.image_id, args.top_k, args.objects_vocab)
    if getattr(args, "json", None) not in (None, "-"):
        write_json_atomic(args.json, result)
    print(json.dumps(result, indent=1))
    return 0

def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 ok, 2 bad input or usage (one ``error:`` line), 1 internal error (traceback)."""
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
