"""CLI: ``python -m preprocess.rewrite --pairs PAIRS --output OUT [options]``; prints the summary JSON."""
from __future__ import annotations

import argparse
import json
import sys

from .data_io import InputError
from .pipeline import RewriteConfig, run
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
                    "record per pair {image_id, caption_id, caption, positives, negatives, related_texts}.")
    p.add_argument("--pairs", required=True,
                   help="JSONL {image_id, caption[, caption_id]} per line, or a Karpathy json (dataset_coco.json)")
    p.add_argument("--output", required=True, help="output JSONL (written as OUTPUT.partial, renamed at the end)")
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
    p.add_argument("--seed", type=int, default=0)
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
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = RewriteConfig(
        pairs=args.pairs, output=args.output, positives=args.positives, negatives=args.negatives,
        retrieval_negatives=args.retrieval_negatives, parser=args.parser, vocab_dir=args.vocab_dir,
        paraphrases=args.paraphrases, translator=args.translator, mt_model=args.mt_model, corpus=args.corpus,
        related=args.related, workers=args.workers, seed=args.seed, chunk_size=args.chunk_size,
        max_nnz=args.max_nnz, tfidf_max_df=args.tfidf_max_df,
        karpathy_splits=[s for s in args.karpathy_splits.split(",") if s] if args.karpathy_splits else None,
        skip_bad=args.skip_bad, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    try:
        summary = run(cfg)
    except (InputError, VocabError, TranslatorError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
