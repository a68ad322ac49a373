"""GLUE TSVs (SST-2, CoLA, MNLI, STS-B) -> ``{split}.jsonl`` {"text_a", "text_b"?, "label", "qid"?} + labels.json.

Layouts (the GLUE release, ``download_glue_data.py``):

* SST-2: ``sentence\\tlabel`` header (train/dev); test ``index\\tsentence``.
* CoLA: train/dev have **no header**, 4 columns ``source, label, original_judgement, sentence``; test has an
  ``index\\tsentence`` header.
* MNLI: header with ``index, ..., sentence1, sentence2, ..., gold_label``; files train, dev_matched,
  dev_mismatched, test_matched, test_mismatched (no gold_label), and the AX ``diagnostic.tsv``
  (``index, sentence1, sentence2``).
* STS-B: header with ``index, ..., sentence1, sentence2, score``; test has no score.

Unlabelled (test) rows get ``"label": null``; ``qid`` is the ``index`` column (what GLUE submissions need).
Class labels are strings; labels.json lists them in id order (MNLI: entailment, neutral, contradiction, the order
of the GLUE/HF release; the official UNIMO MNLI head's order is undocumented).
"""
from __future__ import annotations

import math
from collections import Counter

from .common import AtomicOutputs, DataError, IssueLog, UsageError, check_kept, list_inputs, make_summary, \
    read_lines, split_from_name

TASKS = {
    # name: (text_a column, text_b column, label column, label names or None for regression)
    "sst-2": ("sentence", None, "label", ["0", "1"]),
    "cola": ("sentence", None, "label", ["0", "1"]),
    "mnli": ("sentence1", "sentence2", "gold_label", ["entailment", "neutral", "contradiction"]),
    "sts-b": ("sentence1", "sentence2", "score", None),
}
COLA_NO_HEADER = ["source", "label", "original_label", "sentence"]
STSB_RANGE = (0.0, 5.0)


def _text(row: dict, col: str, path: str, n: int) -> str:
    v = row[col].strip()
    if not v:
        raise DataError(path, n, col, "empty", "empty_text")
    return v


def convert_glue(task: str, inputs: list[str], output_dir: str, skip_bad: bool = False, progress: bool = True,
                 split: str | None = None, overwrite: bool = False) -> dict:
    """Convert the TSVs of one GLUE task (files or the task folder); each file's stem is its split name."""
    task = task.lower()
    if task not in TASKS:
        raise UsageError(f"unknown GLUE task {task!r}; expected one of {', '.join(TASKS)}")
    col_a, col_b, col_label, label_names = TASKS[task]
    files = list_inputs(inputs, (".tsv",))
    if split and len(files) > 1:
        raise UsageError("--split names one split: give a single input file with it")
    log = IssueLog(skip_bad)
    per_split: dict[str, Counter] = {}
    with AtomicOutputs(output_dir, overwrite) as out:
        for path in files:
            name = split or split_from_name(path, ())
            w = out.jsonl(f"{name}.jsonl")
            kept_before, skipped_before = w.count, Counter(log.skipped)
            counts = per_split.setdefault(name, Counter())
            header: list[str] | None = None
            for n, text in read_lines(path, progress):
                if header is None:
                    cols = text.split("\t")
                    if task == "cola" and len(cols) == 4 and cols[0] != "index":
                        header = COLA_NO_HEADER  # headerless train/dev: this line is data
                    else:
                        header = cols
                        if col_a not in header:
                            raise DataError(path, 1, col_a, f"header {header} has no {col_a} column", "bad_header")
                        if col_b and col_b not in header:
                            raise DataError(path, 1, col_b, f"header {header} has no {col_b} column", "bad_header")
                        continue
                if not text.strip():
                    continue
                try:
                    cols = text.split("\t")
                    if len(cols) != len(header):
                        raise DataError(path, n, None, f"expected {len(header)} tab-separated columns, got "
                                        f"{len(cols)}", "bad_field_count")
                    row = dict(zip(header, cols))
                    ex: dict = {"text_a": _text(row, col_a, path, n)}
                    if col_b:
                        ex["text_b"] = _text(row, col_b, path, n)
                    label = None
                    if col_label in row:
                        raw = row[col_label].strip()
                        if label_names is not None:
                            if raw not in label_names:
                                raise DataError(path, n, col_label, f"{raw!r} is not one of {label_names}",
                                                "bad_label")
                            label = raw
                        else:
                            try:
                                label = float(raw)
                            except ValueError:
                                raise DataError(path, n, col_label, f"not a number: {raw!r}", "bad_label") from None
                            if not math.isfinite(label) or not STSB_RANGE[0] <= label <= STSB_RANGE[1]:
                                raise DataError(path, n, col_label, f"{raw!r} outside the similarity range "
                                                f"{list(STSB_RANGE)}", "bad_label")
                    ex["label"] = label
                    if "index" in row:
                        ex["qid"] = row["index"].strip()
                except DataError as err:
                    log.report(err)
                    continue
                w.write(ex)
                counts["unlabelled" if label is None else
                       (label if label_names is not None else "labelled")] += 1
            if header is None:
                raise DataError(path, None, None, "empty file", "empty_file")
            check_kept(path, f"split '{name}'", w.count - kept_before, log, skipped_before, out)
        if label_names is not None:
            out.json("labels.json", label_names)
    return make_summary(f"glue-{task}", files, out, log,
                        splits={s: dict(sorted(c.items())) for s, c in sorted(per_split.items())},
                        labels=label_names)


__all__ = ["convert_glue", "TASKS"]
