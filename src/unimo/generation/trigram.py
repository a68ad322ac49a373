"""Word-level trigram blocking as the official ``src/finetune/trigram_blocking.py``.

Sub-tokens are grouped into words: a token whose text starts with a space (or a special token) starts a new word,
any other token extends the current word. A candidate is penalised with ``BLOCK_DELTA`` when the last word-trigram
of ``prefix + [candidate]`` (the prefix includes the BOS) already occurred earlier in that sequence. The last word
may still be incomplete; words are compared as id tuples, exactly as the official id-string comparison.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

BLOCK_DELTA = -65000.0  # official value (close to the float16 minimum)

Word = tuple[int, ...]


def group_words(ids: Sequence[int], word_start: np.ndarray) -> list[Word]:
    """Split token ids into words (tuples of ids)."""
    words: list[list[int]] = []
    for t in ids:
        t = int(t)
        if word_start[t] or not words:
            words.append([t])
        else:
            words[-1].append(t)
    return [tuple(w) for w in words]


def _trigrams(words: Sequence[Word]) -> set[tuple[Word, Word, Word]]:
    return {(words[i], words[i + 1], words[i + 2]) for i in range(len(words) - 2)}


def block_deltas(prefix: Sequence[int], candidates: Sequence[int], word_start: np.ndarray) -> np.ndarray:
    """Delta (0 or ``BLOCK_DELTA``) for each candidate appended to ``prefix``; float32 array like ``candidates``."""
    words = group_words(prefix, word_start)
    out = np.zeros(len(candidates), dtype=np.float32)
    n = len(words)
    seen_all = seen_but_last = None  # built lazily: most steps of most beams never need them
    for j, c in enumerate(candidates):
        c = int(c)
        if word_start[c] or not words:
            # a new word: the sequence has n + 1 words; earlier trigrams are all trigrams of the prefix words
            if n + 1 <= 3:
                continue
            if seen_all is None:
                seen_all = _trigrams(words)
            if (words[-2], words[-1], (c,)) in seen_all:
                out[j] = BLOCK_DELTA
        else:
            # extends the last word: still n words; earlier trigrams are those that do not end at the last word
            if n <= 3:
                continue
            if seen_but_last is None:
                seen_but_last = _trigrams(words[:-1])
            if (words[-3], words[-2], words[-1] + (c,)) in seen_but_last:
                out[j] = BLOCK_DELTA
    return out


def has_repeated_trigram(ids: Sequence[int], word_start: np.ndarray) -> bool:
    """True when some word trigram occurs twice in ``ids`` (for checking outputs)."""
    words = group_words(ids, word_start)
    grams = [(words[i], words[i + 1], words[i + 2]) for i in range(len(words) - 2)]
    return len(grams) != len(set(grams))
