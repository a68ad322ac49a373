"""Masking strategies of UNIMO pre-training (paper section 3.2-3.3), as pure numpy functions.

* :func:`span_mask` - bidirectional prediction: whole-word / whole-phrase spans (SpanBERT-style) until 15% of the
  non-special tokens are selected; selected tokens become [MASK] / a random token / stay unchanged (80/10/10).
* :func:`sample_fragments`, :func:`seq2seq_fragments`, :func:`seq2seq_layout` - seq2seq generation: fragments of
  U(4, 32) tokens (snapped to whole words) until 25% of the tokens are selected; they are cut out of the text and
  become the target ``[CLS] f1 [SEP] [CLS] f2 [SEP] ...``, the rest is the source ``[CLS] rest [SEP]``.
* :func:`region_mask`, :func:`apply_region_mask` - visual learning: 15% of the regions are anchors, every region
  with IoU > 0.3 with an anchor is masked too; masked features are zeroed.

Conventions shared by the text functions:

* ``ids`` is one sequence (1-D); ``word_starts[i]`` says whether token ``i`` begins a word, normally
  ``tokenizer.word_start_table()[ids]`` (a GPT-2 token that starts with a space). A token directly after a special
  token (or at position 0) also starts a word, because the first word of a text has no leading space.
* A *word* is a word-start token plus the continuation tokens after it; special tokens (``special_ids`` and the
  [MASK] id) belong to no word, are never selected and split the text into *segments* that no span crosses.
* Token spans are ``(start, end)`` with ``end`` exclusive.
* Randomness comes only from the ``rng`` argument (``np.random.Generator``), so results are reproducible.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..utils.boxes import box_iou as _box_iou

from ..masks import seq2seq as seq2seq_attention_mask
from ..tokenizer import CLS_ID, MASK_ID, PAD_ID, SEP_ID, UNK_ID

IGNORE_INDEX = -100
DEFAULT_SPECIAL_IDS = (CLS_ID, PAD_ID, SEP_ID, UNK_ID)
DEFAULT_VOCAB_SIZE = 50265

__all__ = [
    "IGNORE_INDEX", "MaskedSpan", "Words", "segment_words", "phrase_units", "span_length_distribution",
    "expected_span_length", "span_mask", "sample_fragments", "seq2seq_fragments", "seq2seq_layout", "box_iou",
    "region_mask", "apply_region_mask",
]


# ================================================================================================ words & phrases
@dataclass(frozen=True)
class Words:
    """Word segmentation of one sequence: word ``w`` covers tokens ``[start[w], end[w])`` of segment ``segment[w]``."""

    start: np.ndarray  # int64 [W]
    end: np.ndarray  # int64 [W]
    segment: np.ndarray  # int64 [W]
    maskable: np.ndarray  # bool [L]: token is not special

    @property
    def count(self) -> int:
        return int(self.start.shape[0])

    @property
    def lengths(self) -> np.ndarray:
        return self.end - self.start


def _check_ids(ids: np.ndarray, word_starts: np.ndarray, vocab_size: int | None) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(ids)
    word_starts = np.asarray(word_starts)
    if ids.ndim != 1:
        raise ValueError(f"ids must be 1-D (one sequence), got shape {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be integers, got dtype {ids.dtype}")
    if word_starts.shape != ids.shape:
        raise ValueError(f"word_starts shape {word_starts.shape} != ids shape {ids.shape}")
    if word_starts.dtype != np.bool_:
        raise ValueError(f"word_starts must be boolean, got dtype {word_starts.dtype}")
    if vocab_size is not None and ids.size:
        bad = np.flatnonzero((ids < 0) | (ids >= vocab_size))
        if bad.size:
            raise ValueError(f"ids[{bad[0]}] = {ids[bad[0]]} is outside the vocabulary [0, {vocab_size})")
    return ids.astype(np.int64, copy=False), word_starts


def segment_words(ids: np.ndarray, word_starts: np.ndarray,
                  special_ids: Sequence[int] = DEFAULT_SPECIAL_IDS, mask_id: int = MASK_ID) -> Words:
    """Group the non-special tokens of ``ids`` into words and segments (see the module docstring)."""
    ids, word_starts = _check_ids(ids, word_starts, None)
    n = ids.shape[0]
    special = np.isin(ids, np.asarray(list(special_ids) + [mask_id], dtype=np.int64))
    maskable = ~special
    prev_special = np.ones(n, dtype=bool)
    prev_special[1:] = special[:-1]
    starts_word = maskable & (word_starts | prev_special)
    start = np.flatnonzero(starts_word)
    if start.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Words(empty, empty, empty, maskable)
    # A word runs until the next word start or the next special token.
    boundary = np.flatnonzero(starts_word | special)
    nxt = np.searchsorted(boundary, start, side="right")
    end = np.where(nxt < boundary.size, boundary[np.minimum(nxt, boundary.size - 1)], n)
    seg_of_token = np.cumsum(special)  # segment index changes after every special token
    return Words(start.astype(np.int64), end.astype(np.int64), seg_of_token[start].astype(np.int64), maskable)


def phrase_units(words: Words, phrases: Sequence[tuple[int, int]] | None, n_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """Per word ``w``: the word range ``[lo[w], hi[w])`` of the unit (word or phrase) that contains it.

    A phrase ``(start, end)`` in tokens covers every word it touches (a boundary inside a word is widened to the whole
    word); overlapping phrases are merged. A phrase containing a special token is an error (it would span segments).
    """
    nw = words.count
    lo = np.arange(nw, dtype=np.int64)
    hi = lo + 1
    if not phrases:
        return lo, hi
    groups: list[tuple[int, int]] = []
    for k, span in enumerate(phrases):
        try:
            s, e = int(span[0]), int(span[1])
        except (TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"phrases[{k}] = {span!r} is not a (start, end) pair of token indices") from exc
        if not 0 <= s < e <= n_tokens:
            raise ValueError(f"phrases[{k}] = ({s}, {e}) is not a non-empty token span inside [0, {n_tokens})")
        if not words.maskable[s:e].all():
            raise ValueError(f"phrases[{k}] = ({s}, {e}) contains a special token at position "
                             f"{s + int(np.flatnonzero(~words.maskable[s:e])[0])}")
        w0 = int(np.searchsorted(words.end, s, side="right"))  # first word ending after s
        w1 = int(np.searchsorted(words.start, e, side="left"))  # words starting before e
        if w1 - w0 >= 2:  # a single word is already a unit
            groups.append((w0, w1))
    groups.sort()
    merged: list[list[int]] = []
    for g0, g1 in groups:
        if merged and g0 < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], g1)
        else:
            merged.append([g0, g1])
    for g0, g1 in merged:
        lo[g0:g1] = g0
        hi[g0:g1] = g1
    return lo, hi


# ================================================================================================ span masking
def span_length_distribution(p: float = 0.2, max_span: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Span lengths ``1..max_span`` (in words) and their probabilities.

    Geo(p) *truncated at max_span and renormalised*: P(l) = p (1-p)^(l-1) / sum_{k<=max_span} p (1-p)^(k-1).
    This is what SpanBERT's code does ("clip at 10"), giving the mean of 3.8 words quoted in the SpanBERT paper
    for p = 0.2 (clipping by moving the tail mass onto max_span would give 4.46 instead).
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"geometric_p must be in (0, 1], got {p}")
    if int(max_span) < 1:
        raise ValueError(f"max_span must be >= 1, got {max_span}")
    lengths = np.arange(1, int(max_span) + 1)
    probs = p * (1.0 - p) ** (lengths - 1)
    return lengths, probs / probs.sum()


def expected_span_length(p: float = 0.2, max_span: int = 10) -> float:
    """Exact mean of :func:`span_length_distribution` (3.797 words for p=0.2, max_span=10)."""
    lengths, probs = span_length_distribution(p, max_span)
    return float((lengths * probs).sum())


@dataclass(frozen=True)
class MaskedSpan:
    """One sampled span (returned by ``span_mask(..., return_spans=True)``; useful for statistics and debugging).

    ``start``/``end`` are the token range of the span as far as it was selected, ``n_words`` the number of words in
    it (including words an earlier span had already selected), ``sampled_len`` the drawn length in words (a phrase
    can make the span longer), ``truncated`` whether the span was cut by its segment end or by the budget, and
    ``action`` the replacement of its newly selected tokens: "mask", "random", "keep" ("token" when decided per token).
    """

    start: int
    end: int
    n_words: int
    sampled_len: int
    truncated: bool
    action: str


_ACTIONS = ("mask", "random", "keep")


def _stochastic_round(x: float, rng: np.random.Generator) -> int:
    """floor(x) or ceil(x) with E[result] = x, so small texts get the right masking rate on average."""
    base = math.floor(x)
    return int(base + (rng.random() < x - base))


def _random_tokens(rng: np.random.Generator, n: int, vocab_size: int, excluded: np.ndarray) -> np.ndarray:
    """``n`` ids uniform over the vocabulary minus ``excluded`` (rejection sampling; the excluded set is tiny)."""
    out = rng.integers(0, vocab_size, size=n)
    bad = np.isin(out, excluded)
    while bad.any():
        out[bad] = rng.integers(0, vocab_size, size=int(bad.sum()))
        bad = np.isin(out, excluded)
    return out


def span_mask(ids: np.ndarray, word_starts: np.ndarray, rng: np.random.Generator, mask_ratio: float = 0.15,
              geometric_p: float = 0.2, max_span: int = 10, phrases: Sequence[tuple[int, int]] | None = None,
              vocab_size: int = DEFAULT_VOCAB_SIZE, mask_id: int = MASK_ID,
              special_ids: Sequence[int] = DEFAULT_SPECIAL_IDS, replace_probs: Sequence[float] = (0.8, 0.1, 0.1),
              per_span_replacement: bool = True, return_spans: bool = False):
    """Whole-word span masking for the bidirectional objective.

    Returns ``(input_ids, labels)`` (int64, same shape as ``ids``; ``labels`` holds the original id at selected
    positions and ``-100`` elsewhere), plus the list of :class:`MaskedSpan` when ``return_spans``.

    Procedure: the budget is ``mask_ratio`` x (number of non-special tokens), stochastically rounded. Repeat: draw a
    length l (words) from :func:`span_length_distribution`, pick an anchor uniformly among the words not yet selected,
    take the l words from the anchor on (stopping at the end of its segment) and widen the span to whole phrases it
    touches. Its units (words or phrases) are selected left to right; a unit that does not fit in the remaining
    budget r is taken with probability r / size and the sampling stops, so the expected number of selected tokens
    equals the budget while only whole words are ever selected.

    Replacement (80/10/10 by default): decided per span, as SpanBERT does, when ``per_span_replacement`` (all tokens
    of a span become [MASK], or all random, or all stay); per token otherwise. Random tokens are uniform over the
    vocabulary minus the special ids and [MASK].
    """
    ids, word_starts = _check_ids(ids, word_starts, vocab_size)
    if not 0.0 < mask_ratio <= 1.0:
        raise ValueError(f"mask_ratio must be in (0, 1], got {mask_ratio}")
    probs = np.asarray(replace_probs, dtype=np.float64)
    if probs.shape != (3,) or (probs < 0).any() or abs(probs.sum() - 1.0) > 1e-6:
        raise ValueError(f"replace_probs must be 3 non-negative numbers summing to 1, got {tuple(replace_probs)}")
    lengths, len_probs = span_length_distribution(geometric_p, max_span)

    input_ids = ids.copy()
    labels = np.full_like(ids, IGNORE_INDEX)
    words = segment_words(ids, word_starts, special_ids, mask_id)
    spans: list[MaskedSpan] = []
    nw = words.count
    if nw == 0:
        return (input_ids, labels, spans) if return_spans else (input_ids, labels)

    lo, hi = phrase_units(words, phrases, ids.shape[0])
    wcum = np.concatenate([[0], np.cumsum(words.lengths)]).tolist()  # python ints: cheap unit sizes in the loop
    seg = words.segment
    seg_end = np.searchsorted(seg, seg, side="right")  # first word index after each word's segment
    lo_l, hi_l, seg_end_l = lo.tolist(), hi.tolist(), seg_end.tolist()
    # inverse-CDF sampling: Generator.choice(p=...) re-validates p on every call and dominated the run time
    len_cdf = np.cumsum(len_probs)
    act_cdf = np.cumsum(probs)
    budget = _stochastic_round(mask_ratio * wcum[-1], rng)
    selected = np.zeros(nw, dtype=bool)
    excluded = np.asarray(sorted(set(int(i) for i in special_ids) | {int(mask_id)}), dtype=np.int64)
    count = 0
    random_positions: list[np.ndarray] = []
    done = budget <= 0
    while not done:
        free = np.flatnonzero(~selected)
        if free.size == 0:
            break
        length = min(int(np.searchsorted(len_cdf, rng.random(), side="right")), len(lengths) - 1) + 1
        anchor = int(free[rng.integers(free.size)])
        first = lo_l[anchor]
        stop = min(anchor + length, seg_end_l[anchor])
        truncated = anchor + length > stop
        stop = hi_l[stop - 1]  # a phrase that the span touches is covered entirely
        new_words: list[int] = []
        w, last = first, first
        while w < stop:
            unit_end = hi_l[w]
            if not selected[w]:
                size = wcum[unit_end] - wcum[w]
                if count + size > budget:
                    truncated = True
                    done = True
                    if rng.random() >= (budget - count) / size:
                        break
                selected[w:unit_end] = True
                new_words.extend(range(w, unit_end))
                count += size
            last = unit_end
            w = unit_end
            if done or count >= budget:
                done = True
                truncated = truncated or w < stop
                break
        if not new_words:
            continue
        tokens = np.concatenate([np.arange(words.start[k], words.end[k]) for k in new_words])
        labels[tokens] = ids[tokens]
        if per_span_replacement:
            action = _ACTIONS[min(int(np.searchsorted(act_cdf, rng.random(), side="right")), 2)]
            if action == "mask":
                input_ids[tokens] = mask_id
            elif action == "random":
                random_positions.append(tokens)
        else:
            action = "token"
            choice = np.minimum(np.searchsorted(act_cdf, rng.random(tokens.size), side="right"), 2)
            input_ids[tokens[choice == 0]] = mask_id
            random_positions.append(tokens[choice == 1])
        if return_spans:
            spans.append(MaskedSpan(int(words.start[first]), int(words.end[last - 1]), last - first, length,
                                    bool(truncated), action))
    if random_positions:  # one draw for all random replacements (np.isin per span was the bottleneck)
        rand = np.concatenate(random_positions)
        if rand.size:
            input_ids[rand] = _random_tokens(rng, rand.size, vocab_size, excluded)
    return (input_ids, labels, spans) if return_spans else (input_ids, labels)


# ================================================================================================ seq2seq fragments
def _strip_wrappers(ids: np.ndarray, word_starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop one leading [CLS] and one trailing [SEP] so callers may pass either raw text ids or a wrapped record."""
    if ids.size and ids[0] == CLS_ID:
        ids, word_starts = ids[1:], word_starts[1:]
    if ids.size and ids[-1] == SEP_ID:
        ids, word_starts = ids[:-1], word_starts[:-1]
    return ids, word_starts


