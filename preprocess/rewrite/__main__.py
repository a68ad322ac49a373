"""CLI of the caption rewriting; prints the summary JSON.

    python -m preprocess.rewrite --input PAIRS --output OUT.jsonl [options]
    python -m preprocess.rewrite --input PAIRS --output OUT_DIR --num-shards N --shard I [options]
    python -m preprocess.rewrite index --input PAIRS --output INDEX [--tfidf-max-df F]   # read + fit once
    python -m preprocess.rewrite --index INDEX --output OUT_DIR --num-shards N --shard I [options]
    python -m preprocess.rewrite merge --input OUT_DIR --output OUT.jsonl

Sharding: the pairs of an image go to shard crc32(UTF-8 image id) mod N (stable across runs and machines);
every shard retrieves against the TF-IDF index of *all* captions (rebuilt by the shard from --input, or loaded
from a saved --index) and writes OUT_DIR/shard-IIIII-of-NNNNN.jsonl. ``merge`` writes the lines of the N shards in
the order of the unsharded run: byte for byte its output. Exit status: 0 ok, 2 bad input or usage, 1 internal error.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from pathlib import Path

from unimo.utils.cli import HelpFormatter
from unimo.utils.errors import run_cli
from unimo.utils.shards import (add_distributor_arguments, add_shard_arguments, check_shard_arguments,
                                ray_shards, run_shards_with_ray)

from .data_io import InputError, write_json_atomic
from .pipeline import RewriteConfig, merge_shards, run
from .saved_index import save_index
from .retrieval import DEFAULT_MAX_NNZ
from .translate import TranslatorError
from .vocab import VocabError


def _max_df(text: str) -> float | int:
    try:
        return int(text) if text.isdigit() else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m preprocess.rewrite",
        description="Rewrite image captions into CMCL positives/negatives (UNIMO section 3.1). Output: one JSONL "
                    "record per pair {image_id, caption_id, caption, positives, negatives, related_texts}. "
                    "Subcommands: 'merge' (shards -> one file), 'index' (save the pairs + TF-IDF index once); "
                    "see their --help.")
    p.add_argument("--input", "--pairs", dest="pairs", default=None,
                   help="JSONL {image_id, caption[, caption_id]} per line, or a Karpathy json (dataset_coco.json); "
                        "--pairs is the old spelling (default: %(default)s; give it or --index)")
    p.add_argument("--index", default=None,
                   help="a saved pairs + TF-IDF index (python -m preprocess.rewrite index) instead of --input "
                        "(default: %(default)s = read --input and fit the index)")
    p.add_argument("--output", required=True, help="output JSONL (written as OUTPUT.partial, renamed at the end); "
                                                   "with --num-shards the directory of shard files")
    p.add_argument("--positives", type=int, default=2, help="back-translated paraphrases per pair (paper: 2)")
    p.add_argument("--negatives", type=int, default=100,
                   help="scene-graph rewrites per pair (object/attribute/relation replaced; paper: 100)")
    p.add_argument("--retrieval-negatives", type=int, default=10,
                   help="TF-IDF most similar captions of other images per pair")
    p.add_argument("--parser", choices=["rule", "sng"], default="rule",
                   help="scene-graph parser: rule (VG lexicon, no model) or sng (SceneGraphParser + spaCy)")
    p.add_argument("--vocab-dir", default="model_files/vg_1600_400_20",
                   help="folder with objects/attributes/relations_vocab.txt (model_files/download_vg_vocab.sh)")
    p.add_argument("--paraphrases", help="paraphrase file for positives: JSONL {caption, paraphrases} or TSV "
                                         "caption<TAB>paraphrase")
    p.add_argument("--translator", choices=["none", "file", "marian"],
                   help="positives backend (default: file with --paraphrases, marian with --mt-model, else none)")
    p.add_argument("--mt-model", action="append", default=[], metavar="DIR",
                   help="MarianMT folder with forward/ and backward/ checkpoints, or give it twice "
                        "(English->pivot, then pivot->English)")
    p.add_argument("--corpus", help="text corpus, one document per line, for related texts")
    p.add_argument("--related", type=int, default=5, help="related corpus texts per pair (needs --corpus)")
    p.add_argument("--workers", type=int, default=1, help="processes")
    p.add_argument("--seed", type=int, default=0, help="seed of the scene-graph rewrites (per caption id)")
    p.add_argument("--chunk-size", type=int, default=256, help="pairs per work unit / output flush")
    p.add_argument("--max-nnz", type=int, default=DEFAULT_MAX_NNZ,
                   help="bound on non-zeros of one sparse similarity product (memory per worker)")
    p.add_argument("--tfidf-max-df", type=_max_df, default=1.0,
                   help="drop words in more than this fraction (or, if an integer, number) of captions from the "
                        "retrieval TF-IDF; speeds up very large runs; default 1.0 keeps all")
    p.add_argument("--karpathy-splits", help="comma-separated splits to keep from a Karpathy json "
                                             "(e.g. train,restval); default: all")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed input records (counted in the summary)")
    p.add_argument("--resume", action="store_true", help="continue OUTPUT.partial (or extend OUTPUT)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    add_shard_arguments(p)
    add_distributor_arguments(p)
    _json_arg(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown)")
    return _with_defaults(p)


def _with_defaults(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Every option's help shows its default (the project's formatter)."""
    p.formatter_class = HelpFormatter
    return p


