"""Text generation data (CNN/DM, Gigaword, SQuAD question generation, XSum, any JSONL) -> ``{split}.jsonl``.

Output example: {"id": str, "src": [segment strings], "tgt": str}. Accepted inputs (a file, or a folder whose
files are taken by name):

* parallel text files ``{split}.src`` + ``{split}.tgt`` (or ``.source`` + ``.target``), one example per line;
  the two files must have the same number of lines; ``id`` = 0-based line index;
* a TSV with a header holding a ``tgt`` column: every other column (except ``id``/``knowledge``) is a source
  segment in column order, like the official seq2seq reader; ``id`` column used when present;
* JSONL with ``--src-field`` (repeatable: one segment each) and ``--tgt-field`` (``xsum`` defaults to
  document/summary); ``--id-field`` (default ``id``) when present, else the line index;
* SQuAD JSON (``squad-qg`` only; the official nested layout data/paragraphs/qas or the flat HF layout):
  src = [context, first answer text], tgt = question, id = question id; unanswerable questions (SQuAD 2.0)
  are skipped and counted under "unanswerable".
"""
from __future__ import annotations

import os
from collections import Counter
from typing import Iterator

from tqdm import tqdm

from unimo.utils.errors import UserError

from .common import AtomicOutputs, DataError, IssueLog, UsageError, check_kept, iter_jsonl_objects, load_json, \
    make_summary, read_lines, split_from_name

NAMES = ("cnndm", "gigaword", "squad-qg", "xsum", "seq2seq-jsonl")
_PAIRS = ((".src", ".tgt"), (".source", ".target"))
_SKIP_COLUMNS = ("tgt", "knowledge", "id")


def _jobs(name: str, inputs: list[str], split: str | None) -> list[tuple[str, str, tuple[str, ...]]]:
    """(split, kind, paths) per input file; kinds: pair, tsv, jsonl, squad."""
    files: list[str] = []
    for p in inputs:
        p = str(p)
        if os.path.isdir(p):
            files += sorted(os.path.join(p, f) for f in os.listdir(p) if not f.startswith("."))
        elif os.path.isfile(p):
            files.append(p)
        elif os.path.exists(p):
            raise UserError("not a regular file or a directory", file=p, hint="give data files or a folder of them")
        else:
            raise FileNotFoundError(f"input not found: {p}")
    jobs = []
    names = set(files)
    for f in files:
        stem, ext = os.path.splitext(f)
        if ext in (".src", ".source"):
            tgt_ext = dict(_PAIRS)[ext]
            if stem + tgt_ext not in names and not os.path.isfile(stem + tgt_ext):
                raise FileNotFoundError(f"{f} has no parallel target file {stem + tgt_ext}")
            jobs.append(("pair", (f, stem + tgt_ext)))
        elif ext in (".tgt", ".target"):
            src_ext = {v: k for k, v in _PAIRS}[ext]
            if stem + src_ext not in names and not os.path.isfile(stem + src_ext):
                raise FileNotFoundError(f"{f} has no parallel source file {stem + src_ext}")
            # picked up with its source file
        elif ext == ".tsv":
            jobs.append(("tsv", (f,)))
        elif ext == ".jsonl":
            jobs.append(("jsonl", (f,)))
        elif ext == ".json" and name == "squad-qg":
            jobs.append(("squad", (f,)))
        elif len(inputs) == 1 and not os.path.isdir(str(inputs[0])):
            raise UsageError(f"{f}: unsupported input for {name} (expected .src/.tgt, .tsv, .jsonl"
                             f"{', .json' if name == 'squad-qg' else ''})")
    if not jobs:
        raise FileNotFoundError(f"no {name} input files found in {', '.join(map(str, inputs))}")
    if split and len(jobs) > 1:
        raise UsageError("--split names one split: give a single input with it")
    out, seen = [], {}
    for kind, paths in jobs:
        # SQuAD files are named like train-v2.0.json -> "train"; text files keep their stem (dev.2k stays dev.2k)
        s = split or (split_from_name(paths[0]) if kind == "squad" else split_from_name(paths[0], ()))
        if s in seen:
            raise UsageError(f"{paths[0]} and {seen[s]} both map to split {s!r}; convert them separately")
        seen[s] = paths[0]
        out.append((s, kind, paths))
    return out


