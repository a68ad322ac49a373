"""VQA v2 questions + annotations -> ``vqa_{split}.jsonl`` and ``answer_vocab.json``.

Soft targets: an answer given by c of the n annotators (n = 10 in VQA v2) scores the official leave-one-out
accuracy ``(c*min((c-1)/3, 1) + (n-c)*min(c/3, 1)) / n`` -- the mean over the n "leave one annotator out" subsets
of min(#matches/3, 1). A model predicting that answer therefore earns exactly its target score in expectation
under the official metric (0.3, 0.6, 0.9, 1.0 for c = 1, 2, 3, >=4 when n = 10). Answers are normalised with the
official VQA normalisation (:mod:`.vqa_normalize`) before counting, so "two" and "2" are one answer.

Answer vocabulary (the usual bottom-up-attention convention): count the normalised ``multiple_choice_answer`` of
every question in the vocabulary splits (train by default, train+val when asked), keep answers seen at least
``min_count`` (9) times, most frequent first (ties alphabetical), at most ``max_answers`` (3129).
"""
from __future__ import annotations

import os
from collections import Counter
from fractions import Fraction
from functools import lru_cache
from typing import Iterable

from tqdm import tqdm

from .common import AtomicOutputs, DataError, IssueLog, UsageError, check_input_dir, check_kept, load_json, \
    make_summary
from .vqa_normalize import normalize_answer

# file names of the official release (visualqa.org)
STANDARD_FILES = {
    "train": ("v2_OpenEnded_mscoco_train2014_questions.json", "v2_mscoco_train2014_annotations.json"),
    "val": ("v2_OpenEnded_mscoco_val2014_questions.json", "v2_mscoco_val2014_annotations.json"),
    "test": ("v2_OpenEnded_mscoco_test2015_questions.json", None),
    "test-dev": ("v2_OpenEnded_mscoco_test-dev2015_questions.json", None),
}


@lru_cache(maxsize=None)  # a handful of (count, n) pairs; exact Fraction arithmetic is slow
def vqa_score(count: int, n_annotators: int = 10) -> float:
    """Official leave-one-out VQA accuracy of an answer that ``count`` of ``n_annotators`` humans gave."""
    if n_annotators <= 0 or not 0 <= count <= n_annotators:
        raise ValueError(f"need 0 <= count <= n_annotators and n_annotators > 0, got {count}, {n_annotators}")
    c, n = count, n_annotators
    s = (c * min(Fraction(c - 1, 3), Fraction(1)) if c else Fraction(0)) + (n - c) * min(Fraction(c, 3), Fraction(1))
    return float(s / n)


def find_standard_files(input_dir: str) -> tuple[dict[str, str], dict[str, str]]:
    """The official file names present in ``input_dir`` -> ({split: questions}, {split: annotations})."""
    check_input_dir(input_dir, "--input of vqa-v2 is the folder holding the official files; name single files with "
                    "--questions SPLIT=PATH / --annotations SPLIT=PATH")
    qs, anns = {}, {}
    for split, (q, a) in STANDARD_FILES.items():
        if os.path.isfile(os.path.join(input_dir, q)):
            qs[split] = os.path.join(input_dir, q)
        if a and os.path.isfile(os.path.join(input_dir, a)):
            anns[split] = os.path.join(input_dir, a)
    if not qs:
        raise FileNotFoundError(f"no VQA v2 questions file ({', '.join(q for q, _ in STANDARD_FILES.values())}) "
                                f"in {input_dir}")
    return qs, anns


def _id(v, path: str, where: str, field: str) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, str)) or str(v).strip() == "":
        raise DataError(path, where, field, f"missing or not an id: {v!r:.60}", "bad_id")
    return str(v)


def _load_list(path: str, key: str) -> list:
    data = load_json(path)
    items = data.get(key) if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise DataError(path, None, key, f"expected a top-level object with a '{key}' list", "bad_layout")
    return items


def _load_annotations(path: str, log: IssueLog) -> dict[str, tuple[str, dict]]:
    out: dict[str, tuple[str, dict]] = {}
    for i, a in enumerate(_load_list(path, "annotations")):
        where = f"annotations[{i}]"
        try:
            if not isinstance(a, dict):
                raise DataError(path, where, None, "expected an object", "bad_type")
            qid = _id(a.get("question_id"), path, where, "question_id")
            if qid in out:
                raise DataError(path, where, "question_id", f"duplicate annotation of question {qid}", "duplicate")
            out[qid] = (where, a)
        except DataError as err:
            log.report(err)
    return out


def _answers(a: dict, path: str, where: str, stats: Counter) -> tuple[list[dict], str]:
    answers = a.get("answers")
    if not isinstance(answers, list) or not answers:
        raise DataError(path, where, "answers", "missing or empty list of annotator answers", "no_answers")
    norm = []
    for k, ans in enumerate(answers):
        text = ans.get("answer") if isinstance(ans, dict) else None
        if not isinstance(text, str):
            raise DataError(path, where, f"answers[{k}].answer", f"missing or not a string: {text!r:.60}",
                            "bad_type")
        norm.append(normalize_answer(text))
    if len(norm) != 10:
        stats["questions_without_10_answers"] += 1
    counts = Counter(norm)
    if "" in counts:  # an answer that normalises to nothing ("." or "the") can match no prediction
        stats["annotator_answers_empty_after_normalisation"] += counts.pop("")
    scored = [{"answer": t, "score": vqa_score(c, len(norm))} for t, c in counts.items()]
    scored.sort(key=lambda d: (-d["score"], d["answer"]))
    mc = a.get("multiple_choice_answer")
    if not isinstance(mc, str):
        raise DataError(path, where, "multiple_choice_answer", f"missing or not a string: {mc!r:.60}", "bad_type")
    return scored, normalize_answer(mc)


