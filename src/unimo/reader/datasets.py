"""Example loaders: the normalised JSONL written by ``python -m preprocess.datasets`` and the official UNIMO data files.

``load_examples(path, task)`` returns a list of plain dicts (no tokenisation, no paddle, no model); the batching
readers turn them into tensors. Accepted inputs per task:

=============== ============================================================================================
task            formats (``fmt``; detected from the extension / first line when not given)
=============== ============================================================================================
caption         ``jsonl`` {"image_id","caption","caption_id","split"};
                ``official_img2txt`` (16 ``;``-separated fields) -> "caption_ids" (model ids) + "feature_ref"
vqa             ``jsonl`` {"question_id","image_id","question","answers":[{"answer","score"}],
                "multiple_choice_answer","answer_type","question_type"}
ve              ``jsonl`` {"pair_id","image_id","premise","hypothesis","label","label_name"};
                ``official_ve`` (14 ``;`` fields) -> "hypothesis_ids" (model ids) + "feature_ref"
retrieval       ``jsonl`` {"image_id","captions":[...],"split"};
                ``official_retrieval`` (``token_ids;sent_ids;pos_ids;image_name;sent_id``), grouped per image
                -> {"image_id","captions_ids":[[...]],"caption_sent_ids":[...],"split": None}
classification  ``jsonl`` {"text_a","text_b"?,"label": str|None,"qid"?};
regression      ``official_tsv`` (header with text_a, text_b, label, qid); regression labels are floats
seq2seq         ``jsonl`` {"id","src":[...],"tgt"}; ``official_seq2seq`` (TSV, GPT-2 BPE ids, needs vocab_path)
                -> {"id","src_ids":[[...]],"tgt_ids":[...]}
dialog          ``jsonl`` {"id","src":[turns],"knowledge","tgt"}; ``official_seq2seq`` -> src column split on
                " [SEP] " into turns -> {"id","src_ids":[[turn]...],"knowledge_ids","tgt_ids"}
=============== ============================================================================================

Bad input raises :class:`DataError` naming file, line and field; with ``skip_bad=True`` the example is skipped
and counted by reason in ``summary`` (a dict the caller passes and then reads).

Official token ids: the ``;`` files (img2txt, VE, retrieval captions) hold *model* ids (they start with [CLS]
and end with [SEP] and the official readers feed them unchanged); the seq2seq TSVs hold *GPT-2* ids, which are
mapped to model ids through ``unimo_en.vocab.txt`` (line index = model id, line text = GPT-2 id) exactly like
the official ``convert_tokens_to_ids``.

The image features inside official ``;`` lines are not decoded up front (a COCO file is tens of GB); every
example carries ``feature_ref`` = {"path","offset","line","fmt"} and :func:`read_official_image` decodes one
record on demand.
"""
from __future__ import annotations

import base64
import binascii
import gzip
import json
import math
import os
from typing import Any, Callable, Iterator

import numpy as np

TASKS = ("caption", "vqa", "ve", "retrieval", "classification", "regression", "seq2seq", "dialog")
FORMATS = {
    "caption": ("jsonl", "official_img2txt"),
    "vqa": ("jsonl",),
    "ve": ("jsonl", "official_ve"),
    "retrieval": ("jsonl", "official_retrieval"),
    "classification": ("jsonl", "official_tsv"),
    "regression": ("jsonl", "official_tsv"),
    "seq2seq": ("jsonl", "official_seq2seq"),
    "dialog": ("jsonl", "official_seq2seq"),
}
# VE label ids of the normalised format (SNLI order); the official files carry 0..2 of unverified order.
VE_LABELS = ("entailment", "neutral", "contradiction")
MODEL_VOCAB_SIZE = 50265
DIALOG_TURN_SEP = " [SEP] "  # the official CoQA files join previous turns with this literal


# ----------------------------------------------------------------------------------------------- errors
from ..utils.errors import DataError, IssueLog  # noqa: E402  (the one data-error type and skip counter)