def sample_fragments(ids: np.ndarray, word_starts: np.ndarray, rng: np.random.Generator, ratio: float = 0.25,
                     min_len: int = 4, max_len: int = 32, special_ids: Sequence[int] = DEFAULT_SPECIAL_IDS,
                     phrases: Sequence[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
    """Token spans ``(start, end)`` (sorted, non-overlapping, whole words) to cut out for the seq2seq objective.

    ``ids`` are text ids; special tokens inside them stay in the source and no fragment crosses one. Repeat until
    ``ratio`` of the non-special tokens are selected: draw l ~ U{min_len..max_len} tokens (capped by the remaining
    budget, never below min_len), pick a start word uniformly among the free words from which l tokens of free text
    follow (only when there is none, among those whose free text runs to the end of their segment: such a fragment
    is shorter, which happens only at the end of a text shorter than l or of its last free gap), and take the
    smallest whole-word run with >= l tokens; if that run exceeds max_len, its last word is dropped when at least
    min_len tokens remain (so only a single very long word exceeds max_len). The last fragment may overshoot the
    budget by less than min_len + one word. With ``phrases`` (token spans, as for :func:`span_mask`) fragments start
    and end at phrase boundaries too: "word" above then means "word or phrase", so a long phrase may exceed max_len.
    """
    ids, word_starts = _check_ids(ids, word_starts, None)
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}")
    if not 1 <= int(min_len) <= int(max_len):
        raise ValueError(f"need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    words = segment_words(ids, word_starts, special_ids)
    nw = words.count
    if nw == 0:
        return []
    lo, hi = phrase_units(words, phrases, ids.shape[0])
    wlen = words.lengths
    cum = np.concatenate([[0], np.cumsum(wlen)])
    seg = words.segment
    unit_start = lo == np.arange(nw)
    seg_change = np.zeros(nw + 1, dtype=bool)
    seg_change[nw] = True
    seg_change[1:nw] = seg[1:] != seg[:-1]
    occupied = np.zeros(nw, dtype=bool)
    budget = ratio * float(cum[-1])
    count = 0
    fragments: list[tuple[int, int]] = []
    while count < budget:
        remaining = budget - count
        length = min(int(rng.integers(min_len, max_len + 1)), max(math.ceil(remaining), min_len))
        stop = seg_change.copy()
        stop[:nw] |= occupied
        # next_stop[j] = smallest k >= j with stop[k]; a run starting at free word w ends at next_stop[w + 1].
        idx = np.where(stop, np.arange(nw + 1), nw)
        next_stop = np.minimum.accumulate(idx[::-1])[::-1]
        free = np.flatnonzero(~occupied & unit_start)
        if free.size == 0:
            break
        run_end = next_stop[free + 1]
        at_text_end = (run_end == nw) | seg_change[run_end]
        need = np.searchsorted(cum, cum[free] + length, side="left")  # words [w, need) hold >= length tokens
        need = np.where(need <= nw, hi[np.clip(need, 1, nw) - 1], need)  # ... extended to a whole phrase
        fits = need <= run_end
        # Prefer starts where the full length fits; a shorter fragment ending at its segment end only as a fallback.
        ok = fits if fits.any() else at_text_end
        if not ok.any():
            break  # every free gap is shorter than the length and enclosed by fragments: nothing valid remains
        pick = int(rng.choice(np.flatnonzero(ok)))
        w = int(free[pick])
        end_w = int(need[pick]) if fits[pick] else int(run_end[pick])
        last_unit = int(lo[end_w - 1])
        if cum[end_w] - cum[w] > max_len and last_unit > w and cum[last_unit] - cum[w] >= min_len:
            end_w = last_unit
        occupied[w:end_w] = True
        fragments.append((int(words.start[w]), int(words.end[end_w - 1])))
        count += int(cum[end_w] - cum[w])
    return sorted(fragments)


def seq2seq_fragments(ids: np.ndarray, word_starts: np.ndarray, rng: np.random.Generator, ratio: float = 0.25,
                      min_len: int = 4, max_len: int = 32, special_ids: Sequence[int] = DEFAULT_SPECIAL_IDS,
                      phrases: Sequence[tuple[int, int]] | None = None, return_fragments: bool = False):
    """Build the seq2seq pre-training pair from one text.

    ``ids`` may be raw text ids or ``[CLS] text [SEP]`` (one leading [CLS] / trailing [SEP] are stripped).
    Returns ``(source_ids, target_ids)`` as int64 arrays: ``source = [CLS] + text without the fragments + [SEP]``
    and ``target = [CLS] f1 [SEP] [CLS] f2 [SEP] ...`` in text order; with ``return_fragments`` also the fragment
    token spans relative to the stripped text. ``phrases`` are token spans relative to ``ids`` as given.
    """
    ids, word_starts = _check_ids(ids, word_starts, None)
    shift = 1 if ids.size and ids[0] == CLS_ID else 0
    ids, word_starts = _strip_wrappers(ids, word_starts)
    if phrases and shift:
        phrases = [(int(s) - shift, int(e) - shift) for s, e in phrases]
    fragments = sample_fragments(ids, word_starts, rng, ratio, min_len, max_len, special_ids, phrases)
    keep = np.ones(ids.shape[0], dtype=bool)
    target: list[np.ndarray] = []
    for s, e in fragments:
        keep[s:e] = False
        target.append(np.concatenate([[CLS_ID], ids[s:e], [SEP_ID]]))
    source = np.concatenate([[CLS_ID], ids[keep], [SEP_ID]]).astype(np.int64)
    target_ids = np.concatenate(target).astype(np.int64) if target else np.zeros(0, dtype=np.int64)
    return (source, target_ids, fragments) if return_fragments else (source, target_ids)


def seq2seq_layout(source_ids: np.ndarray, target_ids: np.ndarray, total_len: int | None = None,
                   pad_id: int = PAD_ID) -> dict[str, np.ndarray]:
    """Model inputs for one seq2seq example: ``[source ; target]`` with the seq2seq attention mask.

    Positions restart at 2 for the target, as in the official seq2seq reader (source 2.., target [CLS] at 2).
    Teacher forcing: the output at target position j predicts ``target[j + 1]`` (labels = target shifted by one), so
    ``labels`` is -100 on the source and on the last target token. ``label_positions``/``label_ids`` give the same
    as index/value lists (the official ``tgt_pos`` layout). Padding to ``total_len`` uses ``pad_id`` for ids and
    positions and zero rows/columns in the mask.
    """
    src = np.asarray(source_ids, dtype=np.int64)
    tgt = np.asarray(target_ids, dtype=np.int64)
    if src.ndim != 1 or tgt.ndim != 1:
        raise ValueError(f"source_ids and target_ids must be 1-D, got {src.shape} and {tgt.shape}")
    s, t = src.shape[0], tgt.shape[0]
    total = total_len or s + t
    if total < s + t:
        raise ValueError(f"total_len={total_len} is shorter than source + target = {s + t}")
    input_ids = np.full(total, pad_id, dtype=np.int64)
    position_ids = np.full(total, pad_id, dtype=np.int64)
    input_ids[:s], input_ids[s:s + t] = src, tgt
    position_ids[:s] = np.arange(2, 2 + s)
    position_ids[s:s + t] = np.arange(2, 2 + t)
    labels = np.full(total, IGNORE_INDEX, dtype=np.int64)
    label_positions = s + np.arange(max(t - 1, 0), dtype=np.int64)
    labels[label_positions] = tgt[1:]
    return {"input_ids": input_ids, "position_ids": position_ids,
            "attn_mask": seq2seq_attention_mask(s, t, total), "labels": labels,
            "label_positions": label_positions, "label_ids": tgt[1:].copy(),
            "src_len": np.int64(s), "tgt_len": np.int64(t)}


# ================================================================================================ regions
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [N, M] of boxes (x1, y1, x2, y2) with areas (x2 - x1)(y2 - y1); zero-area pairs give 0."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    for name, x in (("a", a), ("b", b)):
        if x.ndim != 2 or x.shape[1] != 4:
            raise ValueError(f"boxes {name} must have shape [N, 4], got {x.shape}")
    return _box_iou(a, b)


def region_mask(boxes: np.ndarray, rng: np.random.Generator, mask_ratio: float = 0.15,
                iou_threshold: float = 0.3, skip_first: bool = True, return_anchors: bool = False):
    """Boolean [N] mask of the regions to mask for masked region modelling.

    The number of anchors is ``mask_ratio`` x (number of candidate regions), stochastically rounded and at least one
    whenever the image has a candidate besides the global row (so every image contributes). Anchors are drawn
    without replacement; every candidate whose IoU with *an anchor* exceeds ``iou_threshold`` is masked too (one
    step, not transitive). With ``skip_first`` row 0 (the global [IMG] box) is never a candidate.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape [N, 4], got {boxes.shape}")
    if not np.isfinite(boxes).all():
        bad = np.argwhere(~np.isfinite(boxes))[0]
        raise ValueError(f"boxes[{bad[0]}, {bad[1]}] is not finite ({boxes[bad[0], bad[1]]})")
    inverted = np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    if inverted.size:
        raise ValueError(f"boxes[{inverted[0]}] = {boxes[inverted[0]].tolist()} has x2 < x1 or y2 < y1")
    if not 0.0 <= mask_ratio <= 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1], got {mask_ratio}")
    n = boxes.shape[0]
    first = 1 if skip_first else 0
    candidates = np.arange(first, n)
    mask = np.zeros(n, dtype=bool)
    anchors = np.zeros(0, dtype=np.int64)
    if candidates.size and n > 1:
        k = min(candidates.size, max(1, _stochastic_round(mask_ratio * candidates.size, rng)))
        anchors = np.sort(rng.choice(candidates, size=k, replace=False))
        iou = box_iou(boxes[anchors], boxes[candidates])
        mask[candidates] = (iou > iou_threshold).any(axis=0)
        mask[anchors] = True
    return (mask, anchors) if return_anchors else mask


def apply_region_mask(features: np.ndarray, mask: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """Copy of ``features`` ([N, D] or [B, N, D]) with the rows selected by ``mask`` ([N] or [B, N]) set to ``fill``."""
    features = np.asarray(features)
    mask = np.asarray(mask, dtype=bool)
    if features.ndim != mask.ndim + 1 or features.shape[:-1] != mask.shape:
        raise ValueError(f"mask shape {mask.shape} does not match features shape {features.shape}")
    out = features.copy()
    out[mask] = fill
    return out
