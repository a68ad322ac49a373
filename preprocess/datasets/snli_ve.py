"""SNLI-VE (``snli_ve_{train,dev,test}.jsonl`` from necla-ml/SNLI-VE) -> ``ve_{split}.jsonl``.

Each input line is an SNLI record whose premise image is ``Flickr30K_ID``; we keep ``sentence1`` (the caption the
hypothesis was written for) as the premise text and ``sentence2`` as the hypothesis. Labels use the SNLI order
entailment=0, neutral=1, contradiction=2 (``unimo.reader.datasets.VE_LABELS``); the official UNIMO files carry
0..2 ids whose order is undocumented, so a model fine-tuned on them may need its head permuted.
"""
from __future__ import annotations

from collections import Counter

from unimo.reader.datasets import VE_LABELS

from .common import AtomicOutputs, DataError, IssueLog, UsageError, check_kept, iter_jsonl_objects, list_inputs, \
    make_summary, split_from_name

LABEL_IDS = {name: i for i, name in enumerate(VE_LABELS)}


def _field(obj: dict, key: str, path: str, line: int, reason: str = "bad_type", allow_int: bool = False) -> str:
    v = obj.get(key)
    if allow_int and isinstance(v, int) and not isinstance(v, bool):  # ids may be written as numbers
        v = str(v)
    if not isinstance(v, str) or not v.strip():
        raise DataError(path, line, key, f"missing, empty or not a string: {v!r:.60}",
                        "missing_field" if v is None else reason)
    return v.strip()


def convert_snli_ve(inputs: list[str], output_dir: str, skip_bad: bool = False, progress: bool = True,
                    split: str | None = None, overwrite: bool = False) -> dict:
    """Convert SNLI-VE files (or folders holding them); the split comes from the file name unless ``split``."""
    files = list_inputs(inputs, (".jsonl",))
    if split and len(files) > 1:
        raise UsageError("--split names one split: give a single input file with it")
    log = IssueLog(skip_bad)
    labels: dict[str, Counter] = {}
    with AtomicOutputs(output_dir, overwrite) as out:
        for path in files:
            name = split or split_from_name(path)
            w = out.jsonl(f"ve_{name}.jsonl")
            kept_before, skipped_before = w.count, Counter(log.skipped)
            counts = labels.setdefault(name, Counter())
            pair_ids: set[str] = set()
            for n, obj in iter_jsonl_objects(path, log, progress):
                try:
                    label_name = _field(obj, "gold_label", path, n)
                    if label_name not in LABEL_IDS:
                        raise DataError(path, n, "gold_label", f"{label_name!r} is not one of {list(VE_LABELS)}",
                                        "bad_label")
                    ex = {"pair_id": _field(obj, "pairID", path, n, "bad_id", allow_int=True),
                          "image_id": _field(obj, "Flickr30K_ID", path, n, "bad_id", allow_int=True),
                          "premise": _field(obj, "sentence1", path, n, "empty_text"),
                          "hypothesis": _field(obj, "sentence2", path, n, "empty_text"),
                          "label": LABEL_IDS[label_name], "label_name": label_name}
                    if ex["pair_id"] in pair_ids:
                        raise DataError(path, n, "pairID", f"duplicate pair {ex['pair_id']}", "duplicate")
                    pair_ids.add(ex["pair_id"])
                except DataError as err:
                    log.report(err)
                    continue
                w.write(ex)
                counts[label_name] += 1
            check_kept(path, f"split '{name}'", w.count - kept_before, log, skipped_before, out)
    return make_summary("snli-ve", files, out, log,
                        labels={s: dict(sorted(c.items())) for s, c in sorted(labels.items())},
                        label_ids=dict(LABEL_IDS))