# ----------------------------------------------------------------------------------------------- file reading
from ..utils.io import iter_lines  # noqa: E402,F401  (the one line reader; re-exported)


def _first_line(path: str) -> str:
    for _, text in iter_lines(path):
        if text.strip():
            return text
    return ""


def detect_format(path: str, task: str) -> str:
    """Guess the file format of ``path`` for ``task`` from its extension and first non-empty line."""
    if task not in FORMATS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    base = path[:-3] if path.endswith(".gz") else path
    ext = os.path.splitext(base)[1].lower()
    if ext in (".jsonl", ".json"):
        return "jsonl"
    first = _first_line(path)
    if first.lstrip().startswith("{"):
        return "jsonl"
    if task in ("classification", "regression"):
        cols = first.split("\t")
        if "text_a" in cols and ("label" in cols or "qid" in cols):
            return "official_tsv"
    elif task in ("seq2seq", "dialog"):
        cols = first.split("\t")
        if "tgt" in cols or "src" in cols:
            return "official_seq2seq"
    elif task == "ve" and first.count(";") == 13:
        return "official_ve"
    elif task == "caption" and first.count(";") == 15:
        return "official_img2txt"
    elif task == "retrieval" and first.count(";") == 4:
        return "official_retrieval"
    raise DataError(path, 1, None, f"cannot detect the {task} file format from the first line "
                    f"{first[:80]!r}; pass fmt= one of {FORMATS[task]} (public datasets in their own layout are "
                    "converted first: python -m preprocess.datasets --help)", "unknown_format")


# ----------------------------------------------------------------------------------------------- field checks
def _req(ex: dict, key: str, path: str, line: int) -> Any:
    if key not in ex:
        raise DataError(path, line, key, "missing", "missing_field")
    return ex[key]


def _str(ex: dict, key: str, path: str, line: int, *, optional: bool = False, nullable: bool = False,
         nonempty: bool = True, id_like: bool = False) -> str | None:
    """Fetch a string field; ids given as ints are turned into strings (the contract keeps ids as strings)."""
    if key not in ex:
        if optional:
            return None
        raise DataError(path, line, key, "missing", "missing_field")
    v = ex[key]
    if v is None and (nullable or optional):
        return None
    if id_like and isinstance(v, int) and not isinstance(v, bool):
        v = str(v)
    if not isinstance(v, str):
        raise DataError(path, line, key, f"expected a string, got {type(v).__name__} {v!r:.60}", "bad_type")
    if nonempty and not v.strip():
        raise DataError(path, line, key, "empty", "empty_text")
    return v


def _finite_float(v: Any, path: str, line: int, key: str) -> float:
    if isinstance(v, bool):
        raise DataError(path, line, key, f"expected a number, got {v!r}", "bad_type")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise DataError(path, line, key, f"expected a number, got {v!r:.60}", "bad_number") from None
    if not math.isfinite(f):
        raise DataError(path, line, key, f"not a finite number: {v!r}", "bad_number")
    return f


def _str_list(ex: dict, key: str, path: str, line: int) -> list[str]:
    v = _req(ex, key, path, line)
    if not isinstance(v, list) or not v:
        raise DataError(path, line, key, "expected a non-empty list of strings", "bad_type")
    for i, s in enumerate(v):
        if not isinstance(s, str):
            raise DataError(path, line, f"{key}[{i}]", f"expected a string, got {type(s).__name__}", "bad_type")
    return v


# ----------------------------------------------------------------------------------------------- JSONL validators
def _v_caption(ex: dict, p: str, n: int) -> dict:
    cid = _req(ex, "caption_id", p, n)
    if isinstance(cid, bool) or not isinstance(cid, (int, str)):
        raise DataError(p, n, "caption_id", f"expected an int or string, got {cid!r:.60}", "bad_type")
    return {"image_id": _str(ex, "image_id", p, n, id_like=True), "caption": _str(ex, "caption", p, n),
            "caption_id": cid, "split": _str(ex, "split", p, n, optional=True)}


