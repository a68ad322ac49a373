"""Sparse TF-IDF retrieval: hard negatives from captions of *other* images, and related corpus texts.

Scores are exact cosine similarities of l2-normalized TF-IDF vectors (scikit-learn ``TfidfVectorizer``),
computed as sparse matrix products ``Q @ D.T`` over row batches. A batch is sized from the document
frequencies of its terms so the product never holds more than ``max_nnz`` non-zeros (bounded memory at any
corpus size); the top-k of each row is taken from the non-zeros only (``argpartition``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from .text import normalize

DEFAULT_MAX_NNZ = 20_000_000  # ~160 MB of float32 data + int64 indices per batch product


def make_vectorizer(max_df: float | int = 1.0) -> TfidfVectorizer:
    """The TF-IDF model used for retrieval (English stop words removed: "a"/"the" would match everything).

    ``max_df`` (scikit-learn semantics: a fraction of documents, or an absolute count when an int) drops the
    most frequent words too. Retrieval cost per query is the summed document frequency of its words, so this
    trades fidelity to plain TF-IDF for speed on very large caption sets; 1.0 keeps every word.
    """
    return TfidfVectorizer(lowercase=True, stop_words="english", dtype=np.float32, norm="l2", max_df=max_df)


def _row_cost(Q: sp.csr_matrix, df: np.ndarray) -> np.ndarray:
    """Upper bound on the non-zeros of each row of ``Q @ D.T``: the sum of its terms' document frequencies."""
    per_entry = df[Q.indices].astype(np.int64)
    csum = np.concatenate([[0], np.cumsum(per_entry)])
    return csum[Q.indptr[1:]] - csum[Q.indptr[:-1]]


def _batches(cost: np.ndarray, max_nnz: int):
    """Consecutive row ranges whose summed cost stays within ``max_nnz`` (always at least one row)."""
    m, start = len(cost), 0
    while start < m:
        total, stop = int(cost[start]), start + 1
        while stop < m and total + cost[stop] <= max_nnz:
            total += int(cost[stop])
            stop += 1
        yield start, stop
        start = stop


