"""CIDEr-D with a fixed document-frequency corpus: the reward of self-critical sequence training
(``unimo.finetune.tasks.scst``), pycocoevalcap's arithmetic (``pycocoevalcap/cider/cider_scorer.py``) with the
document frequencies computed once from all training references instead of on every call."""
from __future__ import annotations

import math
from collections import Counter, OrderedDict
from typing import Sequence

import numpy as np
from tqdm import tqdm

_MAX_KEY_BASE = 55108  # base ** 4 must fit in int64: 55108 ** 4 < 2 ** 63


# ----------------------------------------------------------------------------------------------------------------
def _ngram_counts(words: Sequence[str], n: int) -> Counter:
    """pycocoevalcap ``precook``: counts of every 1..n-gram (tuples), in its insertion order."""
    counts: Counter = Counter()
    for k in range(1, n + 1):
        counts.update(zip(*(words[i:] for i in range(k))))
    return counts


class CiderD:
    """CIDEr-D (pycocoevalcap's ``Cider``: clipped tf-idf n-gram cosine, n = 1..4, Gaussian length penalty with
    sigma 6 on the bigram-count difference, mean over n-gram orders and references, x10) whose document frequencies
    come from a fixed reference corpus, computed once.

    ``corpus_refs[i]`` are the *tokenized* references of image i (space-separated tokens). pycocoevalcap computes
    df (and ref_len = log #images) from the references of the images being scored; with the same image set the
    scores are identical. Memory stays small on COCO-sized corpora: n-grams are 64-bit integer keys of word ids
    (df = sorted key array + counts), reference vectors are built on demand (small LRU cache).
    """

    def __init__(self, corpus_refs: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0,
                 progress: bool = False, cache_size: int = 4096):
        if n < 1 or n > 4:
            raise ValueError(f"CIDEr-D n-gram order must be 1..4, got {n}")
        if not corpus_refs:
            raise ValueError("CIDEr-D needs a non-empty reference corpus")
        self.n, self.sigma = n, float(sigma)
        self.refs: list[list[str]] = []
        self.words: dict[str, int] = {}
        per_image_keys = []
        for i, refs in enumerate(tqdm(corpus_refs, desc="cider-d df", disable=not progress)):
            refs = [str(r) for r in refs]
            if not refs:
                raise ValueError(f"CIDEr-D corpus: image {i} has no reference caption")
            self.refs.append(refs)
            keys = [self._ref_keys(r.split()) for r in refs]
            per_image_keys.append(np.unique(np.concatenate(keys)))  # df counts images, not captions
        if len(self.words) + 1 > _MAX_KEY_BASE:
            raise ValueError(f"CIDEr-D corpus has {len(self.words)} distinct words; 64-bit n-gram keys allow at most "
                             f"{_MAX_KEY_BASE - 1}")
        self.df_keys, df_counts = np.unique(np.concatenate(per_image_keys), return_counts=True)
        self.df_counts = df_counts.astype(np.float64)
        self.num_images = len(self.refs)
        self.ref_len = np.log(float(self.num_images))
        self._cache: OrderedDict[int, list] = OrderedDict()
        self._cache_size = cache_size
        self._idf: dict[tuple, float] = {}  # memo: n-gram -> ref_len - log(max(1, df)); captions reuse n-grams a lot

    # -- n-gram keys
    def _ref_keys(self, words: Sequence[str]) -> np.ndarray:
        ids = np.array([self.words.setdefault(w, len(self.words) + 1) for w in words], dtype=np.int64)
        return self._keys_of(ids)

    def _keys_of(self, ids: np.ndarray) -> np.ndarray:
        """Keys of every 1..n-gram of a word-id sequence; ids >= 1, so the base-B digits identify the n-gram."""
        base = _MAX_KEY_BASE
        out = []
        for k in range(1, self.n + 1):
            if len(ids) < k:
                break
            key = ids[:len(ids) - k + 1].copy()
            for j in range(1, k):
                key = key * base + ids[j:len(ids) - k + 1 + j]
            out.append(key)
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def _document_frequency(self, ngrams: Sequence[tuple]) -> np.ndarray:
        """df of each n-gram (0 for n-grams with a word outside the corpus or never seen)."""
        df = np.zeros(len(ngrams), np.float64)
        known = [i for i, g in enumerate(ngrams) if all(w in self.words for w in g)]
        if not known or not len(self.df_keys):
            return df
        keys = np.zeros(len(known), np.int64)
        for j, i in enumerate(known):
            key = 0
            for w in ngrams[i]:
                key = key * _MAX_KEY_BASE + self.words[w]
            keys[j] = key
        pos = np.minimum(np.searchsorted(self.df_keys, keys), len(self.df_keys) - 1)
        hit = self.df_keys[pos] == keys
        df[np.array(known)[hit]] = self.df_counts[pos[hit]]
        return df

    # -- vectors and similarity (pycocoevalcap ``counts2vec`` / ``sim``)
    def _vector(self, text: str) -> tuple[list[dict], list[float], int]:
        counts = _ngram_counts(text.split(), self.n)
        idf = self._idf
        missing = [g for g in counts if g not in idf]
        if missing:
            if len(idf) > 2_000_000:  # bound the memo
                idf.clear()
            for gram, d in zip(missing, self._document_frequency(missing)):
                idf[gram] = self.ref_len - np.log(max(1.0, d))
        vec: list[dict] = [{} for _ in range(self.n)]
        norm = [0.0] * self.n
        length = 0
        for gram, tf in counts.items():
            k = len(gram) - 1
            w = float(tf) * idf[gram]
            vec[k][gram] = w
            norm[k] += w * w
            if k == 1:  # pycocoevalcap counts the length in bigrams
                length += tf
        return vec, [math.sqrt(x) for x in norm], length

    def _similarity(self, hyp: tuple, ref: tuple) -> np.ndarray:
        vec_h, norm_h, len_h = hyp
        vec_r, norm_r, len_r = ref
        delta = float(len_h - len_r)
        val = np.array([0.0] * self.n)
        for k in range(self.n):
            for gram, w in vec_h[k].items():
                r = vec_r[k].get(gram, 0.0)
                val[k] += min(w, r) * r  # clipping (CIDEr-D)
            if norm_h[k] != 0 and norm_r[k] != 0:
                val[k] /= norm_h[k] * norm_r[k]
            val[k] *= np.e ** (-(delta ** 2) / (2 * self.sigma ** 2))
        return val

    def _ref_vectors(self, image: int) -> list:
        hit = self._cache.get(image)
        if hit is None:
            hit = [self._vector(r) for r in self.refs[image]]
            self._cache[image] = hit
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(image)
        return hit

    def _score_vectors(self, hyp: tuple, refs: Sequence[tuple]) -> float:
        score = np.array([0.0] * self.n)
        for ref in refs:
            score += self._similarity(hyp, ref)
        return float(np.mean(score) / len(refs) * 10.0)

    # -- public
    def score(self, hypothesis: str, image: int) -> float:
        """CIDEr-D of a tokenized hypothesis against the references of corpus image ``image``."""
        if not 0 <= int(image) < self.num_images:
            raise IndexError(f"image index {image} outside the CIDEr-D corpus (0..{self.num_images - 1})")
        return self._score_vectors(self._vector(hypothesis), self._ref_vectors(int(image)))

    def score_refs(self, hypothesis: str, refs: Sequence[str]) -> float:
        """CIDEr-D against arbitrary tokenized references, with the corpus document frequencies."""
        if not refs:
            raise ValueError("score_refs needs at least one reference")
        return self._score_vectors(self._vector(hypothesis), [self._vector(r) for r in refs])

    def scores(self, hypotheses: Sequence[str], images: Sequence[int]) -> np.ndarray:
        return np.array([self.score(h, i) for h, i in zip(hypotheses, images)], dtype=np.float64)