def _v_vqa(ex: dict, p: str, n: int) -> dict:
    answers = _req(ex, "answers", p, n)
    if not isinstance(answers, list):
        raise DataError(p, n, "answers", "expected a list", "bad_type")
    out_answers, seen = [], set()
    for i, a in enumerate(answers):
        if not isinstance(a, dict):
            raise DataError(p, n, f"answers[{i}]", "expected an object {answer, score}", "bad_type")
        ans = _str(a, "answer", p, n)
        if ans in seen:
            raise DataError(p, n, f"answers[{i}].answer", f"duplicate answer {ans!r}", "duplicate")
        seen.add(ans)
        score = _finite_float(_req(a, "score", p, n), p, n, f"answers[{i}].score")
        if not 0.0 <= score <= 1.0:
            raise DataError(p, n, f"answers[{i}].score", f"score {score} outside [0, 1]", "bad_number")
        out_answers.append({"answer": ans, "score": score})
    return {"question_id": _str(ex, "question_id", p, n, id_like=True),
            "image_id": _str(ex, "image_id", p, n, id_like=True),
            "question": _str(ex, "question", p, n), "answers": out_answers,
            "multiple_choice_answer": _str(ex, "multiple_choice_answer", p, n, optional=True, nonempty=False),
            "answer_type": _str(ex, "answer_type", p, n, optional=True, nonempty=False),
            "question_type": _str(ex, "question_type", p, n, optional=True, nonempty=False)}


def _v_ve(ex: dict, p: str, n: int) -> dict:
    label = _req(ex, "label", p, n)
    if label is not None and (isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < 3):
        raise DataError(p, n, "label", f"expected 0 (entailment), 1 (neutral) or 2 (contradiction), got {label!r}",
                        "bad_label")
    name = _str(ex, "label_name", p, n, optional=True)
    if name is not None and label is not None and name != VE_LABELS[label]:
        raise DataError(p, n, "label_name", f"{name!r} does not match label {label} ({VE_LABELS[label]})",
                        "bad_label")
    return {"pair_id": _str(ex, "pair_id", p, n, id_like=True), "image_id": _str(ex, "image_id", p, n, id_like=True),
            "premise": _str(ex, "premise", p, n, optional=True), "hypothesis": _str(ex, "hypothesis", p, n),
            "label": label, "label_name": name}


def _v_retrieval(ex: dict, p: str, n: int) -> dict:
    caps = _str_list(ex, "captions", p, n)
    for i, c in enumerate(caps):
        if not c.strip():
            raise DataError(p, n, f"captions[{i}]", "empty", "empty_text")
    return {"image_id": _str(ex, "image_id", p, n, id_like=True), "captions": caps,
            "split": _str(ex, "split", p, n, optional=True)}


def _v_classification(ex: dict, p: str, n: int) -> dict:
    label = ex.get("label")
    if label is not None:
        label = _str(ex, "label", p, n, id_like=True)  # an int class written by hand is accepted as its name
    out = {"text_a": _str(ex, "text_a", p, n), "label": label}
    if ex.get("text_b") is not None:
        out["text_b"] = _str(ex, "text_b", p, n)
    if ex.get("qid") is not None:
        out["qid"] = _str(ex, "qid", p, n, id_like=True)
    return out


def _v_regression(ex: dict, p: str, n: int) -> dict:
    out = _v_classification({**ex, "label": None}, p, n)
    out["label"] = None if ex.get("label") is None else _finite_float(ex["label"], p, n, "label")
    return out


def _v_seq2seq(ex: dict, p: str, n: int) -> dict:
    src = _str_list(ex, "src", p, n)
    if not any(s.strip() for s in src):
        raise DataError(p, n, "src", "every source segment is empty", "empty_text")
    return {"id": _str(ex, "id", p, n, id_like=True), "src": src,
            "tgt": _str(ex, "tgt", p, n, nullable=True)}


def _v_dialog(ex: dict, p: str, n: int) -> dict:
    out = _v_seq2seq(ex, p, n)
    if not out["src"][-1].strip():
        raise DataError(p, n, "src", "the last turn (the current question) is empty", "empty_text")
    out["knowledge"] = _str(ex, "knowledge", p, n)
    return out