def convert_vqa_v2(output_dir: str, questions: dict[str, str] | None = None,
                   annotations: dict[str, str] | None = None, input_dir: str | None = None, skip_bad: bool = False,
                   progress: bool = True, min_count: int = 9, max_answers: int = 3129,
                   vocab_splits: Iterable[str] = ("train",), overwrite: bool = False) -> dict:
    """Convert VQA v2. ``questions``/``annotations`` map a split name to a file; ``input_dir`` adds the official
    file names found there. Splits without annotations (test, test-dev) get ``"answers": []`` and null
    ``multiple_choice_answer``/``answer_type``/``question_type``.
    """
    questions, annotations = dict(questions or {}), dict(annotations or {})
    if input_dir:
        q2, a2 = find_standard_files(input_dir)
        questions = {**q2, **questions}
        annotations = {**a2, **annotations}
    if not questions:
        raise UsageError("no questions file given (use input_dir or questions={split: path})")
    for split in annotations:
        if split not in questions:
            raise UsageError(f"annotations given for split {split!r} but no questions file")
    vocab_splits = list(vocab_splits)
    for split in vocab_splits:
        if split not in annotations:
            raise UsageError(f"answer-vocabulary split {split!r} has no annotations file")
    if min_count < 1 or max_answers < 1:
        raise UsageError(f"min_count and max_answers must be >= 1, got {min_count}, {max_answers}")

    log = IssueLog(skip_bad)
    stats: Counter[str] = Counter()
    mc_counts: Counter[str] = Counter()
    per_split: dict[str, int] = {}
    inputs = [*questions.values(), *annotations.values()]
    with AtomicOutputs(output_dir, overwrite) as out:
        for split, qpath in questions.items():
            skipped_before = Counter(log.skipped)
            apath = annotations.get(split)
            anns = _load_annotations(apath, log) if apath else None
            used: set[str] = set()  # questions written
            seen: set[str] = set()  # every question id of the file, bad questions included
            w = out.jsonl(f"vqa_{split}.jsonl")
            for i, q in enumerate(tqdm(_load_list(qpath, "questions"), desc=f"vqa {split}", disable=not progress,
                                       leave=False)):
                where = f"questions[{i}]"
                try:
                    if not isinstance(q, dict):
                        raise DataError(qpath, where, None, "expected an object", "bad_type")
                    qid = _id(q.get("question_id"), qpath, where, "question_id")
                    seen.add(qid)
                    if qid in used:
                        raise DataError(qpath, where, "question_id", f"duplicate question {qid}", "duplicate")
                    image_id = _id(q.get("image_id"), qpath, where, "image_id")
                    text = q.get("question")
                    if not isinstance(text, str) or not text.strip():
                        raise DataError(qpath, where, "question", f"missing or empty: {text!r:.60}", "empty_text")
                    ex = {"question_id": qid, "image_id": image_id, "question": text.strip(), "answers": [],
                          "multiple_choice_answer": None, "answer_type": None, "question_type": None}
                    if anns is not None:
                        if qid not in anns:
                            raise DataError(qpath, where, "question_id", f"question {qid} has no annotation in "
                                            f"{apath}", "missing_annotation")
                        awhere, a = anns[qid]
                        if _id(a.get("image_id"), apath, awhere, "image_id") != image_id:
                            raise DataError(apath, awhere, "image_id", f"{a.get('image_id')} differs from the "
                                            f"question's image {image_id}", "image_mismatch")
                        ex["answers"], ex["multiple_choice_answer"] = _answers(a, apath, awhere, stats)
                        for key in ("answer_type", "question_type"):
                            v = a.get(key)
                            if not isinstance(v, str):
                                raise DataError(apath, awhere, key, f"missing or not a string: {v!r:.60}",
                                                "bad_type")
                            ex[key] = v
                except DataError as err:
                    log.report(err)
                    continue
                used.add(qid)
                if split in vocab_splits and ex["multiple_choice_answer"]:
                    mc_counts[ex["multiple_choice_answer"]] += 1
                w.write(ex)
            per_split[split] = w.count
            if anns is not None:
                for qid, (awhere, _) in anns.items():
                    if qid not in seen:
                        log.report(DataError(apath, awhere, "question_id", f"annotation of question {qid}, which "
                                             f"is not in {qpath}", "orphan_annotation"))
            check_kept(qpath, f"split '{split}'", w.count, log, skipped_before, out)

        kept = [(a, c) for a, c in mc_counts.items() if c >= min_count]
        kept.sort(key=lambda t: (-t[1], t[0]))
        vocab = [a for a, _ in kept[:max_answers]]
        out.json("answer_vocab.json", vocab)
    covered = sum(mc_counts[a] for a in vocab)
    total = sum(mc_counts.values())
    return make_summary("vqa-v2", inputs, out, log, questions=per_split,
                        answer_vocab={"size": len(vocab), "splits": vocab_splits, "min_count": min_count,
                                      "max_answers": max_answers, "candidates": len(kept),
                                      "smallest_count": kept[min(len(kept), max_answers) - 1][1] if kept else None,
                                      "question_coverage": covered / total if total else None},
                        notes=dict(sorted(stats.items())))
