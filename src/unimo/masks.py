"""Attention masks for every UNIMO mode, as 0/1 numpy matrices (1 = the row may attend to the column).

These reproduce the official readers' numpy code (``src/reader/batching.py``, ``img2txt_reader.py``,
``retrieval_reader.py``, ``visual_entailment_reader.py``). The model turns them into an additive bias
``(mask - 1) * 1e4``. Everything here is plain numpy so readers can use it without importing the model.

Shapes: single examples are [L, L]; ``pad_and_stack`` builds [B, L_max, L_max] batches (pad rows/cols 0), and
``bidirectional_batch`` the bidirectional masks of a padded batch directly.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def bidirectional(valid: Sequence[int] | np.ndarray) -> np.ndarray:
    """outer(m, m): every valid position sees every valid position (text understanding, retrieval, VE, VQA)."""
    m = np.asarray(valid, dtype=np.float32)
    return np.outer(m, m)


def bidirectional_batch(valid: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    """[B, L] validity rows -> [B, L, L]: :func:`bidirectional` of each row, for a padded batch (text understanding,
    [image ; text] for VE/VQA/retrieval, the source pass of decoding)."""
    v = np.asarray(valid, dtype=np.float32)
    if v.ndim != 2:
        raise ValueError(f"expected [batch, length] validity rows, got shape {v.shape}")
    return v[:, :, None] * v[:, None, :]


def seq2seq(src_len: int, tgt_len: int, total_len: int | None = None) -> np.ndarray:
    """Source bidirectional, target causal and sees the whole source; source never sees the target.

    ``total_len`` >= src_len + tgt_len pads with zero rows/columns.
    """
    end = src_len + tgt_len
    total = total_len or end
    mask = np.zeros((total, total), dtype=np.float32)
    mask[:end, :src_len] = 1.0
    mask[src_len:end, src_len:end] = np.tril(np.ones((tgt_len, tgt_len), dtype=np.float32))
    return mask


def image_to_text(img_valid: Sequence[int] | np.ndarray, obj_valid: Sequence[int] | np.ndarray,
                  txt_valid: Sequence[int] | np.ndarray) -> np.ndarray:
    """Captioning, order [image ; object tags ; caption].

    Image and object rows attend bidirectionally among themselves only; caption rows attend to every valid
    image/object position and causally to the caption (official ``img2txt_reader.py:414-437``).
    """
    mi, mo, mt = (np.asarray(x, dtype=np.float32) for x in (img_valid, obj_valid, txt_valid))
    m = np.concatenate([mi, mo, mt])
    mask = np.outer(m, m)
    s = len(mi) + len(mo)
    mask[s:, s:] = np.tril(np.ones((len(mt), len(mt)), dtype=np.float32)) * np.outer(mt, mt)
    mask[:s, s:] = 0.0
    return mask


def cross_modal(img_valid: Sequence[int] | np.ndarray, txt_valid: Sequence[int] | np.ndarray) -> np.ndarray:
    """Full cross-modal attention over [image ; text] (retrieval, visual entailment, VQA)."""
    return bidirectional(np.concatenate([np.asarray(img_valid, np.float32), np.asarray(txt_valid, np.float32)]))


def decode_step_row(source_valid: Sequence[int] | np.ndarray, generated: int) -> np.ndarray:
    """Mask row [1, L_src + generated] for an incremental decoding step: the source validity row followed by ones
    for every target token fed so far (official ``seq2seq.py:256-259``)."""
    row = np.concatenate([np.asarray(source_valid, np.float32), np.ones(generated, np.float32)])
    return row[None, :]


def pad_and_stack(masks: Sequence[np.ndarray], length: int | None = None) -> np.ndarray:
    """Stack square masks into [B, L, L], zero-padding to ``length`` (default: the largest)."""
    size = length or max(m.shape[0] for m in masks)
    out = np.zeros((len(masks), size, size), dtype=np.float32)
    for i, m in enumerate(masks):
        n = m.shape[0]
        if n > size:
            raise ValueError(f"mask {i} has size {n} > requested length {size}")
        out[i, :n, :n] = m
    return out
