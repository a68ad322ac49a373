"""CLI: ``python -m preprocess.datasets <name> --input ... --output DIR [--skip-bad]``.

Prints the converter's JSON summary on stdout and saves it as ``DIR/<name>_summary.json``; exits with status 1
and a one-line ``error: file:line: field ...: message`` on bad input (nothing is written then).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import unimo  # noqa: F401  (sets the CPU environment; no paddle is imported here)

from . import (CONVERTERS, convert_coco_karpathy, convert_coqa, convert_flickr30k, convert_glue, convert_seq2seq,
               convert_snli_ve, convert_vqa_v2)
from .common import DataError, file_mode
from .glue import TASKS as GLUE_TASKS
from .seq2seq import NAMES as SEQ2SEQ_NAMES


def _split_map(items: list[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        split, sep, path = item.partition("=")
        if not sep or not split or not path:
            raise ValueError(f"{flag} takes SPLIT=PATH, got {item!r}")
        out[split] = path
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m preprocess.datasets",
                                description="Convert public datasets to the normalised JSONL of unimo.reader.datasets")
    sub = p.add_subparsers(dest="name", required=True, metavar="NAME", help=", ".join(CONVERTERS))

    def add(name: str, help: str, input_required: bool = True, multi: bool = True,
            input_help: str | None = None) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help)
        sp.add_argument("--input", nargs="+" if multi else None, required=input_required,
                        help=input_help or ("input file(s) or folder" if multi else "input file"))
        sp.add_argument("--output", required=True, help="output folder (created if missing)")
        sp.add_argument("--skip-bad", action="store_true", help="skip bad records and count them by reason")
        sp.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
        return sp

    for name, help in (("coco-karpathy", "dataset_coco.json -> captions_{split}.jsonl + COCO-format refs"),
                       ("flickr30k", "dataset_flickr30k.json -> retrieval_{split}.jsonl")):
        sp = add(name, help, multi=False)
        sp.add_argument("--restval", choices=("train", "separate"), default="train",
                        help="merge Karpathy's restval split into train (default) or keep it separate")
        sp.add_argument("--text", choices=("raw", "tokens"), default="raw",
                        help="caption text: raw sentence (default) or Karpathy's lowercased tokens")
        sp.add_argument("--image-id-from", choices=("cocoid", "stem", "filename", "imgid"),
                        default="cocoid" if name == "coco-karpathy" else "stem")

    sp = add("vqa-v2", "VQA v2 questions/annotations -> vqa_{split}.jsonl + answer_vocab.json", input_required=False,
             multi=False, input_help="folder holding the official file names (v2_OpenEnded_mscoco_train2014_"
             "questions.json, v2_mscoco_train2014_annotations.json, ...); --questions/--annotations add or override")
    sp.add_argument("--questions", action="append", metavar="SPLIT=PATH", help="questions json of a split")
    sp.add_argument("--annotations", action="append", metavar="SPLIT=PATH", help="annotations json of a split")
    sp.add_argument("--min-count", type=int, default=9, help="answer-vocabulary frequency threshold (9)")
    sp.add_argument("--max-answers", type=int, default=3129, help="answer-vocabulary size cap (3129)")
    sp.add_argument("--vocab-splits", default="train", help="comma-separated splits counted for the vocabulary "
                    "(train; 'train,val' for train+val)")

    add("snli-ve", "snli_ve_{train,dev,test}.jsonl -> ve_{split}.jsonl").add_argument("--split")
    sp = add("glue", "GLUE TSVs -> {split}.jsonl + labels.json")
    sp.add_argument("--task", required=True, choices=sorted(GLUE_TASKS))
    sp.add_argument("--split", help="split name for a single input file (default: the file stem)")
    for name in SEQ2SEQ_NAMES:
        sp = add(name, f"{name} -> {{split}}.jsonl with id/src/tgt")
        sp.add_argument("--split", help="split name for a single input (default: from the file name)")
        sp.add_argument("--src-field", action="append", help="JSONL source field (repeat for several segments)")
        sp.add_argument("--tgt-field", help="JSONL target field")
        sp.add_argument("--id-field", default="id", help="JSONL id field (default id; line index when absent)")
    add("coqa", "CoQA json -> dialog {split}.jsonl").add_argument("--split")
    return p


def run(args: argparse.Namespace) -> dict:
    common = {"skip_bad": args.skip_bad, "progress": not args.no_progress}
    if args.name == "coco-karpathy":
        return convert_coco_karpathy(args.input, args.output, restval=args.restval, text=args.text,
                                     image_id_from=args.image_id_from, **common)
    if args.name == "flickr30k":
        return convert_flickr30k(args.input, args.output, restval=args.restval, text=args.text,
                                 image_id_from=args.image_id_from, **common)
    if args.name == "vqa-v2":
        return convert_vqa_v2(args.output, questions=_split_map(args.questions, "--questions"),
                              annotations=_split_map(args.annotations, "--annotations"), input_dir=args.input,
                              min_count=args.min_count, max_answers=args.max_answers,
                              vocab_splits=[s for s in args.vocab_splits.split(",") if s], **common)
    if args.name == "snli-ve":
        return convert_snli_ve(args.input, args.output, split=args.split, **common)
    if args.name == "glue":
        return convert_glue(args.task, args.input, args.output, split=args.split, **common)
    if args.name == "coqa":
        return convert_coqa(args.input, args.output, split=args.split, **common)
    return convert_seq2seq(args.name, args.input, args.output, split=args.split, src_fields=args.src_field,
                           tgt_field=args.tgt_field, id_field=args.id_field, **common)


def _save_summary(summary: dict, out_dir: str, name: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}_summary.", suffix=".tmp", dir=out_dir)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(summary, f, ensure_ascii=False, indent=2)
        f.write("\n")
    os.chmod(tmp, file_mode())
    os.replace(tmp, os.path.join(out_dir, f"{name}_summary.json"))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = run(args)
    except (DataError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    name = args.name if args.name != "glue" else f"glue-{args.task}"
    _save_summary(summary, args.output, name)
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
