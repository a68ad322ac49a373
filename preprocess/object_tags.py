"""Write an official-format object-tag file (``image_id;token_ids;sent_ids;pos_ids``) from a feature store.

usage: python -m preprocess.object_tags --features STORE --vocab objects_vocab.txt --conf 0.35 --output tags.ids

Every image of the store gets one line: the class names of its boxes with object confidence >= ``--conf`` (the
store's ``obj_id``/``obj_conf``, or derived from ``cls_prob``), in descending confidence with duplicates kept (see
``unimo.reader.object_tags`` for why), BPE-encoded with the UNIMO dictionary and ended by ``[SEP]``; an image with
no box above the threshold gets an empty line so that a missing image is an error, not "no tags". The official
files use 0.35 (base) and 0.2 (large) (spec section 4.4). The file is written atomically; an existing file is kept
unless ``--overwrite``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter

DEFAULT_DICT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "model_files", "dict")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m preprocess.object_tags", description=__doc__.split("\n")[0])
    p.add_argument("--features", required=True, help="feature store directory (python -m preprocess.features "
                   "convert ...) whose images carry object predictions")
    p.add_argument("--vocab", required=True, help="detector class names, one per line, synonyms comma-separated "
                   "(Visual Genome objects_vocab.txt: line c names class column c)")
    p.add_argument("--conf", type=float, default=0.35, help="keep boxes with object confidence >= this "
                   "(default: %(default)s; the official large run used 0.2)")
    p.add_argument("--output", required=True, help="tag file to write")
    p.add_argument("--dict-dir", default=DEFAULT_DICT, help="UNIMO BPE dictionary directory (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output (default: %(default)s)")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                   help="write the summary as JSON to PATH, or stdout without PATH (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: %(default)s)")
    return p


def make_tag_file(features: str, vocab: str, output: str, conf: float = 0.35, dict_dir: str = DEFAULT_DICT,
                  overwrite: bool = False, progress: bool = True) -> dict:
    """Write the tag file; return a summary (images, tagged images, tokens, most frequent words)."""
    from tqdm import tqdm

    from unimo.reader.feature_store import FeatureStore
    from unimo.reader.object_tags import load_object_vocab, store_tag_words, tag_sequence, write_tag_file
    from unimo.tokenizer import UnimoTokenizer
    from unimo.utils.errors import UserError

    if not 0.0 <= conf <= 1.0:
        raise UserError(f"must be in [0, 1], got {conf}", field="--conf")
    if os.path.exists(output) and not overwrite:
        raise UserError("exists (pass --overwrite to replace it)", file=output, field="--output")
    names = load_object_vocab(vocab)
    tokenizer = UnimoTokenizer.from_pretrained(dict_dir)
    words_seen: Counter[str] = Counter()
    stats = {"images": 0, "images_with_tags": 0, "tags": 0, "tokens": 0, "max_tokens": 0}

    with FeatureStore.open(features) as store:
        def lines():
            for image_id in tqdm(list(store), desc="object tags", unit="image", disable=not progress,
                                 file=sys.stderr):
                words = store_tag_words(store[image_id], names, conf)
                seq = tag_sequence(words, tokenizer)
                words_seen.update(words)
                stats["images"] += 1
                stats["images_with_tags"] += bool(words)
                stats["tags"] += len(words)
                stats["tokens"] += len(seq)
                stats["max_tokens"] = max(stats["max_tokens"], len(seq))
                yield image_id, seq

        write_tag_file(output, lines())
    return {"output": output, "conf": conf, **stats,
            "mean_tokens": round(stats["tokens"] / max(1, stats["images"]), 3),
            "most_common": words_seen.most_common(10)}


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    summary = make_tag_file(args.features, args.vocab, args.output, args.conf, args.dict_dir, args.overwrite,
                            progress=not args.no_progress)
    if args.json is None:
        print(f"wrote {summary['images']} images ({summary['images_with_tags']} with tags, "
              f"{summary['mean_tokens']} tokens per image) to {args.output}")
    elif args.json == "-":
        print(json.dumps(summary))
    else:
        from unimo.utils.io import write_json_atomic

        write_json_atomic(args.json, summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 ok, 2 bad input or usage (one ``error:`` line), 1 internal error (traceback)."""
    from unimo.utils.errors import run_cli

    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
