"""Inference CLI for fine-tuned UNIMO task models.

    python -m unimo.predict caption  --model DIR (--features STORE | --images DIR) (--image-ids FILE | --all)
                                     [--beam-size 5] --output captions.jsonl
    python -m unimo.predict vqa      --model DIR --features STORE (--question "..." --image-ids FILE | --questions
                                     FILE) [--answer-vocab FILE] [--top-k 5] --output answers.jsonl
    python -m unimo.predict ve       --model DIR --features STORE (--hypothesis "..." --image-ids FILE |
                                     --hypotheses FILE) --output ve.jsonl
    python -m unimo.predict retrieve --model DIR --features STORE --captions FILE (--image-ids FILE | --all)
                                     [--top-k 5] [--direction both|text_to_image|image_to_text] --output ranks.jsonl

``--model`` is a ``save_pretrained`` folder of the task model (``<output_dir>/best`` of a fine-tuning run);
``--config`` the training YAML, whose settings (max_img_len, decoding, answer_vocab, ...) then apply.
``--images DIR --backend classic|grid [--weights W]`` extracts region features on the fly into a temporary store
(the backends of ``python -m preprocess.extract_features``; ids = file stems or ``--image-id-regex`` group 1).
Images are chosen with ``--image-ids FILE`` (one id per line), ``--image-id ID`` (repeatable) or ``--all``; a
query file record with its own ``image_id`` needs none (formats: :mod:`unimo.predict.inputs`).

Output: JSON lines, written to a temporary name and renamed at the end --
caption ``{"image_id", "caption"}``; vqa ``{"question_id"?, "image_id", "question", "answer", "score",
"top_answers"}``; ve ``{"pair_id"?, "image_id", "hypothesis", "label", "probs"}``; retrieve ``{"direction",
"query", "results": [{"image_id"|"caption", "score"}]}``. The last stdout line is a JSON summary. Errors (unknown
image id, unreadable image file, missing model files, another task's model, bad query lines) exit with status 2
and one line ``error: <file>[:<line>]: <what>``; ``--skip-bad`` skips bad query lines, unknown image ids and
unreadable images instead and counts them by reason in the summary. An internal error exits with status 1.

Weights: ``model.safetensors`` is read as data; a ``model_state.pdparams`` (earlier releases, PaddleNLP) through a
restricted unpickler that refuses anything but arrays, unless ``--trust-pickle`` (only for a trusted source).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from typing import Any, Iterable, Sequence

import unimo  # noqa: F401  (CPU environment before paddle)

from ..utils.cli import HelpFormatter
from ..utils.errors import UserError
from .errors import PredictError, UnknownImageError
from .inputs import TextQuery, read_image_ids, read_text_queries


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", required=True, help="save_pretrained folder of the fine-tuned task model")
    g.add_argument("--trust-pickle", action="store_true",
                   help="read a model_state.pdparams with Paddle's unrestricted loader, which can run code: only for "
                        "checkpoints from a trusted source (default: refuse anything but arrays)")
    g.add_argument("--vocab-dir", default=None,
                   help="tokenizer dictionary (default: the model folder, else model_files/dict)")
    g.add_argument("--config", default=None, help="training YAML whose task settings apply (optional)")
    g.add_argument("--batch-size", type=int, default=None, help="examples (retrieve: pairs) per forward pass")
    g.add_argument("--max-img-len", type=int, default=None,
                   help="image rows incl. the global one (default: --config's, else the model config's)")
    g = p.add_argument_group("images")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--features", "--feature-store", default=None,
                     help="feature store (python -m preprocess.features / preprocess.extract_features)")
    src.add_argument("--images", default=None, help="folder of images; regions are extracted on the fly")
    g.add_argument("--backend", default="classic", help="extractor backend for --images (classic, grid)")
    g.add_argument("--weights", default=None, help="grid backend: paddle.vision ResNet state dict")
    g.add_argument("--random-init", action="store_true", help="grid backend: random weights (tests only)")
    g.add_argument("--arch", default=None, help="grid backend: resnet18/34/50/101/152")
    g.add_argument("--grid-size", type=int, default=None, help="grid backend: cells per side")
    g.add_argument("--input-size", type=int, default=None, help="grid backend: shorter side fed to the CNN")
    g.add_argument("--feature-dim", type=int, default=None,
                   help="extracted feature size (default: the model's image_embedding_size)")
    g.add_argument("--max-boxes", type=int, default=None, help="extractor: most regions per image")
    g.add_argument("--min-boxes", type=int, default=None, help="extractor: fewest regions per image")
    g.add_argument("--conf-thresh", type=float, default=None, help="classic backend: proposal score threshold")
    g.add_argument("--image-id-regex", default=None, help=r"--images: id = group 1 of this regex on the file stem")
    g.add_argument("--recursive", action="store_true", help="--images: also read sub-folders")
    g.add_argument("--image-ids", default=None, help="file with one image id per line")
    g.add_argument("--image-id", action="append", default=None, help="an image id (repeatable)")
    g.add_argument("--all", action="store_true", help="every image of the store / folder")
    g = p.add_argument_group("output")
    g.add_argument("--output", required=True, help="JSON lines file to write")
    g.add_argument("--skip-bad", action="store_true",
                   help="skip (and count) bad query lines, unknown image ids and unreadable images instead of "
                        "failing")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m unimo.predict", description=__doc__.split("\n")[0],
                                     formatter_class=HelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("caption", help="caption images (UnimoForGeneration)", formatter_class=HelpFormatter)
    _common(p)
    task_default = "None = --config's value, else the caption task's default"
    p.add_argument("--beam-size", type=int, default=None, help=f"beam width ({task_default})")
    p.add_argument("--max-out-len", type=int, default=None, help=f"longest caption in tokens ({task_default})")
    p.add_argument("--min-out-len", type=int, default=None, help=f"shortest caption in tokens ({task_default})")
    p.add_argument("--length-penalty", type=float, default=None, help=f"beam length penalty ({task_default})")
    p.add_argument("--object-vocab", default=None,
                   help="detector class names for the object tags of a model trained with them (object_tags in "
                        "--config): the tags are computed from the features' object predictions (None = --config's "
                        "object_vocab)")
    p.add_argument("--trigram-blocking", action="store_true", default=None,
                   help=f"forbid repeated trigrams ({task_default})")
    p = sub.add_parser("vqa", help="answer questions about images (UnimoForVQA)", formatter_class=HelpFormatter)
    _common(p)
    p.add_argument("--question", action="append", default=None, help="a question asked of every selected image")
    p.add_argument("--questions", default=None, help="question file (.txt lines or JSON lines)")
    p.add_argument("--answer-vocab", default=None,
                   help="answer_vocab.json (default: <model>/answer_vocab.json, else --config's answer_vocab)")
    p.add_argument("--top-k", type=int, default=5, help="answers listed in top_answers")
    p = sub.add_parser("ve", help="visual entailment (UnimoForVisualEntailment)", formatter_class=HelpFormatter)
    _common(p)
    p.add_argument("--hypothesis", action="append", default=None, help="a hypothesis tested on every image")
    p.add_argument("--hypotheses", default=None, help="hypothesis file (.txt lines or JSON lines)")
    p = sub.add_parser("retrieve", help="rank images for captions and captions for images (UnimoForRetrieval)",
                       formatter_class=HelpFormatter)
    _common(p)
    p.add_argument("--caption", action="append", default=None, help="a caption (repeatable)")
    p.add_argument("--captions", default=None, help="caption file (.txt lines or JSON lines)")
    p.add_argument("--top-k", type=int, default=5, help="results listed per query")
    p.add_argument("--direction", default="both", choices=["both", "text_to_image", "image_to_text"],
                   help="text_to_image ranks images per caption, image_to_text captions per image")
    return parser


def _predictor(args: argparse.Namespace):
    from .api import PREDICTORS

    cls = PREDICTORS[args.command]
    extractor = {k: getattr(args, k) for k in ("feature_dim", "max_boxes", "min_boxes", "weights", "arch",
                                               "grid_size", "input_size", "conf_thresh")}
    if args.random_init:
        extractor["random_init"] = True
    settings: dict[str, Any] = {}
    if args.command == "caption":
        settings = {k: getattr(args, k) for k in ("beam_size", "max_out_len", "min_out_len", "length_penalty",
                                                  "trigram_blocking", "object_vocab") if getattr(args, k) is not None}
    if args.command == "vqa":
        settings["answer_vocab"] = args.answer_vocab
    return cls.from_pretrained(args.model, features=args.features, images=args.images, vocab_dir=args.vocab_dir,
                               config=args.config, backend=args.backend, image_id_regex=args.image_id_regex,
                               recursive=args.recursive, extractor_options=extractor, batch_size=args.batch_size,
                               max_img_len=args.max_img_len, progress=not args.no_progress,
                               trust_pickle=args.trust_pickle, **settings)


def _selected_images(args: argparse.Namespace, predictor) -> list[str]:
    ids: dict[str, None] = {}
    for i in args.image_id or []:
        ids[str(i)] = None
    if args.image_ids:
        ids.update(dict.fromkeys(read_image_ids(args.image_ids)))
    if args.all:
        ids.update(dict.fromkeys(predictor.image_ids()))
    return list(ids)


def _drop_unusable(args: argparse.Namespace, predictor, image_ids: Iterable[str], messages: list[str]
                   ) -> dict[str, str]:
    """Image ids the run cannot use, as {id: skip reason} to leave out (counted per dropped item by the caller):
    unknown ids, and images of an image folder that cannot be decoded (read here, before the model runs). Without
    --skip-bad either is an error."""
    unique = list(dict.fromkeys(image_ids))
    unknown = [i for i in unique if i not in predictor.features]
    if unknown and not args.skip_bad:
        from .api import describe_source

        raise UnknownImageError(unknown, describe_source(predictor.features), len(unique))
    drop = dict.fromkeys(unknown, "unknown_image")
    if args.skip_bad and hasattr(predictor.features, "prepare"):  # an image folder: decode (and extract) now
        known = [i for i in unique if i not in drop]
        predictor.features.prepare(known, progress=not args.no_progress, skip_bad=True)
        for i in known:
            if i in predictor.features.unreadable:
                drop[i] = "unreadable_image"
                messages.append(f"{predictor.features.paths[i]}: {predictor.features.unreadable[i]}")
    return drop


def _text_items(args: argparse.Namespace, predictor, single: Sequence[str] | None, file: str | None, field: str,
                id_field: str, flag: str, skipped: Counter, messages: list[str]) -> list[tuple[str, str, Any]]:
    """(image_id, text, query id) items from --question/--questions style options."""
    queries = [TextQuery(t) for t in single or []]
    if file:
        more, log = read_text_queries(file, field, id_field, skip_bad=args.skip_bad)
        queries += more
        skipped.update(log.skipped)
        messages += log.messages
    if not queries:
        raise PredictError(f"nothing to ask: give --{flag} TEXT or --{flag}s FILE")
    selected = _selected_images(args, predictor)
    items = []
    for q in queries:
        if q.image_id is not None:
            items.append((q.image_id, q.text, q.query_id))
        elif not selected:
            raise PredictError(f"{field} {q.text!r:.80} has no image_id: choose images with --image-ids FILE, "
                               "--image-id ID or --all")
        else:
            items += [(i, q.text, q.query_id) for i in selected]
    drop = _drop_unusable(args, predictor, (i for i, _, _ in items), messages)
    for i, _, _ in items:
        if i in drop:
            skipped[drop[i]] += 1
    return [it for it in items if it[0] not in drop]


def _run(args: argparse.Namespace, predictor, skipped: Counter, messages: list[str]) -> tuple[list[dict], int]:
    """Output records and the number of distinct images used."""
    cmd = args.command
    if cmd == "caption":
        ids = _selected_images(args, predictor)
        if not ids:
            raise PredictError("no images: give --image-ids FILE, --image-id ID or --all")
        drop = _drop_unusable(args, predictor, ids, messages)
        skipped.update(drop.values())
        ids = [i for i in ids if i not in drop]
        captions = predictor.generate(ids) if ids else {}
        return [{"image_id": i, "caption": c} for i, c in captions.items()], len(ids)
    if cmd in ("vqa", "ve"):
        field, id_field, flag = ("question", "question_id", "question") if cmd == "vqa" else \
            ("hypothesis", "pair_id", "hypothesis")
        single = args.question if cmd == "vqa" else args.hypothesis
        file = args.questions if cmd == "vqa" else args.hypotheses
        items = _text_items(args, predictor, single, file, field, id_field, flag, skipped, messages)
        if not items:
            return [], 0
        qids = [q for _, _, q in items]
        qids = qids if any(q is not None for q in qids) else None
        images, texts = [i for i, _, _ in items], [t for _, t, _ in items]
        if cmd == "vqa":
            rows = predictor.answer(images, texts, question_ids=qids, top_k=args.top_k)
        else:
            rows = predictor.predict(images, texts, pair_ids=qids)
        if qids is not None:  # records without an id get none, rather than "question_id": null
            key = "question_id" if cmd == "vqa" else "pair_id"
            for r in rows:
                if r.get(key) is None:
                    r.pop(key, None)
        return rows, len(set(images))
    # retrieve
    queries = [TextQuery(t) for t in args.caption or []]
    if args.captions:
        more, log = read_text_queries(args.captions, "caption", "caption_id", list_field="captions",
                                      skip_bad=args.skip_bad)
        queries += more
        skipped.update(log.skipped)
        messages += log.messages
    if not queries:
        raise PredictError("no captions: give --caption TEXT or --captions FILE")
    ids = _selected_images(args, predictor)
    if not ids:
        raise PredictError("no candidate images: give --image-ids FILE, --image-id ID or --all")
    drop = _drop_unusable(args, predictor, ids, messages)
    skipped.update(drop.values())
    ids = [i for i in ids if i not in drop]
    if not ids:
        return [], 0
    cids = [q.query_id for q in queries]
    rows = predictor.search([q.text for q in queries], ids, top_k=args.top_k, direction=args.direction,
                            caption_ids=cids if any(c is not None for c in cids) else None)
    return rows, len(ids)


def write_jsonl(path: str, rows: Sequence[dict]) -> None:
    """Write atomically (:func:`unimo.utils.io.atomic_write`: a temporary file renamed at the end)."""
    from ..utils.io import atomic_write

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    skipped: Counter = Counter()
    messages: list[str] = []
    predictor = None
    try:
        predictor = _predictor(args)
        rows, n_images = _run(args, predictor, skipped, messages)
        write_jsonl(args.output, rows)
    except (PredictError, UserError, OSError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)  # bad input (a bug's traceback exits 1)
        raise SystemExit(2) from None
    finally:
        if predictor is not None:
            extracted = getattr(predictor.features, "extracted", None)
            predictor.close()
    summary = {"command": args.command, "model": args.model, "output": args.output, "records": len(rows),
               "images": n_images, "extracted_images": extracted, "skipped": dict(skipped),
               "skipped_total": sum(skipped.values()), "skip_messages": messages[:20],
               "seconds": round(time.perf_counter() - t0, 3)}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