def build_merge_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m preprocess.rewrite merge",
                                description="One JSONL from the N shard files of a sharded run, in the order of the "
                                            "unsharded run (byte for byte its output).")
    p.add_argument("--input", required=True, help="directory of shard-IIIII-of-NNNNN.jsonl files")
    p.add_argument("--output", required=True, help="merged JSONL to write (atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT (default: an error)")
    _json_arg(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown on stderr)")
    return _with_defaults(p)


def build_index_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m preprocess.rewrite index",
                                description="Read the pairs and fit the TF-IDF caption index once, for the shards "
                                            "of a run (--index INDEX instead of --input PAIRS).")
    p.add_argument("--input", "--pairs", dest="pairs", required=True, help="the pairs (as for the rewriting run)")
    p.add_argument("--output", required=True, help="index folder to create")
    p.add_argument("--tfidf-max-df", type=_max_df, default=1.0,
                   help="as for the rewriting run (must match it; default: %(default)s)")
    p.add_argument("--karpathy-splits", help="as for the rewriting run (must match it; default: all)")
    p.add_argument("--skip-bad", action="store_true", help="as for the rewriting run (must match it; default: off)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing index folder (default: an error)")
    _json_arg(p)
    return p


def _json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                   help="also write the JSON summary to PATH (no PATH: stdout only, which is always printed; "
                        "default: %(default)s)")


def _splits(text: str | None) -> list[str] | None:
    return [s for s in text.split(",") if s] if text else None


def _emit(summary: dict, json_path: str | None) -> int:
    if json_path not in (None, "-"):
        write_json_atomic(Path(json_path), summary)
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["merge"]:
        args = build_merge_parser().parse_args(argv[1:])
        return _emit(merge_shards(args.input, args.output, args.overwrite, not args.no_progress), args.json)
    if argv[:1] == ["index"]:
        args = build_index_parser().parse_args(argv[1:])
        return _emit(save_index(args.pairs, args.output, args.tfidf_max_df, _splits(args.karpathy_splits),
                                args.skip_bad, args.overwrite), args.json)
    args = build_parser().parse_args(argv)
    if (args.pairs is None) == (args.index is None):
        raise InputError("give the pairs as --input PAIRS, or a saved index as --index INDEX (one of them)")
    shards = ray_shards(args.distributor, args.num_shards, args.shard)
    shard = None if shards else check_shard_arguments(args.num_shards, args.shard)
    cfg = RewriteConfig(
        pairs=args.pairs, output=args.output, positives=args.positives, negatives=args.negatives,
        retrieval_negatives=args.retrieval_negatives, parser=args.parser, vocab_dir=args.vocab_dir,
        paraphrases=args.paraphrases, translator=args.translator, mt_model=args.mt_model, corpus=args.corpus,
        related=args.related, workers=args.workers, seed=args.seed, chunk_size=args.chunk_size,
        max_nnz=args.max_nnz, tfidf_max_df=args.tfidf_max_df, karpathy_splits=_splits(args.karpathy_splits),
        skip_bad=args.skip_bad, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress,
        shard=shard, index=args.index)
    if shards:
        results = run_shards_with_ray("preprocess.rewrite.pipeline", "run",
                                      [{"cfg": dataclasses.replace(cfg, shard=s, progress=False)} for s in shards],
                                      args.ray_address, cpus_per_task=args.workers)
        return _emit({"distributor": "ray", "output": args.output, "num_shards": len(shards),
                      "pairs_written": sum(r["pairs_written"] for r in results), "shards": results}, args.json)
    return _emit(run(cfg), args.json)


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 ok, 2 bad input or usage (one ``error:`` line), 1 internal error (traceback)."""
    return run_cli(_main, argv, user_exceptions=(InputError, VocabError, TranslatorError, ValueError, ImportError))


if __name__ == "__main__":
    sys.exit(main())