_VALIDATORS: dict[str, Callable[[dict, str, int], dict]] = {
    "caption": _v_caption, "vqa": _v_vqa, "ve": _v_ve, "retrieval": _v_retrieval,
    "classification": _v_classification, "regression": _v_regression, "seq2seq": _v_seq2seq, "dialog": _v_dialog,
}


def _iter_jsonl(path: str, task: str, log: IssueLog, progress: bool) -> Iterator[dict]:
    from ..utils.io import iter_jsonl

    validate = _VALIDATORS[task]
    for n, ex in iter_jsonl(path, log, progress):
        try:
            yield validate(ex, path, n)
        except DataError as err:
            log.report(err)


# ----------------------------------------------------------------------------------------------- official files
def _int_list(text: str, path: str, line: int, field: str, vocab_size: int | None = MODEL_VOCAB_SIZE) -> list[int]:
    try:
        ids = [int(t) for t in text.split()]
    except ValueError:
        bad = next((t for t in text.split() if not (t.lstrip("-").isdigit() and t.isascii())), text[:40])
        raise DataError(path, line, field, f"not an integer id: {bad!r}", "bad_token_id") from None
    if vocab_size is not None:
        for t in ids:
            if not 0 <= t < vocab_size:
                raise DataError(path, line, field, f"id {t} outside the vocabulary [0, {vocab_size})", "bad_token_id")
    return ids