def _select(vals: np.ndarray, cols: np.ndarray, k: int, ex: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` (col, val) by value (ties: lower col), positive values only, ``ex`` columns removed."""
    want = k + (len(ex) if ex is not None else 0)
    if len(vals) > want:
        part = np.argpartition(vals, len(vals) - want)[len(vals) - want:]
        vals, cols = vals[part], cols[part]
    order = np.lexsort((cols, -vals))
    vals, cols = vals[order], cols[order]
    keep = vals > 0
    if ex is not None and len(ex):
        keep &= ~np.isin(cols, ex)
    return cols[keep][:k], vals[keep][:k]


def topk_sparse(Q: sp.csr_matrix, DT: sp.csr_matrix, k: int, df: np.ndarray,
                exclude: Sequence[np.ndarray] | None = None,
                max_nnz: int = DEFAULT_MAX_NNZ) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` columns of each row of ``Q @ DT`` by score, highest first (brute force over all candidates).

    ``exclude[r]`` lists columns row ``r`` may not return. Returns (indices, scores), both ``(rows, k)``;
    rows with fewer than ``k`` positive-score candidates are padded with -1 / 0.
    """
    m = Q.shape[0]
    idx = np.full((m, k), -1, dtype=np.int64)
    scores = np.zeros((m, k), dtype=np.float32)
    if m == 0 or k == 0:
        return idx, scores
    for start, stop in _batches(_row_cost(Q, df), max_nnz):
        S = (Q[start:stop] @ DT).tocsr()
        for r in range(stop - start):
            a, b = S.indptr[r], S.indptr[r + 1]
            if a == b:
                continue
            cols, vals = _select(S.data[a:b], S.indices[a:b], k, exclude[start + r] if exclude is not None else None)
            idx[start + r, :len(cols)] = cols
            scores[start + r, :len(vals)] = vals
    return idx, scores


@dataclass
class CaptionIndex:
    """Captions de-duplicated by normalized text, with image <-> caption-text maps and the TF-IDF matrix."""

    texts: list[str]  # one representative caption per distinct normalized text ("doc")
    image_ids: list[str]
    doc_images: list[np.ndarray]  # doc -> image indices that have this caption
    image_docs: list[np.ndarray]  # image -> doc indices (sorted)
    pair_doc: np.ndarray  # pair -> doc
    pair_image: np.ndarray  # pair -> image
    X: sp.csr_matrix | None = None
    DT: sp.csr_matrix | None = None
    df: np.ndarray | None = None

    @classmethod
    def build(cls, image_ids: Sequence[str], captions: Sequence[str], tfidf: bool = True,
              max_df: float | int = 1.0) -> "CaptionIndex":
        doc_of: dict[str, int] = {}
        img_of: dict[str, int] = {}
        texts: list[str] = []
        pair_doc = np.empty(len(captions), dtype=np.int64)
        pair_image = np.empty(len(captions), dtype=np.int64)
        for p, (img, cap) in enumerate(zip(image_ids, captions)):
            key = normalize(cap)
            d = doc_of.get(key)
            if d is None:
                d = doc_of[key] = len(texts)
                texts.append(cap.strip())
            pair_doc[p] = d
            i = img_of.get(img)
            if i is None:
                i = img_of[img] = len(img_of)
            pair_image[p] = i
        del doc_of
        index = cls.from_parts(texts, list(img_of), pair_doc, pair_image)
        if tfidf:
            index.fit(max_df)
        return index

    @classmethod
    def from_parts(cls, texts: list[str], image_ids: list[str], pair_doc: np.ndarray, pair_image: np.ndarray,
                   X: sp.csr_matrix | None = None) -> "CaptionIndex":
        """The index from its stored parts (a saved index, :mod:`.saved_index`); ``X`` the fitted TF-IDF rows."""
        # Both maps as sorted unique arrays, built with numpy (no per-pair Python sets at 10M pairs).
        links = np.unique(np.stack([pair_image, pair_doc], 1), axis=0)
        image_docs = np.split(links[:, 1], np.flatnonzero(np.diff(links[:, 0])) + 1)
        by_doc = links[np.lexsort((links[:, 0], links[:, 1]))]
        doc_images = np.split(by_doc[:, 0], np.flatnonzero(np.diff(by_doc[:, 1])) + 1)
        index = cls(texts, image_ids, doc_images, image_docs, pair_doc, pair_image)
        if X is not None:
            index._set_matrix(X)
        return index

    def fit(self, max_df: float | int = 1.0) -> None:
        vec = make_vectorizer(max_df)
        try:
            self.X = vec.fit_transform(self.texts).tocsr()
        except ValueError as exc:  # every caption made only of stop words
            raise ValueError(f"TF-IDF retrieval impossible: {exc}") from exc
        self._set_matrix(self.X)

    def _set_matrix(self, X: sp.csr_matrix) -> None:
        self.X = X
        self.DT = self.X.T.tocsr()
        self.df = np.diff(self.DT.indptr).astype(np.int64)

    def retrieve(self, pairs: np.ndarray, k: int, max_nnz: int = DEFAULT_MAX_NNZ) -> list[list[dict]]:
        """For each pair index: up to ``k`` captions of other images, most TF-IDF-similar first."""
        assert self.X is not None, "fit() first"
        Q = self.X[self.pair_doc[pairs]]
        exclude = [self.image_docs[i] for i in self.pair_image[pairs]]
        idx, scores = topk_sparse(Q, self.DT, k, self.df, exclude, max_nnz)
        out = []
        for row_i, row_s in zip(idx, scores):
            out.append([{"text": self.texts[d], "kind": "retrieval",
                         "image_id": self.image_ids[self.doc_images[d][0]], "score": round(float(s), 6)}
                        for d, s in zip(row_i, row_s) if d >= 0])
        return out

    def image_captions(self, pair: int) -> list[str]:
        return [self.texts[d] for d in self.image_docs[self.pair_image[pair]]]


class CorpusIndex:
    """Related texts (paper: pairs "augmented with related images and texts"): TF-IDF top-k over a corpus."""

    def __init__(self, docs: list[str]):
        if not docs:
            raise ValueError("the related-text corpus has no non-empty line")
        self.docs = docs
        self.vectorizer = make_vectorizer()
        self.X = self.vectorizer.fit_transform(docs).tocsr()
        self.DT = self.X.T.tocsr()
        self.df = np.diff(self.DT.indptr).astype(np.int64)

    def related(self, captions: Sequence[str], k: int, max_nnz: int = DEFAULT_MAX_NNZ) -> list[list[str]]:
        Q = self.vectorizer.transform(captions).tocsr()
        idx, _ = topk_sparse(Q, self.DT, k, self.df, None, max_nnz)
        return [[self.docs[d] for d in row if d >= 0] for row in idx]
