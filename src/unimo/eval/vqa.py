"""VQA accuracy as the official VQA evaluation (``vqaEval.py`` of GT-Vision-Lab/VQA) computes it.

* The predicted answer: newlines/tabs -> spaces, strip, then punctuation processing and digit/article/
  contraction processing (below).
* The 10 human answers are compared raw, except that when they are not all identical they get the punctuation
  processing only (the official script's exact asymmetry).
* Accuracy of a question = average over the 10 leave-one-out subsets of ``min(#matches among the other 9 / 3,
  1)``; reported as percentages, overall and per answer type / question type (unrounded; the official script
  rounds to 2 decimals for display).

Punctuation processing: for each of ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !``: delete it when it is next to a
space or the text contains a digit-comma-digit ("1,000"), else replace it by a space; then delete periods not
followed by a digit (the official regex, with its ``count=re.UNICODE`` = at most 32 replacements). Digit/article
processing: lowercase, split on whitespace, number words "none"/"zero".."ten" -> digits, drop a/an/the, restore
apostrophes of common contractions ("dont" -> "don't").
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from typing import Mapping, Sequence

from .fileio import EvalInputError, load_json, write_json_atomic

CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's",
    "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}
NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = frozenset(["a", "an", "the"])
PUNCT = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
# kept verbatim, typo included: "(?!<=\d)" is a (vacuous) negative lookahead, not a lookbehind
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")


def process_punctuation(text: str) -> str:
    out = text
    has_digit_comma = _COMMA_STRIP.search(text) is not None
    for p in PUNCT:
        if (p + " " in text or " " + p in text) or has_digit_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    # the official call passes re.UNICODE (32) positionally, i.e. as the replacement *count*
    return _PERIOD_STRIP.sub("", out, re.UNICODE)


def process_digit_article(text: str) -> str:
    words = []
    for w in text.lower().split():
        w = NUMBER_WORDS.get(w, w)
        if w not in ARTICLES:
            words.append(w)
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def normalize_answer(answer: str) -> str:
    """The full normalisation applied to a predicted answer."""
    a = answer.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(a))


def vqa_accuracy(pred: str, gt_answers: Sequence[str]) -> float:
    """Official accuracy (fraction in [0, 1]) of one predicted answer against the human answers (usually 10)."""
    if not gt_answers:
        raise EvalInputError("a question needs at least one ground-truth answer")
    res = normalize_answer(pred)
    gts = list(gt_answers)
    if len(set(gts)) > 1:
        gts = [process_punctuation(a) for a in gts]
    accs = []
    for i in range(len(gts)):
        others = gts[:i] + gts[i + 1:]
        accs.append(min(1.0, sum(1 for a in others if a == res) / 3.0))
    return sum(accs) / len(accs)


def vqa_evaluate(results: Mapping[int, str], annotations: Mapping[int, dict], *,
                 allow_missing: bool = False, progress: bool = False) -> dict:
    """Overall / per-answer-type / per-question-type accuracy in percent.

    ``results``: question_id -> predicted answer. ``annotations``: question_id -> official annotation dict
    (``answers`` list of {"answer"}, ``answer_type``, ``question_type``). As the official ``loadRes``, results must
    cover exactly the annotated questions (``allow_missing`` scores the answered subset and reports the count).
    """
    from tqdm import tqdm

    unknown = [q for q in results if q not in annotations]
    if unknown:
        raise EvalInputError(f"result for question_id {unknown[0]!r} which is not in the annotations "
                             f"({len(unknown)} such ids)")
    missing = [q for q in annotations if q not in results]
    if missing and not allow_missing:
        raise EvalInputError(f"no result for question_id {missing[0]!r} ({len(missing)} annotated questions "
                             "unanswered; --allow-missing scores the answered subset)")
    if not results:
        raise EvalInputError("no results to evaluate")
    accs: list[float] = []
    by_ans: dict[str, list[float]] = {}
    by_ques: dict[str, list[float]] = {}
    for qid in tqdm(list(results), desc="vqa", disable=not progress):
        ann = annotations[qid]
        acc = vqa_accuracy(results[qid], [a["answer"] for a in ann["answers"]])
        accs.append(acc)
        by_ans.setdefault(ann.get("answer_type", "unknown"), []).append(acc)
        by_ques.setdefault(ann.get("question_type", "unknown"), []).append(acc)

    def pct(v: list[float]) -> float:
        return 100.0 * sum(v) / len(v)

    return {
        "overall": pct(accs),
        "perAnswerType": OrderedDict((k, pct(v)) for k, v in sorted(by_ans.items())),
        "perQuestionType": OrderedDict((k, pct(v)) for k, v in sorted(by_ques.items())),
        "num_questions": len(accs),
        "num_missing_predictions": len(missing),
    }


def load_vqa_results(path: str | os.PathLike) -> dict[int, str]:
    """Official results format ``[{"question_id": int, "answer": str}]`` -> {question_id: answer}."""
    data = load_json(path)
    if not isinstance(data, list):
        raise EvalInputError(f"{path}: expected a JSON list of {{\"question_id\", \"answer\"}}")
    out: dict[int, str] = {}
    for i, r in enumerate(data):
        if not isinstance(r, dict) or "question_id" not in r or "answer" not in r:
            raise EvalInputError(f"{path}: entry {i}: needs \"question_id\" and \"answer\"")
        if not isinstance(r["answer"], str):
            raise EvalInputError(f"{path}: entry {i} (question_id {r['question_id']!r}): answer is not a string")
        if r["question_id"] in out:
            raise EvalInputError(f"{path}: entry {i}: duplicate result for question_id {r['question_id']!r}")
        out[r["question_id"]] = r["answer"]
    return out


def load_vqa_annotations(ann_path: str | os.PathLike,
                         ques_path: str | os.PathLike | None = None) -> dict[int, dict]:
    """Official annotation (and optionally question) JSON -> {question_id: annotation}.

    With the questions file, its question ids must be exactly the annotated ones (as the official VQA API
    asserts) and each annotation gains its ``question`` text.
    """
    data = load_json(ann_path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise EvalInputError(f"{ann_path}: expected the official VQA annotation JSON with an \"annotations\" list")
    anns: dict[int, dict] = {}
    for i, a in enumerate(data["annotations"]):
        if not isinstance(a, dict) or "question_id" not in a or not isinstance(a.get("answers"), list):
            raise EvalInputError(f"{ann_path}: annotations[{i}]: needs \"question_id\" and an \"answers\" list")
        if not a["answers"]:
            raise EvalInputError(f"{ann_path}: annotations[{i}] (question_id {a['question_id']}): empty answers")
        for j, ans in enumerate(a["answers"]):
            if not isinstance(ans, dict) or not isinstance(ans.get("answer"), str):
                raise EvalInputError(f"{ann_path}: annotations[{i}] (question_id {a['question_id']}): "
                                     f"answers[{j}] has no string \"answer\"")
        if a["question_id"] in anns:
            raise EvalInputError(f"{ann_path}: duplicate question_id {a['question_id']!r}")
        anns[a["question_id"]] = a
    if ques_path is not None:
        qdata = load_json(ques_path)
        if not isinstance(qdata, dict) or not isinstance(qdata.get("questions"), list):
            raise EvalInputError(f"{ques_path}: expected the official VQA question JSON with a \"questions\" list")
        qids = set()
        for i, q in enumerate(qdata["questions"]):
            if not isinstance(q, dict) or "question_id" not in q:
                raise EvalInputError(f"{ques_path}: questions[{i}]: needs \"question_id\"")
            qid = q["question_id"]
            if qid not in anns:
                raise EvalInputError(f"{ques_path}: question_id {qid!r} has no annotation in {ann_path}")
            qids.add(qid)
            anns[qid] = {**anns[qid], "question": q.get("question")}
        extra = [q for q in anns if q not in qids]
        if extra:
            raise EvalInputError(f"{ann_path}: question_id {extra[0]!r} is not in {ques_path}")
    return anns


def write_vqa_results(path: str | os.PathLike, answers: Mapping[int, str]) -> None:
    """Write predictions in the official submission format ``[{"question_id": int, "answer": str}]`` (atomic)."""
    rows = []
    for qid, ans in answers.items():
        if not isinstance(ans, str):
            raise EvalInputError(f"question_id {qid!r}: answer is not a string")
        rows.append({"question_id": int(qid), "answer": ans})
    write_json_atomic(path, rows, indent=None)
