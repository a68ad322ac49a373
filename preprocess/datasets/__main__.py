"""CLI: ``python -m preprocess.datasets <name> --input ... --output DIR [--skip-bad] [--overwrite]``.

Prints the converter's JSON summary on stdout and saves it as ``DIR/<name>_summary.json``. Outputs are written
atomically (all or nothing); existing outputs are replaced only with ``--overwrite`` (other files in DIR are never
touched). Exit status: 0 ok, 2 bad input or usage -- one line ``error: <file>[:<line>]: field '<f>': <what>
(<hint>)`` on stderr, nothing written --, 1 internal error (traceback). With ``--skip-bad`` a split left without
any example is still an error, and skipping more than 10% (``common.MAX_SKIP_FRACTION``) of an input file's
records prints a warning.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import unimo  # noqa: F401  (sets the CPU environment; no paddle is imported here)
from unimo.utils.cli import HelpFormatter
from unimo.utils.errors import run_cli
from unimo.utils.io import write_json_atomic

from . import (CONVERTERS, convert_coco_karpathy, convert_coqa, convert_flickr30k, convert_glue, convert_seq2seq,
               convert_snli_ve, convert_vqa_v2)
from .common import MAX_SKIP_FRACTION, OutputExistsError, UsageError, file_mode
from .glue import TASKS as GLUE_TASKS
from .seq2seq import NAMES as SEQ2SEQ_NAMES


def _split_map(items: list[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        split, sep, path = item.partition("=")
        if not sep or not split or not path:
            raise UsageError(f"{flag} takes SPLIT=PATH, got {item!r}")
        out[split] = path
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m preprocess.datasets",
                                description="Convert public datasets to the normalised JSONL of unimo.reader.datasets. "
                                            "Exit status: 0 ok, 2 bad input or usage (one error line "
                                            "'error: <file>[:<line>]: <field>: <what>'), 1 internal error.",
                                formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest="name", required=True, metavar="NAME", help=", ".join(CONVERTERS))

    def add(name: str, help: str, input_required: bool = True, multi: bool = True,
            input_help: str | None = None) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, formatter_class=HelpFormatter)
        sp.add_argument("--input", nargs="+" if multi else None, required=input_required,
                        help=input_help or ("input file(s) or folder" if multi else "input file"))
        sp.add_argument("--output", required=True, help="output folder (created if missing)")
        sp.add_argument("--skip-bad", action="store_true",
                        help="skip bad records and count them by reason (default: the first bad record is an error); "
                             "a split left without examples is still an error, and skipping more than "
                             f"{MAX_SKIP_FRACTION * 100:.0f}%% of a file's records warns on stderr")
        sp.add_argument("--overwrite", action="store_true",
                        help="replace this converter's existing outputs in --output (default: an existing output "
                             "file is an error; other files are never touched)")
        sp.add_argument("--no-progress", action="store_true", help="no tqdm progress bars (default: shown)")
        return sp

    for name, help in (("coco-karpathy", "dataset_coco.json -> captions_{split}.jsonl + COCO-format refs"),
                       ("flickr30k", "dataset_flickr30k.json -> retrieval_{split}.jsonl")):
        sp = add(name, help, multi=False)
        sp.add_argument("--restval", choices=("train", "separate"), default="train",
                        help="merge Karpathy's restval split into train (default) or keep it separate")
        sp.add_argument("--text", choices=("raw", "tokens"), default="raw",
                        help="caption text: raw sentence (default) or Karpathy's lowercased tokens")
        sp.add_argument("--image-id-from", choices=("cocoid", "stem", "filename", "imgid"),
                        default="cocoid" if name == "coco-karpathy" else "stem",
                        help="where image ids come from: the COCO id, the file stem, the file name or Karpathy's "
                             "imgid")

    sp = add("vqa-v2", "VQA v2 questions/annotations -> vqa_{split}.jsonl + answer_vocab.json", input_required=False,
             multi=False, input_help="folder holding the official file names (v2_OpenEnded_mscoco_train2014_"
             "questions.json, v2_mscoco_train2014_annotations.json, ...); --questions/--annotations add or override")
    sp.add_argument("--questions", action="append", metavar="SPLIT=PATH", help="questions json of a split (repeatable)")
    sp.add_argument("--annotations", action="append", metavar="SPLIT=PATH",
                    help="annotations json of a split (repeatable)")
    sp.add_argument("--min-count", type=int, default=9,
                    help="answer-vocabulary frequency threshold (default: %(default)s)")
    sp.add_argument("--max-answers", type=int, default=3129, help="answer-vocabulary size cap (default: %(default)s)")
    sp.add_argument("--vocab-splits", default="train", help="comma-separated splits counted for the vocabulary "
                    "('train,val' for train+val; default: %(default)s)")

    add("snli-ve", "snli_ve_{train,dev,test}.jsonl -> ve_{split}.jsonl").add_argument(
        "--split", help="split name for a single input file (default: from the file name)")
    sp = add("glue", "GLUE TSVs -> {split}.jsonl + labels.json")
    sp.add_argument("--task", required=True, choices=sorted(GLUE_TASKS), help="the GLUE task")
    sp.add_argument("--split", help="split name for a single input file (default: the file stem)")
    for name in SEQ2SEQ_NAMES:
        sp = add(name, f"{name} -> {{split}}.jsonl with id/src/tgt")
        sp.add_argument("--split", help="split name for a single input (default: from the file name)")
        sp.add_argument("--src-field", action="append",
                        help="JSONL source field (repeat for several segments; default: the dataset's own)")
        sp.add_argument("--tgt-field", help="JSONL target field (default: the dataset's own)")
        sp.add_argument("--id-field", default="id", help="JSONL id field (default id; line index when absent)")
    add("coqa", "CoQA json -> dialog {split}.jsonl").add_argument(
        "--split", help="split name for a single input file (default: from the file name)")
    return p


def run(args: argparse.Namespace) -> dict:
    common = {"skip_bad": args.skip_bad, "progress": not args.no_progress, "overwrite": args.overwrite}
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


def _summary_path(args: argparse.Namespace) -> str:
    name = args.name if args.name != "glue" else f"glue-{args.task}"
    return os.path.join(args.output, f"{name}_summary.json")


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    summary_path = _summary_path(args)
    if os.path.lexists(summary_path) and not args.overwrite:  # an earlier conversion is there: refuse at once
        raise OutputExistsError("exists", file=summary_path,
                                hint="pass --overwrite to replace the converter's outputs; other files in the folder "
                                     "are never touched")
    summary = run(args)
    write_json_atomic(summary_path, summary, indent=2)
    os.chmod(summary_path, file_mode())  # atomic_write's temporary file is private (0600)
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
