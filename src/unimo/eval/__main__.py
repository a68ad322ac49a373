"""Command line: ``python -m unimo.eval <metric> ...`` prints the metrics as one JSON object on stdout.

Sub-commands (``--output FILE`` additionally writes the JSON atomically; ``--out`` is the old spelling). Exit
status: 0 ok, 2 bad input or usage (one ``error:`` line naming the file and the offending line / id), 1 internal
error:

  glue       --metric {acc,mcc,pearson_spearman} --pred P --ref R [--pred-column N] [--ref-column N]
             [--pred-skip-header] [--ref-skip-header]          one label / score per line (or a TSV column)
  rouge      --pred PRED.txt --ref REF.txt [--cnndm] [--gigaword-digits]   one text per line
  caption    --pred RESULTS.json --ref CAPTIONS.json [--no-java] [--no-meteor] [--allow-missing]
  qg         --pred P.txt --ref R.txt [--src S.txt] [--no-tokenize] [--no-meteor]
  coqa       --pred P --ref R [--allow-missing]   P: official predictions .json or one answer per line;
             R: official CoQA .json or one turn per line with gold answers separated by TABs
  vqa        --pred RESULTS.json --questions Q.json --annotations A.json [--allow-missing]
  retrieval  --scores S.npy --gt GT.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from ..utils.cli import HelpFormatter
from .fileio import EvalInputError, check_same_length, read_lines, write_json_atomic


def _column(path: str, column: int | None, skip_header: bool) -> list[str]:
    lines = read_lines(path)
    start = 1 if skip_header else 0
    out = []
    for i, line in enumerate(lines[start:], start + 1):
        if column is None:
            out.append(line.strip())
            continue
        fields = line.split("\t")
        if column >= len(fields) or column < -len(fields):
            raise EvalInputError(f"{path}: line {i}: no column {column} (line has {len(fields)} TAB-separated fields)")
        out.append(fields[column].strip())
    return out


def _cmd_glue(a: argparse.Namespace) -> dict:
    from .glue import glue_metric, parse_labels

    numeric = a.metric == "pearson_spearman"
    pv = _column(a.pred, a.pred_column, a.pred_skip_header)
    rv = _column(a.ref, a.ref_column, a.ref_skip_header)
    check_same_length(a.pred, len(pv), a.ref, len(rv))
    preds, refs = parse_labels(pv, a.pred, numeric), parse_labels(rv, a.ref, numeric)
    if preds and refs and isinstance(preds[0], float) != isinstance(refs[0], float):
        preds, refs = pv, rv  # only one file is numeric: compare both as text
    return glue_metric(a.metric, preds, refs)


def _cmd_rouge(a: argparse.Namespace) -> dict:
    from .rouge import rouge_scores

    preds, refs = read_lines(a.pred), read_lines(a.ref)
    check_same_length(a.pred, len(preds), a.ref, len(refs))
    return rouge_scores(preds, refs, cnndm=a.cnndm, gigaword_digits=a.gigaword_digits, progress=True)


def _cmd_caption(a: argparse.Namespace) -> dict:
    from .coco import caption_scores, load_coco_annotations, load_coco_results

    preds = load_coco_results(a.pred)
    refs = load_coco_annotations(a.ref)
    try:
        return caption_scores(preds, refs, use_java=False if a.no_java else None,
                              meteor=False if a.no_meteor else None, allow_missing=a.allow_missing)
    except EvalInputError as e:
        raise EvalInputError(f"{a.pred} vs {a.ref}: {e}") from e


def _cmd_qg(a: argparse.Namespace) -> dict:
    from .coco import qg_scores

    preds, refs = read_lines(a.pred), read_lines(a.ref)
    check_same_length(a.pred, len(preds), a.ref, len(refs))
    src = None
    if a.src:
        src = read_lines(a.src)
        check_same_length(a.pred, len(preds), a.src, len(src))
    return qg_scores(preds, refs, src, tokenize=not a.no_tokenize, meteor=False if a.no_meteor else None)


def _cmd_coqa(a: argparse.Namespace) -> dict:
    from .coqa import coqa_official, coqa_scores, load_coqa_gold, load_coqa_predictions

    pred_json = a.pred.lower().endswith(".json")
    if a.ref.lower().endswith(".json"):
        gold, sources = load_coqa_gold(a.ref)
        if pred_json:
            preds = load_coqa_predictions(a.pred)
        else:  # one answer per line, in the gold file's story/turn order
            lines = read_lines(a.pred)
            check_same_length(a.pred, len(lines), f"{a.ref} (turns)", len(gold))
            preds = dict(zip(gold.keys(), lines))
        return coqa_official(gold, sources, preds, allow_missing=a.allow_missing)
    if pred_json:
        raise EvalInputError(f"{a.pred}: JSON predictions need the official CoQA JSON as --ref (story/turn ids)")
    preds, ref_lines = read_lines(a.pred), read_lines(a.ref)
    check_same_length(a.pred, len(preds), a.ref, len(ref_lines))
    golds = []
    for i, line in enumerate(ref_lines, 1):
        g = line.split("\t")
        if not any(x.strip() for x in g) and line != "":
            raise EvalInputError(f"{a.ref}: line {i}: no gold answer")
        golds.append(g)
    return coqa_scores(preds, golds)


def _cmd_vqa(a: argparse.Namespace) -> dict:
    from .vqa import load_vqa_annotations, load_vqa_results, vqa_evaluate

    results = load_vqa_results(a.pred)
    anns = load_vqa_annotations(a.annotations, a.questions)
    try:
        return vqa_evaluate(results, anns, allow_missing=a.allow_missing, progress=True)
    except EvalInputError as e:
        raise EvalInputError(f"{a.pred} vs {a.annotations}: {e}") from e


def _cmd_retrieval(a: argparse.Namespace) -> dict:
    import numpy as np

    from .retrieval import load_retrieval_gt, recall_at_k

    p = Path(a.scores)
    if not p.is_file():
        raise EvalInputError(f"{p}: file not found")
    try:
        scores = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise EvalInputError(f"{p}: not a readable .npy array ({e})") from e
    if not isinstance(scores, np.ndarray):
        raise EvalInputError(f"{p}: expected a single array in .npy format")
    gt = load_retrieval_gt(a.gt, num_captions=scores.shape[0] if scores.ndim == 2 else None)
    try:
        return recall_at_k(scores, gt, progress=True)
    except EvalInputError as e:
        raise EvalInputError(f"{a.scores} / {a.gt}: {e}") from e


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m unimo.eval", description=__doc__, formatter_class=HelpFormatter)
    sub = ap.add_subparsers(dest="task", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, formatter_class=HelpFormatter)
        p.add_argument("--output", "--out", dest="output",
                       help="also write the JSON result to this file (atomically; default: stdout only)")
        return p

    p = add("glue", "accuracy / Matthews correlation / Pearson-Spearman")
    p.add_argument("--metric", required=True, choices=["acc", "mcc", "pearson_spearman"], help="the metric")
    p.add_argument("--pred", required=True, help="predictions, one label / score per line (or a TSV column)")
    p.add_argument("--ref", required=True, help="references, one label / score per line (or a TSV column)")
    p.add_argument("--pred-column", type=int, default=None, help="0-based TAB column (default: whole line)")
    p.add_argument("--ref-column", type=int, default=None, help="0-based TAB column (default: whole line)")
    p.add_argument("--pred-skip-header", action="store_true", help="the predictions file has a header line")
    p.add_argument("--ref-skip-header", action="store_true", help="the references file has a header line")
    p.set_defaults(fn=_cmd_glue)

    p = add("rouge", "ROUGE-1/2/L F1 (CNN/DM, Gigaword)")
    p.add_argument("--pred", required=True, help="predictions, one text per line")
    p.add_argument("--ref", required=True, help="references, one text per line")
    p.add_argument("--cnndm", action="store_true", help="summary-level ROUGE-L over sentences (CNN/DM)")
    p.add_argument("--gigaword-digits", action="store_true", help="replace digits of predictions by '#'")
    p.set_defaults(fn=_cmd_rouge)

    p = add("caption", "COCO caption metrics (BLEU, METEOR, ROUGE-L, CIDEr-D)")
    p.add_argument("--pred", required=True, help='COCO results JSON [{"image_id", "caption"}]')
    p.add_argument("--ref", required=True, help='COCO captions JSON {"images", "annotations"}')
    p.add_argument("--no-java", action="store_true", help="use the pure-Python tokenizer, no METEOR")
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (needs Java)")
    p.add_argument("--allow-missing", action="store_true", help="score only the predicted images")
    p.set_defaults(fn=_cmd_caption)

    p = add("qg", "SQuAD question generation (BLEU-4, METEOR, ROUGE-L)")
    p.add_argument("--pred", required=True, help="generated questions, one per line")
    p.add_argument("--ref", required=True, help="reference questions, one per line")
    p.add_argument("--src", help="source sentence per line: pools references of the same sentence (default: no "
                                 "pooling)")
    p.add_argument("--no-tokenize", action="store_true", help="inputs are already tokenized (only lowercase)")
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (needs Java)")
    p.set_defaults(fn=_cmd_qg)

    p = add("coqa", "CoQA F1 (official normalisation and multi-reference averaging)")
    p.add_argument("--pred", required=True, help="official predictions .json or one answer per line")
    p.add_argument("--ref", required=True, help="official CoQA .json or one turn per line, gold answers TAB-separated")
    p.add_argument("--allow-missing", action="store_true", help="score only the predicted turns")
    p.set_defaults(fn=_cmd_coqa)

    p = add("vqa", "official VQA accuracy")
    p.add_argument("--pred", required=True, help='results JSON [{"question_id", "answer"}]')
    p.add_argument("--questions", required=True, help="official VQA questions JSON")
    p.add_argument("--annotations", required=True, help="official VQA annotations JSON")
    p.add_argument("--allow-missing", action="store_true", help="score only the answered questions")
    p.set_defaults(fn=_cmd_vqa)

    p = add("retrieval", "image/text retrieval recall@1/5/10")
    p.add_argument("--scores", required=True, help="float matrix [num_captions, num_images] (.npy)")
    p.add_argument("--gt", required=True, help="caption -> image ground truth JSON")
    p.set_defaults(fn=_cmd_retrieval)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.fn(args)
    except (EvalInputError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as e:
        print(f"error: {e}", file=sys.stderr)  # bad input; a bug's traceback exits 1
        return 2
    if args.output:
        write_json_atomic(args.output, result)
    print(json.dumps(result, ensure_ascii=False, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
