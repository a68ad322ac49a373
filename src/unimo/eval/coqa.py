"""CoQA F1 / EM exactly as the official ``evaluate-v1.0.py`` computes them.

* normalisation: lowercase -> remove punctuation (``string.punctuation``) -> remove the words a/an/the ->
  collapse whitespace;
* token F1 with multiset overlap; an empty answer on either side scores 1 only if both are empty;
* several gold answers (the answer + ``additional_answers``): the average over the leave-one-out subsets of the
  max score against the remaining golds; a single gold: the score against it;
* reported as percentages (x100), overall and per source domain (in-domain: mctest, gutenberg, race, cnn,
  wikipedia; out-of-domain: reddit, science) when the official JSON is used.
"""
from __future__ import annotations

import os
import re
import string
from collections import Counter, OrderedDict
from typing import Mapping, Sequence

from .fileio import EvalInputError, load_json

IN_DOMAIN = ("mctest", "gutenberg", "race", "cnn", "wikipedia")
OUT_DOMAIN = ("reddit", "science")
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def _tokens(s: str) -> list[str]:
    return normalize_answer(s).split() if s else []


def exact_match(gold: str, pred: str) -> int:
    return int(normalize_answer(gold) == normalize_answer(pred))


def f1_score(gold: str, pred: str) -> float:
    g, p = _tokens(gold), _tokens(pred)
    if not g or not p:
        return float(g == p)  # no-answer on either side: 1 if both are empty, else 0
    same = sum((Counter(g) & Counter(p)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def turn_score(golds: Sequence[str], pred: str) -> dict[str, float]:
    """{"em", "f1"} of one turn (fractions), with the official multi-reference leave-one-out averaging."""
    if not golds:
        raise EvalInputError("a turn needs at least one gold answer")
    if len(golds) == 1:
        return {"em": float(exact_match(golds[0], pred)), "f1": f1_score(golds[0], pred)}
    em = f1 = 0.0
    for i in range(len(golds)):
        rest = list(golds[:i]) + list(golds[i + 1:])
        em += max(exact_match(a, pred) for a in rest)
        f1 += max(f1_score(a, pred) for a in rest)
    return {"em": em / len(golds), "f1": f1 / len(golds)}


def coqa_scores(preds: Sequence[str], golds: Sequence[Sequence[str]]) -> dict:
    """Mean F1 / EM in percent over aligned turns: ``golds[i]`` is the list of gold answers of turn ``i``."""
    if len(preds) != len(golds):
        raise EvalInputError(f"length mismatch: {len(preds)} predictions but {len(golds)} gold turns")
    if not preds:
        raise EvalInputError("no turns to evaluate")
    em = f1 = 0.0
    for i, (p, g) in enumerate(zip(preds, golds)):
        if not g:
            raise EvalInputError(f"turn {i + 1}: no gold answer")
        s = turn_score(g, p)
        em += s["em"]
        f1 += s["f1"]
    n = len(preds)
    return {"f1": 100.0 * f1 / n, "em": 100.0 * em / n, "turns": n}


def load_coqa_gold(path: str | os.PathLike) -> tuple["OrderedDict[tuple[str, int], list[str]]", dict[str, str]]:
    """Official CoQA data JSON -> ({(story_id, turn_id): [gold answers]}, {story_id: source})."""
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise EvalInputError(f"{path}: expected the official CoQA JSON with a \"data\" list")
    gold: OrderedDict = OrderedDict()
    sources: dict[str, str] = {}
    for si, story in enumerate(data["data"]):
        try:
            sid, questions, answers = story["id"], story["questions"], story["answers"]
        except (KeyError, TypeError):
            raise EvalInputError(f"{path}: data[{si}]: needs \"id\", \"questions\" and \"answers\"") from None
        sources[sid] = story.get("source", "unknown")
        answer_sets = [answers] + list((story.get("additional_answers") or {}).values())
        for qi, q in enumerate(questions):
            tid = q.get("turn_id")
            golds = []
            for aset in answer_sets:
                if qi >= len(aset):
                    raise EvalInputError(f"{path}: story {sid!r}: turn {tid}: an answer list is too short")
                a = aset[qi]
                if a.get("turn_id") != tid:
                    raise EvalInputError(f"{path}: story {sid!r}: question turn_id {tid} does not match "
                                         f"answer turn_id {a.get('turn_id')}")
                golds.append(a["input_text"])
            if (sid, tid) in gold:
                raise EvalInputError(f"{path}: duplicate story/turn ({sid!r}, {tid})")
            gold[(sid, tid)] = golds
    return gold, sources


def load_coqa_predictions(path: str | os.PathLike) -> dict[tuple[str, int], str]:
    """Official prediction JSON ``[{"id": story_id, "turn_id": int, "answer": str}]`` -> {(id, turn): answer}."""
    data = load_json(path)
    if not isinstance(data, list):
        raise EvalInputError(f"{path}: expected a JSON list of {{\"id\", \"turn_id\", \"answer\"}}")
    out: dict = {}
    for i, p in enumerate(data):
        if not isinstance(p, dict) or not {"id", "turn_id", "answer"} <= set(p):
            raise EvalInputError(f"{path}: entry {i}: needs \"id\", \"turn_id\" and \"answer\"")
        key = (p["id"], p["turn_id"])
        if key in out:
            raise EvalInputError(f"{path}: entry {i}: duplicate prediction for story {key[0]!r} turn {key[1]}")
        out[key] = p["answer"]
    return out


def coqa_official(gold: Mapping[tuple[str, int], Sequence[str]], sources: Mapping[str, str],
                  preds: Mapping[tuple[str, int], str], *, allow_missing: bool = False) -> dict:
    """Per-domain, in-domain, out-of-domain and overall {"em", "f1", "turns"} (percent, unrounded)."""
    unknown = [k for k in preds if k not in gold]
    if unknown:
        raise EvalInputError(f"prediction for story {unknown[0][0]!r} turn {unknown[0][1]} not in the gold file")
    missing = [k for k in gold if k not in preds]
    if missing and not allow_missing:
        raise EvalInputError(f"missing prediction for story {missing[0][0]!r} turn {missing[0][1]} "
                             f"({len(missing)} turns; --allow-missing scores the rest, as the official script does)")
    per: dict[str, dict[str, float]] = {}
    for key, golds in gold.items():
        if key not in preds:
            continue
        s = turn_score(golds, preds[key])
        d = per.setdefault(sources[key[0]], {"em": 0.0, "f1": 0.0, "turns": 0})
        d["em"] += s["em"]
        d["f1"] += s["f1"]
        d["turns"] += 1
    if not per:
        raise EvalInputError("no turns to evaluate")

    def agg(names) -> dict | None:
        rows = [per[n] for n in names if n in per]
        t = sum(r["turns"] for r in rows)
        if t == 0:
            return None
        return {"em": 100.0 * sum(r["em"] for r in rows) / t, "f1": 100.0 * sum(r["f1"] for r in rows) / t,
                "turns": t}

    out = OrderedDict((src, agg([src])) for src in sorted(per))
    out["in_domain"] = agg(IN_DOMAIN)
    out["out_domain"] = agg(OUT_DOMAIN)
    # the official "overall" pools in- and out-of-domain turns only (other sources are ignored there)
    out["overall"] = agg(IN_DOMAIN + OUT_DOMAIN) or agg(list(per))
    res = {"f1": out["overall"]["f1"], "em": out["overall"]["em"], "turns": out["overall"]["turns"],
           "num_missing_predictions": len(missing), "by_domain": dict(out)}
    return res
