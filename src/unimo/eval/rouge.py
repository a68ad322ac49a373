"""ROUGE-1/2/L F1 for CNN/DailyMail and Gigaword with ``rouge_score`` set up to approximate ROUGE-1.5.5.

UniLM / UNIMO report pyrouge (ROUGE-1.5.5, ``-m`` = Porter stemming) F1, averaged over documents. The closest
``rouge_score`` configuration, used here:

* ``use_stemmer=True`` (rouge_score's tokenizer lowercases, maps non-alphanumerics to spaces and stems tokens
  longer than 3 characters with NLTK's Porter stemmer, its port of ROUGE-1.5.5's behaviour);
* the score of a corpus is the plain mean of per-document F1 (ROUGE-1.5.5's "Average_F"; the bootstrap
  interval is not computed);
* CNN/DM (``cnndm=True``): ROUGE-L is the *summary-level* LCS ("rougeLsum": union LCS over reference sentences),
  which is what ROUGE-1.5.5 computes when every sentence is its own line, as UniLM's CNN/DM eval writes them.
  With one text per line in our files, sentences are recovered from explicit separators (``<S_SEP>``,
  ``[X_SEP]``, ``<q>``, ``<n>``) if the text has any, else by a rule-based splitter (see
  :func:`split_sentences`);
* Gigaword (``cnndm=False``): a headline is a single sentence, so plain sentence-level "rougeL" (equal to
  rougeLsum for one sentence); no sentence splitting.
* ``gigaword_digits=True`` replaces every digit of the *prediction* with ``#``, as the Gigaword references
  (Rush et al. 2015 release) have their digits masked. Off by default.

The settings actually used are returned under ``"rouge_settings"``.
"""
from __future__ import annotations

import functools
import re
from typing import Sequence

from .fileio import EvalInputError, check_same_length

SENTENCE_MARKERS = ("<S_SEP>", "[X_SEP]", "<q>", "<n>")
_MARKER_RE = re.compile("|".join(re.escape(m) for m in SENTENCE_MARKERS))
# abbreviations that end in a period without ending the sentence (plus dotted acronyms such as "U.S.")
_ABBREV = frozenset("mr mrs ms dr prof st jr sr vs etc inc co corp ltd gen gov sen rep lt col sgt capt mt ft "
                    "no jan feb mar apr aug sep sept oct nov dec".split())
_ACRONYM = re.compile(r"(?:[A-Za-z]\.)+")
_CLOSERS = "'\")]"


def _rule_split(text: str) -> list[str]:
    sents: list[str] = []
    cur: list[str] = []
    for w in text.split():
        cur.append(w)
        core = w.rstrip(_CLOSERS)
        if not core or core[-1] not in ".!?":
            continue
        if core[-1] == "." and (_ACRONYM.fullmatch(core) or core[:-1].lower() in _ABBREV):
            continue
        sents.append(" ".join(cur))
        cur = []
    if cur:
        sents.append(" ".join(cur))
    return sents


def split_sentences(text: str) -> list[str]:
    """Split one document into sentences: newlines, else explicit markers, else the punctuation rule
    (a word ending in ``.``/``!``/``?``, possibly followed by closing quotes/brackets, ends a sentence unless it is
    an abbreviation or a dotted acronym). Empty parts are dropped."""
    if "\n" in text:
        parts = text.split("\n")
    elif _MARKER_RE.search(text):
        parts = _MARKER_RE.split(text)
    else:
        parts = _rule_split(text)
    return [p.strip() for p in parts if p.strip()]


class _CachedStemmer:
    """NLTK's Porter stemmer (the one rouge_score uses) with a memo: stemming is ~40% of the run time and a
    corpus repeats its words constantly. Same outputs as ``rouge_score``'s default stemming tokenizer."""

    def __init__(self) -> None:
        from nltk.stem import porter

        self.stem = functools.lru_cache(maxsize=1 << 18)(porter.PorterStemmer().stem)


def _make_tokenizer():
    from rouge_score import tokenize as rs_tokenize
    from rouge_score import tokenizers

    class _Tokenizer(tokenizers.Tokenizer):
        def __init__(self) -> None:
            self._stemmer = _CachedStemmer()

        def tokenize(self, text: str) -> list[str]:
            return rs_tokenize.tokenize(text, self._stemmer)

    return _Tokenizer()


def rouge_scores(preds: Sequence[str], refs: Sequence[str], *, cnndm: bool = False,
                 gigaword_digits: bool = False, progress: bool = False) -> dict:
    """Mean per-document ROUGE-1/2/L F1 (fractions in [0, 1]) of ``preds`` against ``refs`` (aligned lists).

    Returns {"rouge-1", "rouge-2", "rouge-l", "num_examples", "rouge_settings"}.
    """
    from rouge_score import rouge_scorer
    from tqdm import tqdm

    check_same_length("predictions", len(preds), "references", len(refs))
    if len(preds) == 0:
        raise EvalInputError("no examples to evaluate")
    l_type = "rougeLsum" if cnndm else "rougeL"
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", l_type], split_summaries=False,
                                      tokenizer=_make_tokenizer())
    totals = {"rouge1": 0.0, "rouge2": 0.0, l_type: 0.0}
    for i, (pred, ref) in enumerate(tqdm(zip(preds, refs), total=len(preds), desc="rouge", disable=not progress)):
        if not isinstance(pred, str) or not isinstance(ref, str):
            raise EvalInputError(f"example {i + 1}: prediction and reference must be strings")
        if gigaword_digits:
            pred = re.sub(r"[0-9]", "#", pred)
        if cnndm:
            pred = "\n".join(split_sentences(pred))
            ref = "\n".join(split_sentences(ref))
        else:  # sentence markers are not words
            pred, ref = _MARKER_RE.sub(" ", pred), _MARKER_RE.sub(" ", ref)
        scores = scorer.score(ref, pred)  # rouge_score takes (target, prediction)
        for k in totals:
            totals[k] += scores[k].fmeasure
    n = len(preds)
    return {
        "rouge-1": totals["rouge1"] / n,
        "rouge-2": totals["rouge2"] / n,
        "rouge-l": totals[l_type] / n,
        "num_examples": n,
        "rouge_settings": {
            "implementation": "rouge_score",
            "stemming": True,
            "aggregation": "mean of per-document F1",
            "rouge_l": ("summary-level rougeLsum, sentences split by markers "
                        f"{list(SENTENCE_MARKERS)} or by a [.!?] rule") if cnndm else "sentence-level rougeL",
            "gigaword_digits_to_hash": gigaword_digits,
        },
    }