def _text(v, path: str, line, field: str) -> str:
    if not isinstance(v, str):
        raise DataError(path, line, field, f"missing or not a string: {v!r:.60}",
                        "missing_field" if v is None else "bad_type")
    v = v.strip()
    if not v:
        raise DataError(path, line, field, "empty", "empty_text")
    return v


def _iter_pair(src_path: str, tgt_path: str, log: IssueLog, progress: bool) -> Iterator[dict]:
    src_it, tgt_it = read_lines(src_path, progress), read_lines(tgt_path)
    i = -1
    while True:
        s, t = next(src_it, None), next(tgt_it, None)
        if s is None or t is None:
            if s is not None or t is not None:
                longer, shorter = (src_path, tgt_path) if s is not None else (tgt_path, src_path)
                raise DataError(longer, (s or t)[0], None, f"has more lines than {shorter} ({i + 1}); the parallel "
                                "files must align line by line", "line_count_mismatch")
            return
        i += 1
        try:
            yield {"id": str(i), "src": [_text(s[1], src_path, s[0], "src")], "tgt": _text(t[1], tgt_path, t[0], "tgt")}
        except DataError as err:
            log.report(err)


def _iter_tsv(path: str, log: IssueLog, progress: bool) -> Iterator[dict]:
    header = None
    i = -1
    for n, text in read_lines(path, progress):
        if header is None:
            header = text.split("\t")
            if "tgt" not in header:
                raise DataError(path, 1, "tgt", f"header {header} has no tgt column", "bad_header")
            src_cols = [c for c in header if c not in _SKIP_COLUMNS]
            if not src_cols:
                raise DataError(path, 1, None, f"header {header} has no source column", "bad_header")
            continue
        if not text.strip():
            continue
        i += 1
        try:
            cols = text.split("\t")
            if len(cols) != len(header):
                raise DataError(path, n, None, f"expected {len(header)} tab-separated columns, got {len(cols)}",
                                "bad_field_count")
            row = dict(zip(header, cols))
            yield {"id": row["id"].strip() if "id" in row else str(i),
                   "src": [_text(row[c], path, n, c) for c in src_cols], "tgt": _text(row["tgt"], path, n, "tgt")}
        except DataError as err:
            log.report(err)


def _iter_jsonl(path: str, src_fields: list[str], tgt_field: str, id_field: str, log: IssueLog,
                progress: bool) -> Iterator[dict]:
    i = -1
    for n, obj in iter_jsonl_objects(path, log, progress):
        i += 1
        try:
            ex_id = obj.get(id_field, i)
            if isinstance(ex_id, bool) or not isinstance(ex_id, (int, str)):
                raise DataError(path, n, id_field, f"not an id: {ex_id!r:.60}", "bad_id")
            yield {"id": str(ex_id), "src": [_text(obj.get(f), path, n, f) for f in src_fields],
                   "tgt": _text(obj.get(tgt_field), path, n, tgt_field)}
        except DataError as err:
            log.report(err)


