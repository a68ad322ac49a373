"""VQA answer normalisation for the converter: the official evaluation's own normalisation
(``unimo.eval.vqa``, a copy of ``vqaEval.py`` quirks included), so that answer labels are exactly the strings the
metric compares. Cached: annotator answers repeat heavily ("yes", "2", ...)."""
from __future__ import annotations

from functools import lru_cache

from unimo.eval.vqa import normalize_answer as _official_normalize
from unimo.eval.vqa import process_digit_article, process_punctuation

__all__ = ["normalize_answer", "process_punctuation", "process_digit_article"]


@lru_cache(maxsize=1 << 18)
def normalize_answer(answer: str) -> str:
    """The official VQA answer normalisation."""
    return _official_normalize(answer)