def _int_field(text: str, path: str, line: int, field: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise DataError(path, line, field, f"expected an integer, got {text[:40]!r}", "bad_number") from None


def _num_field(text: str, path: str, line: int, field: str) -> float:
    v = _finite_float(text.strip(), path, line, field)
    if v <= 0:
        raise DataError(path, line, field, f"image size must be positive, got {v}", "bad_number")
    return v


def _ref(path: str, offset: int, line: int, fmt: str) -> dict:
    return {"path": os.path.abspath(path), "offset": None if path.endswith(".gz") else offset, "line": line,
            "fmt": fmt}


# field positions of the official ';' image lines (fields counted from 0)
_IMG2TXT = {"n_fields": 16, "image_h": 8, "image_w": 9, "number_box": 10, "boxes": 11, "features": 14}
_VE = {"n_fields": 14, "image_w": 7, "image_h": 8, "number_box": 9, "boxes": 10, "features": 11}


def _decode_b64(text: str, path: str, line: int, field: str, rows: int) -> np.ndarray:
    try:
        buf = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        raise DataError(path, line, field, f"bad base64 ({e})", "bad_base64") from None
    if len(buf) % 4:
        raise DataError(path, line, field, f"{len(buf)} bytes is not a whole number of float32", "bad_base64")
    arr = np.frombuffer(buf, dtype=np.float32)
    if rows <= 0 or arr.size % rows:
        raise DataError(path, line, field, f"{arr.size} floats do not split into number_box={rows} rows", "bad_shape")
    arr = arr.reshape(rows, -1)
    if not np.isfinite(arr).all():
        raise DataError(path, line, field, "contains NaN or inf", "bad_number")
    return arr


def _decode_image_fields(fields: list[str], layout: dict, path: str, line: int) -> dict:
    nb = _int_field(fields[layout["number_box"]], path, line, "number_box")
    if nb <= 0:
        raise DataError(path, line, "number_box", f"must be positive, got {nb}", "bad_number")
    boxes = _decode_b64(fields[layout["boxes"]], path, line, "boxes", nb)
    if boxes.shape[1] != 4:
        raise DataError(path, line, "boxes", f"expected [number_box, 4], got {list(boxes.shape)}", "bad_shape")
    feats = _decode_b64(fields[layout["features"]], path, line, "image_embeddings", nb)
    image_h = _num_field(fields[layout["image_h"]], path, line, "image_h")
    image_w = _num_field(fields[layout["image_w"]], path, line, "image_w")
    from .feature_formats import box_problems  # paddle-free, like this module

    problem = box_problems(boxes, image_w, image_h)
    if problem is not None:  # outside the image or inverted: the normalised locations would leave [0, 1]
        raise DataError(path, line, "boxes", problem[1], "bad_box")
    return {"image_h": image_h, "image_w": image_w, "boxes": boxes, "features": feats}


def _split_official(text: str, n_fields: int, path: str, line: int) -> list[str]:
    fields = text.split(";")
    if len(fields) != n_fields:
        raise DataError(path, line, None, f"expected {n_fields} ';'-separated fields, got {len(fields)}",
                        "bad_field_count")
    return fields


def _iter_img2txt(path: str, log: IssueLog, progress: bool, check_features: bool) -> Iterator[dict]:
    lay = _IMG2TXT
    for n, off, text in iter_lines(path, progress, with_offsets=True):
        if not text.strip():
            continue
        try:
            f = _split_official(text, lay["n_fields"], path, n)
            raw_id = f[0].strip()
            # official reader: image_id = int(field[9:]) (a fixed 9-character prefix is dropped)
            if len(raw_id) <= 9 or not raw_id[9:].isdigit():
                raise DataError(path, n, "image_id", f"{raw_id!r}: expected a 9-character prefix followed by "
                                "digits (the official reader keeps int(image_id[9:]))", "bad_id")
            ids = _int_list(f[2], path, n, "token_ids")
            if not ids:
                raise DataError(path, n, "token_ids", "empty", "empty_text")
            _int_field(f[lay["number_box"]], path, n, "number_box")
            _num_field(f[lay["image_h"]], path, n, "image_h")
            _num_field(f[lay["image_w"]], path, n, "image_w")
            if check_features:
                _decode_image_fields(f, lay, path, n)
            yield {"image_id": str(int(raw_id[9:])), "image_name": raw_id, "caption_id": f[1].strip(),
                   "caption_ids": ids, "split": None, "feature_ref": _ref(path, off, n, "official_img2txt")}
        except DataError as err:
            log.report(err)


def _iter_ve(path: str, log: IssueLog, progress: bool, check_features: bool) -> Iterator[dict]:
    lay = _VE
    for n, off, text in iter_lines(path, progress, with_offsets=True):
        if not text.strip():
            continue
        try:
            f = _split_official(text, lay["n_fields"], path, n)
            label = _int_field(f[2], path, n, "label")
            if not 0 <= label < 3:
                raise DataError(path, n, "label", f"expected 0..2, got {label}", "bad_label")
            ids = _int_list(f[3], path, n, "token_ids")
            if not ids:
                raise DataError(path, n, "token_ids", "empty", "empty_text")
            if not f[0].strip():
                raise DataError(path, n, "image_id", "empty", "bad_id")
            _int_field(f[lay["number_box"]], path, n, "number_box")
            _num_field(f[lay["image_w"]], path, n, "image_w")
            _num_field(f[lay["image_h"]], path, n, "image_h")
            if check_features:
                _decode_image_fields(f, lay, path, n)
            # label_name stays None: the order of the official 0..2 ids is not documented
            yield {"pair_id": f[1].strip(), "image_id": f[0].strip(), "premise": None, "hypothesis_ids": ids,
                   "label": label, "label_name": None, "feature_ref": _ref(path, off, n, "official_ve")}
        except DataError as err:
            log.report(err)


def _iter_retrieval(path: str, log: IssueLog, progress: bool) -> Iterator[dict]:
    groups: dict[str, dict] = {}
    for n, text in iter_lines(path, progress):
        if not text.strip():
            continue
        try:
            f = _split_official(text, 5, path, n)
            ids = _int_list(f[0], path, n, "token_ids")
            if not ids:
                raise DataError(path, n, "token_ids", "empty", "empty_text")
            name = f[3].strip()
            if not name:
                raise DataError(path, n, "image_name", "empty", "bad_id")
            g = groups.setdefault(name, {"image_id": name, "captions_ids": [], "caption_sent_ids": [],
                                         "split": None})
            g["captions_ids"].append(ids)
            g["caption_sent_ids"].append(f[4].strip())
        except DataError as err:
            log.report(err)
    yield from groups.values()  # first-appearance order of the images


def load_gpt2_vocab(vocab_path: str) -> dict[str, int]:
    """``unimo_en.vocab.txt`` as {token text (a GPT-2 id or a special like "[SEP]") -> model id = line index}."""
    if not vocab_path:
        raise ValueError("official seq2seq files hold GPT-2 BPE ids: pass vocab_path= (unimo_en.vocab.txt)")
    if not os.path.isfile(vocab_path):
        raise FileNotFoundError(f"vocabulary file not found: {vocab_path}")
    vocab: dict[str, int] = {}
    with open(vocab_path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            vocab.setdefault(line.rstrip("\n").split("\t")[0], i)
    return vocab


def _map_gpt2(text: str, vocab: dict[str, int], path: str, line: int, field: str) -> list[int]:
    out = []
    for tok in text.split():
        mid = vocab.get(tok)
        if mid is None:
            raise DataError(path, line, field, f"token {tok!r} is not in the vocabulary (expected GPT-2 BPE ids)",
                            "bad_token_id")
        out.append(mid)
    return out


def _iter_official_tsv(path: str, task: str, log: IssueLog, progress: bool) -> Iterator[dict]:
    header: list[str] | None = None
    for n, text in iter_lines(path, progress):
        if header is None:
            header = text.split("\t")
            if "text_a" not in header:
                raise DataError(path, 1, "text_a", f"header {header} has no text_a column", "bad_header")
            if len(set(header)) != len(header):
                raise DataError(path, 1, None, f"duplicate column names in header {header}", "bad_header")
            continue
        if not text.strip():
            continue
        try:
            cols = text.split("\t")
            if len(cols) != len(header):
                raise DataError(path, n, None, f"expected {len(header)} tab-separated columns, got {len(cols)}",
                                "bad_field_count")
            row = dict(zip(header, cols))
            ex: dict[str, Any] = {"text_a": _str(row, "text_a", path, n)}
            if "text_b" in row:
                ex["text_b"] = _str(row, "text_b", path, n)
            if "label" in row:
                ex["label"] = (_finite_float(row["label"], path, n, "label") if task == "regression"
                               else _str(row, "label", path, n))
            else:
                ex["label"] = None  # prediction files
            if "qid" in row:
                ex["qid"] = row["qid"]
            yield ex
        except DataError as err:
            log.report(err)


def _iter_official_seq2seq(path: str, task: str, vocab: dict[str, int], log: IssueLog,
                           progress: bool) -> Iterator[dict]:
    header: list[str] | None = None
    row_index = -1
    for n, text in iter_lines(path, progress):
        if header is None:
            header = text.split("\t")
            src_cols = [c for c in header if c not in ("tgt", "knowledge")]
            if not src_cols:
                raise DataError(path, 1, None, f"header {header} has no source column", "bad_header")
            if task == "dialog" and "knowledge" not in header:
                raise DataError(path, 1, "knowledge", f"dialog files need a knowledge column; header {header}",
                                "bad_header")
            continue
        if not text.strip():
            continue
        row_index += 1
        try:
            cols = text.split("\t")
            if len(cols) != len(header):
                raise DataError(path, n, None, f"expected {len(header)} tab-separated columns, got {len(cols)}",
                                "bad_field_count")
            row = dict(zip(header, cols))
            ex: dict[str, Any] = {"id": str(row_index)}  # data_id = 0-based row index, as the official decoder writes
            if task == "dialog":
                turns = row[src_cols[0]].split(DIALOG_TURN_SEP)
                ex["src_ids"] = [_map_gpt2(t, vocab, path, n, src_cols[0]) for t in turns]
                ex["knowledge_ids"] = _map_gpt2(row["knowledge"], vocab, path, n, "knowledge")
            else:
                ex["src_ids"] = [_map_gpt2(row[c], vocab, path, n, c) for c in src_cols]
            if not any(ex["src_ids"]):
                raise DataError(path, n, src_cols[0], "every source segment is empty", "empty_text")
            ex["tgt_ids"] = _map_gpt2(row["tgt"], vocab, path, n, "tgt") if "tgt" in row else None
            yield ex
        except DataError as err:
            log.report(err)


# ----------------------------------------------------------------------------------------------- public API
def iter_examples(path: str, task: str, skip_bad: bool = False, summary: dict | None = None, fmt: str | None = None,
                  vocab_path: str | None = None, check_features: bool = False,
                  progress: bool = False) -> Iterator[dict]:
    """Generator form of :func:`load_examples`; ``summary`` is filled when the generator is exhausted."""
    if task not in FORMATS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file not found: {path}")
    fmt = fmt or detect_format(path, task)
    if fmt not in FORMATS[task]:
        raise ValueError(f"format {fmt!r} is not available for task {task!r}; expected one of {FORMATS[task]}")
    log = IssueLog(skip_bad)
    if fmt == "jsonl":
        it = _iter_jsonl(path, task, log, progress)
    elif fmt == "official_tsv":
        it = _iter_official_tsv(path, task, log, progress)
    elif fmt == "official_seq2seq":
        it = _iter_official_seq2seq(path, task, load_gpt2_vocab(vocab_path), log, progress)
    elif fmt == "official_img2txt":
        it = _iter_img2txt(path, log, progress, check_features)
    elif fmt == "official_ve":
        it = _iter_ve(path, log, progress, check_features)
    else:
        it = _iter_retrieval(path, log, progress)
    kept = 0
    for ex in it:
        kept += 1
        yield ex
    if summary is not None:
        summary.update({"path": path, "task": task, "format": fmt, "examples": kept,
                        "skipped": dict(log.skipped), "skipped_total": log.total_skipped,
                        "messages": list(log.messages)})


def load_examples(path: str, task: str, skip_bad: bool = False, summary: dict | None = None, fmt: str | None = None,
                  vocab_path: str | None = None, check_features: bool = False,
                  progress: bool = False) -> list[dict]:
    """Read all examples of ``path`` for ``task`` (see the module docstring for keys and formats).

    ``summary`` (optional dict) receives {"path","task","format","examples","skipped":{reason: n},
    "skipped_total","messages"}. ``vocab_path`` (unimo_en.vocab.txt) is needed for official seq2seq TSVs;
    ``check_features`` decodes and checks the base64 image fields of official ``;`` lines while loading.
    """
    return list(iter_examples(path, task, skip_bad=skip_bad, summary=summary, fmt=fmt, vocab_path=vocab_path,
                              check_features=check_features, progress=progress))


def read_official_image(ref: dict) -> dict:
    """Decode the image of one official ``;`` line from an example's ``feature_ref``.

    Returns {"image_h", "image_w", "boxes": float32 [nb, 4] (x1, y1, x2, y2 pixels), "features": float32 [nb, D]}.
    """
    layout = {"official_img2txt": _IMG2TXT, "official_ve": _VE}.get(ref.get("fmt"))
    if layout is None:
        raise ValueError(f"feature_ref has unknown fmt {ref.get('fmt')!r}")
    path, line = ref["path"], ref["line"]
    if ref.get("offset") is not None:
        with open(path, "rb") as f:
            f.seek(ref["offset"])
            raw = f.readline()
        try:
            text = raw.decode("utf-8").rstrip("\n").rstrip("\r")
        except UnicodeDecodeError as e:
            raise DataError(path, line, None, f"not valid UTF-8 ({e.reason})", "bad_utf8") from None
    else:  # gzip has no random access: scan to the line
        text = next((t for n, t in iter_lines(path) if n == line), None)
        if text is None:
            raise DataError(path, line, None, "line not found", "missing_line")
    fields = _split_official(text, layout["n_fields"], path, line)
    return _decode_image_fields(fields, layout, path, line)


__all__ = ["DataError", "IssueLog", "TASKS", "FORMATS", "VE_LABELS", "iter_lines", "detect_format", "iter_examples",
           "load_examples", "load_gpt2_vocab", "read_official_image"]