def _squad_questions(path: str) -> Iterator[tuple[str, str, dict]]:
    """(where, context, qa) for both SQuAD layouts."""
    data = load_json(path)
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise DataError(path, None, "data", "expected a top-level object with a 'data' list (SQuAD json)",
                        "bad_layout")
    for i, art in enumerate(items):
        if isinstance(art, dict) and "paragraphs" in art:  # official layout
            paras = art["paragraphs"]
            if not isinstance(paras, list):
                raise DataError(path, f"data[{i}]", "paragraphs", "expected a list", "bad_layout")
            for j, para in enumerate(paras):
                where = f"data[{i}].paragraphs[{j}]"
                if not isinstance(para, dict) or not isinstance(para.get("qas"), list):
                    raise DataError(path, where, "qas", "expected an object with a 'qas' list", "bad_layout")
                for k, qa in enumerate(para["qas"]):
                    yield f"{where}.qas[{k}]", para.get("context"), qa
        else:  # flat layout: one question per item, answers {"text": [...], "answer_start": [...]}
            yield f"data[{i}]", art.get("context") if isinstance(art, dict) else None, art


def _iter_squad(path: str, log: IssueLog, stats: Counter, progress: bool) -> Iterator[dict]:
    for where, context, qa in tqdm(_squad_questions(path), desc=os.path.basename(path), disable=not progress,
                                   leave=False):
        try:
            if not isinstance(qa, dict):
                raise DataError(path, where, None, "expected an object", "bad_type")
            answers = qa.get("answers")
            if isinstance(answers, dict):  # flat layout
                texts = answers.get("text")
            elif isinstance(answers, list):
                texts = [a.get("text") if isinstance(a, dict) else None for a in answers]
            elif answers is None and qa.get("is_impossible"):
                texts = []
            else:
                raise DataError(path, where, "answers", f"expected a list or a {{text: [...]}} object, got "
                                f"{answers!r:.60}", "bad_type")
            if not isinstance(texts, list):
                raise DataError(path, where, "answers.text", "expected a list", "bad_type")
            if qa.get("is_impossible") or not texts:
                stats["unanswerable"] += 1
                continue
            qid = qa.get("id")
            if isinstance(qid, bool) or not isinstance(qid, (int, str)):
                raise DataError(path, where, "id", f"missing or not an id: {qid!r:.60}", "bad_id")
            yield {"id": str(qid), "src": [_text(context, path, where, "context"),
                                           _text(texts[0], path, where, "answers[0].text")],
                   "tgt": _text(qa.get("question"), path, where, "question")}
        except DataError as err:
            log.report(err)


def convert_seq2seq(name: str, inputs: list[str], output_dir: str, skip_bad: bool = False, progress: bool = True,
                    split: str | None = None, src_fields: list[str] | None = None, tgt_field: str | None = None,
                    id_field: str = "id", overwrite: bool = False) -> dict:
    """Convert generation data for ``name`` (one of NAMES); see the module docstring for the inputs."""
    if name not in NAMES:
        raise UsageError(f"unknown seq2seq dataset {name!r}; expected one of {', '.join(NAMES)}")
    if name == "xsum":
        src_fields, tgt_field = src_fields or ["document"], tgt_field or "summary"
    jobs = _jobs(name, inputs, split)
    if any(kind == "jsonl" for _, kind, _ in jobs) and not (src_fields and tgt_field):
        raise UsageError("JSONL input needs --src-field and --tgt-field (xsum defaults to document/summary)")
    log = IssueLog(skip_bad)
    stats: Counter[str] = Counter()
    with AtomicOutputs(output_dir, overwrite) as out:
        for s, kind, paths in jobs:
            w = out.jsonl(f"{s}.jsonl")
            kept_before, skipped_before = w.count, Counter(log.skipped)
            if kind == "pair":
                it = _iter_pair(paths[0], paths[1], log, progress)
            elif kind == "tsv":
                it = _iter_tsv(paths[0], log, progress)
            elif kind == "jsonl":
                it = _iter_jsonl(paths[0], list(src_fields), tgt_field, id_field, log, progress)
            else:
                it = _iter_squad(paths[0], log, stats, progress)
            for ex in it:
                w.write(ex)
            check_kept(paths[0], f"split '{s}'", w.count - kept_before, log, skipped_before, out)
    return make_summary(name, [p for _, _, ps in jobs for p in ps], out, log, **dict(sorted(stats.items())))
