"""Generation: KV-cache decoding vs full recompute, beam search vs exhaustive search and vs a naive reference beam
search, min length, trigram blocking, greedy/sampling, batching, input validation and text post-processing."""
from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import paddle
import pytest

from unimo import masks
from unimo.generation import (BLOCK_DELTA, BeamSearchConfig, CachedDecoder, DecodeConfig, RecomputeDecoder,
                              SamplingConfig, beam_search, block_deltas, greedy_search, group_words,
                              has_repeated_trigram, ids_to_text, length_penalty, make_decoder, sample,
                              strip_hypothesis)
from unimo.model.modeling import UnimoForGeneration

MASK_ID, SEP_ID, CLS_ID = 50264, 2, 0


@pytest.fixture(scope="module")
def model(tiny_config):
    paddle.seed(0)
    m = UnimoForGeneration(tiny_config)
    m.eval()
    return m


def _t(x, dtype="int64"):
    return paddle.to_tensor(np.asarray(x), dtype=dtype)


def text_batch(sources: list[list[int]]):
    """Padded text sources as UnimoModel kwargs ([PAD]=1 for ids and positions) + validity."""
    width = max(len(s) for s in sources)
    ids = np.full((len(sources), width), 1, np.int64)
    pos = np.full((len(sources), width), 1, np.int64)
    valid = np.zeros((len(sources), width), np.float32)
    for i, s in enumerate(sources):
        ids[i, :len(s)] = s
        pos[i, :len(s)] = np.arange(2, 2 + len(s))
        valid[i, :len(s)] = 1
    mask = np.stack([masks.bidirectional(v) for v in valid])
    return {"input_ids": _t(ids), "position_ids": _t(pos), "attention_mask": _t(mask, "float32")}, valid


def random_sources(rng, lengths):
    return [[CLS_ID] + rng.integers(4, 50000, n - 2).tolist() + [SEP_ID] for n in lengths]


def full_text_logits(model, src: list[int], tgt: list[int]) -> np.ndarray:
    """Independent reference: the whole [source ; target] sequence with the training seq2seq mask, logits of every
    target row (row j predicts target token j + 1)."""
    ids = _t([src + tgt])
    pos = _t([list(range(2, 2 + len(src))) + list(range(2, 2 + len(tgt)))])
    mask = _t(masks.seq2seq(len(src), len(tgt))[None], "float32")
    with paddle.no_grad():
        h = model.unimo(input_ids=ids, position_ids=pos, attention_mask=mask)
        return model.lm_head(h[0, len(src):]).numpy()


# ------------------------------------------------------------------------------------------------ cache vs recompute
def test_cached_step_logits_equal_full_recompute_text(model):
    rng = np.random.default_rng(1)
    sources = random_sources(rng, [9, 5, 7])
    source, valid = text_batch(sources)
    targets = [[CLS_ID] + rng.integers(4, 50000, 6).tolist() for _ in sources]
    with paddle.no_grad():
        cached = CachedDecoder(model, *_prepared(model, source, valid))
        recompute = RecomputeDecoder(model, *_prepared(model, source, valid))
        for step in range(7):
            feed = [t[step] for t in targets]
            got = cached.step(feed).numpy()
            got_re = recompute.step(feed).numpy()
            for b, (src, tgt) in enumerate(zip(sources, targets)):
                ref = full_text_logits(model, src, tgt[:step + 1])[-1]
                assert np.abs(got[b] - ref).max() <= 1e-5, (step, b)
                assert np.abs(got_re[b] - ref).max() <= 1e-5, (step, b)


def test_cache_buffer_growth_and_reordering_equal_recompute(model):
    """The preallocated cache (written in place, grown in chunks; chunk 2 here so that every few steps cross a
    boundary) with beam-style reorders: expansion 1 -> 3 rows per source, permutations within a source (source part
    not gathered), the identity (nothing gathered), a row taken from another source and dropped rows (full
    gather). Logits equal the recompute decoder's at every step."""
    rng = np.random.default_rng(5)
    sources = random_sources(rng, [9, 5, 7])
    source, valid = text_batch(sources)
    with paddle.no_grad():
        cached = CachedDecoder(model, *_prepared(model, source, valid))
        cached.cache.chunk = 2
        recompute = RecomputeDecoder(model, *_prepared(model, source, valid))
        selects = [np.repeat(np.arange(3), 3), np.array([1, 0, 2, 3, 5, 4, 8, 6, 7]), np.arange(9),
                   np.array([0, 0, 1, 5, 3, 3, 6, 7, 8]), np.array([2, 1, 0, 8, 8, 7]), np.arange(6),
                   np.array([3, 4, 5, 0, 1, 2])]
        feed = np.full(3, CLS_ID)
        for step, rows in enumerate(selects + [None]):
            got, ref = cached.step(feed).numpy(), recompute.step(feed).numpy()
            assert np.abs(got - ref).max() <= 1e-5, step
            if rows is None:
                break
            cached.select(rows)
            recompute.select(rows)
            feed = rng.integers(4, 50000, len(rows))
        assert cached.cache.length == valid.shape[1] + len(selects) + 1


def test_identity_and_within_source_reorders_skip_the_gather(model):
    rng = np.random.default_rng(6)
    source, valid = text_batch(random_sources(rng, [6, 8]))
    with paddle.no_grad():
        dec = CachedDecoder(model, *_prepared(model, source, valid))
        dec.step([CLS_ID, CLS_ID])
        dec.select([0, 0, 1, 1])  # expansion: everything gathered
        dec.step([40, 41, 42, 43])
        cache = dec.cache
        src0, gen0, valid0 = cache.src_k[0], cache.gen_k[0], dec.valid
        dec.select([0, 1, 2, 3])  # identity: nothing moves
        assert cache.src_k[0] is src0 and cache.gen_k[0] is gen0 and dec.valid is valid0
        dec.select([1, 0, 3, 3])  # parents within each source: only the generated part is gathered
        assert cache.src_k[0] is src0 and cache.gen_k[0] is not gen0
        np.testing.assert_array_equal(cache.gen_k[0].numpy()[:, :, :2], gen0.numpy()[[1, 0, 3, 3], :, :2])
        dec.select([2, 3, 0, 1])  # rows change source: the source part is gathered too
        assert cache.src_k[0] is not src0
        np.testing.assert_array_equal(cache.src_k[0].numpy(), src0.numpy()[[2, 3, 0, 1]])


def test_top_log_probs_equal_topk_of_full_log_softmax():
    from unimo.generation.search import _top_log_probs
    from unimo.utils.ops import log_softmax

    rng = np.random.default_rng(7)
    logits = rng.normal(0, 3, (6, 1000)).astype(np.float32)
    logits[:, 2] += -1e18  # the min-length EOS block
    t = paddle.to_tensor(logits)
    want_v, want_i = paddle.topk(log_softmax(t), 5, axis=-1)
    got_v, got_i = _top_log_probs(t, 5)
    np.testing.assert_array_equal(got_i.numpy(), want_i.numpy())
    np.testing.assert_array_equal(got_v.numpy(), want_v.numpy())


def _prepared(model, source, valid):
    from unimo.generation import prepare_source

    return prepare_source(model, source, valid)


def test_cached_step_logits_equal_full_recompute_image_and_tags(model, tiny_config):
    """Captioning source [image regions ; object tags] (tags padded differently per example)."""
    rng = np.random.default_rng(2)
    nv, tags = 4, [[0, 300, 400, 2], [0, 500, 2]]
    feats = rng.normal(size=(2, nv, tiny_config.image_embedding_size)).astype(np.float32)
    locs = rng.uniform(size=(2, nv, 5)).astype(np.float32)
    width = max(map(len, tags))
    obj = np.full((2, width), 1, np.int64)
    obj_pos = np.full((2, width), 1, np.int64)
    valid = np.zeros((2, nv + width), np.float32)
    valid[:, :nv] = 1
    for i, t in enumerate(tags):
        obj[i, :len(t)], obj_pos[i, :len(t)] = t, np.arange(2, 2 + len(t))
        valid[i, nv:nv + len(t)] = 1
    source = {"image_features": _t(feats, "float32"), "image_locations": _t(locs, "float32"),
              "obj_input_ids": _t(obj), "obj_position_ids": _t(obj_pos),
              "attention_mask": _t(np.stack([masks.bidirectional(v) for v in valid]), "float32")}
    caption = [[CLS_ID, 11, 12, 13, 14, 15], [CLS_ID, 21, 22, 23, 24, 25]]
    with paddle.no_grad():
        dec = make_decoder(model, source, valid, use_cache=True)
        for step in range(6):
            got = dec.step([c[step] for c in caption]).numpy()
            for b in range(2):
                t, cap = tags[b], caption[b][:step + 1]
                mask = masks.image_to_text([1] * nv, [1] * len(t), [1] * len(cap))
                h = model.unimo(image_features=_t(feats[b:b + 1], "float32"),
                                image_locations=_t(locs[b:b + 1], "float32"), obj_input_ids=_t([t]),
                                obj_position_ids=_t([list(range(2, 2 + len(t)))]), input_ids=_t([cap]),
                                position_ids=_t([list(range(2, 2 + len(cap)))]),
                                attention_mask=_t(mask[None], "float32"))
                ref = model.lm_head(h[:, -1]).numpy()[0]
                assert np.abs(got[b] - ref).max() <= 1e-5, (step, b)


# ------------------------------------------------------------------------------------------------ exhaustive search
ALLOWED = [MASK_ID, 10, 20, 30, 40]  # EOS + four words


def restrict(allowed):
    bias = np.full(50265, -np.inf, np.float32)
    bias[allowed] = 0.0
    bias_t = _t(bias, "float32")
    return lambda step, logits, rows: logits + bias_t


def exhaustive(model, src, max_len, alpha, min_len, eos=MASK_ID, allowed=ALLOWED):
    """Every sequence over ``allowed`` of length <= max_len (ending at the first EOS), scored independently:
    sum of float64 log-probs (renormalised over the allowed ids, EOS excluded while step < min_len) divided by
    ((5 + n) / 6) ** alpha."""
    words = [a for a in allowed if a != eos]

    memo = {}

    def step_logp(prefix):
        if prefix in memo:
            return memo[prefix]
        logits = full_text_logits(model, src, [CLS_ID] + list(prefix))[-1].astype(np.float64)
        ids = allowed if len(prefix) >= min_len else words
        z = logits[ids]
        lp = z - (np.log(np.exp(z - z.max()).sum()) + z.max())
        memo[prefix] = dict(zip(ids, lp))
        return memo[prefix]

    out = {}
    for n in range(max_len):
        for prefix in itertools.product(words, repeat=n):
            dist = step_logp(prefix)
            base = sum(step_logp(prefix[:i])[prefix[i]] for i in range(n))
            for tok, lp in dist.items():
                if tok == eos or n + 1 == max_len:
                    seq = prefix + (tok,)
                    key = prefix if tok == eos else seq
                    out[key] = (base + lp) / ((5 + len(seq)) / 6) ** alpha
    return out


@pytest.mark.parametrize("alpha,min_len", [(0.6, 0), (1.2, 2)])
def test_beam_search_equals_exhaustive_search(model, alpha, min_len):
    rng = np.random.default_rng(3)
    src = random_sources(rng, [6])[0]
    source, valid = text_batch([src])
    ref = exhaustive(model, src, 4, alpha, min_len)
    # 4 words + EOS over 4 steps: at most 341 live+finished hypotheses, so a 341-wide beam prunes nothing
    hyps = beam_search(model, source, valid, beam_size=341, max_out_len=4, min_out_len=min_len,
                       length_penalty=alpha, logits_processor=restrict(ALLOWED), return_all=True)[0]
    got = {tuple(ids): score for ids, score in hyps if score > -1e8}
    assert set(got) == set(ref)
    assert max(abs(got[k] - ref[k]) for k in ref) < 1e-4
    best = beam_search(model, source, valid, beam_size=341, max_out_len=4, min_out_len=min_len,
                       length_penalty=alpha, logits_processor=restrict(ALLOWED))[0]
    assert tuple(best[0]) == max(ref, key=ref.get)
    if min_len:
        assert all(len(k) >= min_len for k in got)


# ------------------------------------------------------------------------------------------------ reference beam
def reference_trigram_delta(seq, word_start):
    """The official check on one candidate sequence (BOS included): group into words, block if the last word
    trigram is among the earlier ones."""
    words = []
    for t in seq:
        if word_start[t] or not words:
            words.append([t])
        else:
            words[-1].append(t)
    words = ["-".join(map(str, w)) for w in words]
    if len(words) <= 3:
        return 0.0
    earlier = {"_".join(words[e - 3:e]) for e in range(3, len(words))}
    return BLOCK_DELTA if "_".join(words[-3:]) in earlier else 0.0


def reference_beam(model, src, beam, max_len, alpha, min_len, allowed, word_start=None, eos=MASK_ID):
    """Naive beam search written from the spec: a list of (tokens, penalised score) hypotheses, full recompute per
    hypothesis, per-hypothesis top-`beam` proposals, finished hypotheses carried, best `beam` kept."""
    lp = lambda n: ((5.0 + n) / 6.0) ** alpha  # noqa: E731
    hyps = [([CLS_ID], 0.0)]
    for step in range(max_len):
        cands = []
        for seq, score in hyps:
            if seq[-1] == eos and len(seq) > 1:
                cands.append((seq + [eos], score))
                continue
            logits = full_text_logits(model, src, seq)[-1].astype(np.float64)
            ids = [a for a in allowed if a != eos or step >= min_len]
            z = logits[ids]
            logp = z - (np.log(np.exp(z - z.max()).sum()) + z.max())
            for j in np.argsort(-logp, kind="stable")[:beam]:
                delta = reference_trigram_delta(seq + [ids[j]], word_start) if word_start is not None else 0.0
                cands.append((seq + [ids[j]], (logp[j] + score * lp(step) + delta) / lp(step + 1)))
        hyps = sorted(cands, key=lambda c: -c[1])[:beam]
        if all(s[-1] == eos for s, _ in hyps):
            break
    seq, score = hyps[0]
    return strip_hypothesis(seq[1:], eos), score


def test_beam_search_equals_naive_reference_with_pruning(model):
    """Beam 3 over EOS + three words, 6 steps: pruning, finished hypotheses competing with live ones."""
    src = random_sources(np.random.default_rng(4), [7])[0]
    source, valid = text_batch([src])
    allowed = [MASK_ID, 10, 20, 30]
    ref_ids, ref_score = reference_beam(model, src, 3, 6, 0.6, 1, allowed)
    ids, score = beam_search(model, source, valid, beam_size=3, max_out_len=6, min_out_len=1, length_penalty=0.6,
                             logits_processor=restrict(allowed))[0]
    assert ids == ref_ids
    assert abs(score - ref_score) < 1e-4


def test_trigram_beam_search_equals_naive_reference(model):
    """Same with trigram blocking over 8 tokens, where blocking changes the result; id 20 continues a word, so
    words of several tokens are compared."""
    src = random_sources(np.random.default_rng(4), [7])[0]
    source, valid = text_batch([src])
    allowed = [MASK_ID, 10, 20, 30]
    word_start = np.zeros(50265, bool)
    word_start[[CLS_ID, MASK_ID, 10, 30]] = True
    ref_ids, ref_score = reference_beam(model, src, 3, 8, 0.6, 8, allowed, word_start)
    unblocked_ids, _ = reference_beam(model, src, 3, 8, 0.6, 8, allowed)
    assert ref_ids != unblocked_ids  # blocking matters in this case
    ids, score = beam_search(model, source, valid, beam_size=3, max_out_len=8, min_out_len=8, length_penalty=0.6,
                             logits_processor=restrict(allowed), trigram_blocking=True, word_start=word_start)[0]
    assert ids == ref_ids
    assert abs(score - ref_score) < 1e-4
    assert not has_repeated_trigram([CLS_ID] + ids, word_start)
    assert any(len(w) > 1 for w in group_words(ids, word_start))


# ------------------------------------------------------------------------------------------------ min length
def test_min_out_len_blocks_eos(model):
    src = [CLS_ID, 50, 60, 70, SEP_ID]
    source, valid = text_batch([src])
    eos_bias = np.zeros(50265, np.float32)
    eos_bias[MASK_ID] = 30.0  # EOS is by far the most likely token at every step
    boost = _t(eos_bias, "float32")
    proc = lambda step, logits, rows: logits + boost  # noqa: E731
    assert beam_search(model, source, valid, beam_size=3, max_out_len=6, logits_processor=proc)[0][0] == []
    assert greedy_search(model, source, valid, max_out_len=6, logits_processor=proc)[0][0] == []
    for min_len in (1, 3):
        hyps = beam_search(model, source, valid, beam_size=3, max_out_len=6, min_out_len=min_len,
                           logits_processor=proc, return_all=True)[0]
        assert len(hyps[0][0]) == min_len  # EOS exactly when first allowed
        assert all(len(ids) >= min_len for ids, score in hyps)
        assert len(greedy_search(model, source, valid, max_out_len=6, min_out_len=min_len,
                                 logits_processor=proc)[0][0]) == min_len


# ------------------------------------------------------------------------------------------------ trigram blocking
def test_block_deltas_hand_checked(tokenizer):
    ws = tokenizer.word_start_table()
    enc = tokenizer.encode
    the_cat, sat, ran = enc(" the cat"), enc(" sat")[0], enc(" ran")[0]
    prefix = [CLS_ID] + the_cat + [sat] + enc(" on") + the_cat
    assert block_deltas(prefix, [sat, ran], ws).tolist() == [BLOCK_DELTA, 0.0]
    # " x yl ophon ist" is one word of four sub-tokens: completing it repeats the trigram (the, cat, xylophonist)
    xylo = enc(" xylophonist")
    assert [bool(ws[t]) for t in xylo] == [True, False, False, False]
    prefix = [CLS_ID] + the_cat + xylo + enc(" on") + the_cat + xylo[:3]
    assert block_deltas(prefix, [xylo[3], enc("ists")[0], sat], ws).tolist() == [BLOCK_DELTA, 0.0, 0.0]
    # a partial word differs from the complete one: (the, cat, xyl) is not (the, cat, xylophonist)
    prefix = [CLS_ID] + the_cat + xylo + enc(" on") + the_cat + xylo[:1]
    assert block_deltas(prefix, [xylo[2]], ws).tolist() == [0.0]
    # three words or fewer are never blocked; [CLS] counts as a word
    assert block_deltas([CLS_ID, sat, sat], [sat], ws).tolist() == [0.0]
    assert block_deltas([CLS_ID, sat, sat, sat], [sat], ws).tolist() == [BLOCK_DELTA]
    assert group_words([CLS_ID] + xylo + [sat], ws) == [(CLS_ID,), tuple(xylo), (sat,)]


def test_block_deltas_match_reference_on_random_sequences():
    # a tiny vocabulary makes repeated word trigrams common: ids 1, 2 start words, 3 and 4 continue them
    word_start = np.array([True, True, True, False, False])
    rng = np.random.default_rng(5)
    blocked = {True: 0, False: 0}  # by whether the candidate starts a word
    for _ in range(1000):
        # a random stretch, then a partial repeat of it: the next token often closes a repeated trigram
        base = rng.integers(1, 5, rng.integers(1, 12)).tolist()
        prefix = [0] + base + base[:rng.integers(0, len(base) + 1)]
        cands = [1, 2, 3, 4]
        got = block_deltas(prefix, cands, word_start)
        want = [reference_trigram_delta(prefix + [c], word_start) for c in cands]
        assert got.tolist() == want, prefix
        for c, d in zip(cands, want):
            blocked[bool(word_start[c])] += d != 0
    assert blocked[True] > 40 and blocked[False] > 40, blocked


def test_trigram_blocking_in_beam_search(model, tokenizer):
    """A processor makes ' the cat sat the cat sat ...' the best path (' dog' second best); blocking must leave it
    when a word trigram would repeat, and with one beam (the blocked candidate is the only one) the score carries
    exactly -65000 per blocked step."""
    the, cat, sat, dog = (tokenizer.encode(w)[0] for w in (" the", " cat", " sat", " dog"))
    pattern = [the, cat, sat]
    boosts = []
    for step in range(8):
        b = np.zeros(50265, np.float32)
        b[pattern[step % 3]] += 20.0
        if step >= 5:  # before, every alternative is ~20 behind, so the beams share the pattern prefix
            b[dog] += 10.0
        boosts.append(_t(b, "float32"))
    proc = lambda step, logits, rows: logits + boosts[step]  # noqa: E731
    source, valid = text_batch([[CLS_ID, 50, 60, SEP_ID]])
    ws = tokenizer.word_start_table()
    common = dict(max_out_len=8, min_out_len=8, logits_processor=proc, word_start=ws)
    plain = beam_search(model, source, valid, beam_size=2, **common)[0]
    assert plain[0] == [pattern[i % 3] for i in range(8)]
    assert has_repeated_trigram([CLS_ID] + plain[0], ws)
    blocked = beam_search(model, source, valid, beam_size=2, trigram_blocking=True, **common)[0]
    assert not has_repeated_trigram([CLS_ID] + blocked[0], ws)
    # the 6th token would repeat (the, cat, sat): ' dog' instead, then the pattern resumes
    assert blocked[0] == [the, cat, sat, the, cat, dog, the, cat]
    assert plain[1] - 11 < blocked[1] < plain[1] - 9  # it paid the ~10 logits of the second choice, not the block

    one = beam_search(model, source, valid, beam_size=1, **common)[0]
    one_blocked = beam_search(model, source, valid, beam_size=1, trigram_blocking=True, **common)[0]
    assert one_blocked[0] == one[0]
    seq = [CLS_ID] + one[0]
    n_blocked = sum(reference_trigram_delta(seq[:i + 1], ws) != 0 for i in range(1, len(seq)))
    assert n_blocked == 3  # tokens 6, 7, 8 each close a repeated trigram
    assert abs((one_blocked[1] - one[1]) - BLOCK_DELTA * n_blocked) < 0.05


# ------------------------------------------------------------------------------------------------ greedy / batching
def test_beam_size_one_equals_greedy(model):
    source, valid = text_batch(random_sources(np.random.default_rng(6), [8, 5]))
    kw = dict(max_out_len=10, min_out_len=2, length_penalty=0.6)
    beam = beam_search(model, source, valid, beam_size=1, **kw)
    greedy = greedy_search(model, source, valid, **kw)
    for (bi, bs), (gi, gs) in zip(beam, greedy):
        assert bi == gi and len(bi) == 10
        assert abs(bs - gs) < 1e-4


def test_batched_sources_equal_individual_decoding(model, tokenizer):
    sources = random_sources(np.random.default_rng(7), [9, 4, 13])
    cfg = BeamSearchConfig(beam_size=3, max_out_len=8, min_out_len=2, length_penalty=0.6, trigram_blocking=True,
                           word_start=tokenizer.word_start_table())
    batch_rows: list[int] = []
    batch = beam_search(model, *text_batch(sources), cfg, logits_processor=eos_from([2, 4, None], MASK_ID, batch_rows),
                        return_all=True)
    # sources 0 and 1 left the batch (their 3 hypotheses each finished) while source 2 went on to max_out_len
    assert batch_rows == [3, 9, 9, 6, 6, 3, 3, 3]  # EOS fed at steps 2 and 4 ends those sources
    for b, (src, got) in enumerate(zip(sources, batch)):
        proc = eos_from([[2, 4, None][b]], MASK_ID)
        alone = beam_search(model, *text_batch([src]), cfg, logits_processor=proc, return_all=True)[0]
        assert [ids for ids, _ in got] == [ids for ids, _ in alone]
        assert np.abs(np.array([s for _, s in got]) - [s for _, s in alone]).max() < 1e-5
    assert [len(h[0][0]) for h in batch] == [2, 4, 8]


def eos_from(first_step, eos, record=None):
    """Processor: from step ``first_step[source]`` on (None: never) the EOS logit gets +30, so every hypothesis of
    that source ends there. ``record`` collects the number of rows per step."""
    onehot = _t(np.eye(1, 50265, eos, dtype=np.float32), "float32")

    def proc(step, logits, rows):
        if record is not None:
            record.append(int(logits.shape[0]))
        on = np.array([first_step[r] is not None and step >= first_step[r] for r in rows], np.float32)
        return logits + 30.0 * _t(on[:, None], "float32") * onehot

    return proc


def test_cached_beam_search_equals_recompute_beam_search(model, tiny_config):
    """Same search with and without the cache (exercises cache reordering and dropping finished sources) on an
    image + tags source."""
    rng = np.random.default_rng(8)
    feats = rng.normal(size=(2, 3, tiny_config.image_embedding_size)).astype(np.float32)
    locs = rng.uniform(size=(2, 3, 5)).astype(np.float32)
    valid = np.ones((2, 6), np.float32)
    valid[1, 5] = 0  # the second example has two tags
    source = {"image_features": _t(feats, "float32"), "image_locations": _t(locs, "float32"),
              "obj_input_ids": _t([[0, 77, 2], [0, 88, 1]]), "obj_position_ids": _t([[2, 3, 4], [2, 3, 1]]),
              "attention_mask": _t(np.stack([masks.bidirectional(v) for v in valid]), "float32")}
    proc = eos_from([3, None], SEP_ID)
    cfg = BeamSearchConfig.official("coco", max_out_len=7, min_out_len=1, beam_size=4)
    steps = []
    a = beam_search(model, source, valid, cfg, logits_processor=proc, return_all=True, callback=steps.append)
    b = beam_search(model, source, valid, cfg, logits_processor=proc, return_all=True, use_cache=False)
    for ha, hb in zip(a, b):
        assert [i for i, _ in ha] == [i for i, _ in hb]
        assert np.abs(np.array([s for _, s in ha]) - [s for _, s in hb]).max() < 1e-5
    assert steps == list(range(len(steps)))
    assert len(steps) == 7 and len(a[0][0][0]) == 3 and len(a[1][0][0]) == 7


def test_dialog_model_feeds_zero_role_and_turn(tiny_config):
    cfg = dataclasses.replace(tiny_config, role_type_size=3, turn_type_size=16)
    paddle.seed(1)
    m = UnimoForGeneration(cfg)
    m.eval()
    source, valid = text_batch([[CLS_ID, 40, 41, 42, SEP_ID]])
    source["role_ids"] = _t([[2, 2, 1, 1, 0]])
    source["turn_ids"] = _t([[0, 1, 1, 2, 2]])
    a = beam_search(m, source, valid, beam_size=3, max_out_len=5, return_all=True)[0]
    b = beam_search(m, source, valid, beam_size=3, max_out_len=5, return_all=True, use_cache=False)[0]
    assert [i for i, _ in a] == [i for i, _ in b]
    # the decoder really feeds role/turn 0: recompute with explicit zero ids for the target gives the same logits
    with paddle.no_grad():
        dec = make_decoder(m, source, valid)
        got = dec.step([CLS_ID]).numpy()[0]
        ids = _t([[CLS_ID, 40, 41, 42, SEP_ID, CLS_ID]])
        h = m.unimo(input_ids=ids, position_ids=_t([[2, 3, 4, 5, 6, 2]]), role_ids=_t([[2, 2, 1, 1, 0, 0]]),
                    turn_ids=_t([[0, 1, 1, 2, 2, 0]]), attention_mask=_t(masks.seq2seq(5, 1)[None], "float32"))
        assert np.abs(m.lm_head(h[:, -1]).numpy()[0] - got).max() < 1e-5


# ------------------------------------------------------------------------------------------------ sampling
def test_sampling_top_k_one_is_greedy_and_seed_is_reproducible(model):
    source, valid = text_batch(random_sources(np.random.default_rng(9), [6, 9]))
    greedy = greedy_search(model, source, valid, max_out_len=6)
    assert [i for i, _ in sample(model, source, valid, max_out_len=6, top_k=1, seed=3)] == [i for i, _ in greedy]
    assert [i for i, _ in sample(model, source, valid, max_out_len=6, top_p=1e-6, seed=3)] == [i for i, _ in greedy]
    a = sample(model, source, valid, max_out_len=6, seed=11)
    assert a == sample(model, source, valid, max_out_len=6, seed=11)
    assert [i for i, _ in a] != [i for i, _ in sample(model, source, valid, max_out_len=6, seed=12)]
    # the score is the model log-likelihood of the sampled ids: equals teacher-forced log-probs
    for (ids, score), src in zip(a, random_sources(np.random.default_rng(9), [6, 9])):
        logits = full_text_logits(model, src, [CLS_ID] + ids).astype(np.float64)
        logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
            - logits.max(1, keepdims=True)
        assert abs(score - sum(logp[j, t] for j, t in enumerate(ids))) < 1e-3


@pytest.mark.parametrize("kw,expected", [
    (dict(temperature=2.0, top_k=3), {10: np.exp(1.0), 20: np.exp(0.5), 30: 1.0}),
    (dict(top_p=0.7), {10: np.exp(2.0), 20: np.exp(1.0)}),
])
def test_sampling_distribution(model, kw, expected):
    """Fixed logits (2, 1, 0, -1) on ids 10/20/30/40: empirical frequencies of 2000 samples match the
    filtered, renormalised distribution (tolerance 4.5 sigma) and filtered ids never appear."""
    fixed = np.full(50265, -np.inf, np.float32)
    fixed[[10, 20, 30, 40]] = [2.0, 1.0, 0.0, -1.0]
    proc = lambda step, logits, rows: _t(fixed, "float32").expand(logits.shape)  # noqa: E731
    rows, steps = 125, 16  # every step of every row is an independent draw from the same distribution
    n = rows * steps
    source, valid = text_batch([[CLS_ID, 5, SEP_ID]] * rows)
    out = sample(model, source, valid, max_out_len=steps, seed=0, logits_processor=proc, **kw)
    counts = {}
    for ids, _ in out:
        assert len(ids) == steps
        for t in ids:
            counts[t] = counts.get(t, 0) + 1
    assert set(counts) == set(expected)
    z = sum(expected.values())
    for tok, w in expected.items():
        p = w / z
        assert abs(counts[tok] / n - p) < 4.5 * math.sqrt(p * (1 - p) / n), (tok, counts)


# ------------------------------------------------------------------------------------------------ config, errors, text
def test_length_penalty_and_presets():
    assert length_penalty(1, 0.6) == 1.0
    assert length_penalty(7, 1.0) == 2.0
    assert abs(length_penalty(13, 0.5) - math.sqrt(3.0)) < 1e-6
    assert length_penalty(40, 0.0) == 1.0
    coco = BeamSearchConfig.official("coco")
    assert (coco.eos_id, coco.max_out_len, coco.min_out_len, coco.beam_size, coco.length_penalty) == (2, 50, 5, 5, 0.6)
    giga = BeamSearchConfig.official("gigaword", large=True)
    assert (giga.eos_id, giga.beam_size, giga.length_penalty, giga.max_out_len) == (MASK_ID, 6, 1.2, 32)
    with pytest.raises(ValueError, match="word_start"):
        BeamSearchConfig.official("cnndm")
    assert BeamSearchConfig.official("cnndm", word_start=np.ones(50265, bool)).trigram_blocking
    assert strip_hypothesis([5, 6, MASK_ID, 7, MASK_ID], MASK_ID) == [5, 6]


@pytest.mark.parametrize("kw,message", [
    (dict(beam_size=0), "beam_size"),
    (dict(min_out_len=9, max_out_len=4), "min_out_len"),
    (dict(length_penalty=-1.0), "length_penalty"),
    (dict(length_penalty=float("nan")), "length_penalty"),
    (dict(trigram_blocking=True), "word_start"),
    (dict(max_out_len=600), "max_position_embeddings"),
    (dict(eos_id=70000), "vocabulary"),
    (dict(eos_id=CLS_ID), "differ"),
    (dict(nonsense=1), "unknown"),
])
def test_bad_settings_raise(model, kw, message):
    source, valid = text_batch([[CLS_ID, 5, SEP_ID]])
    with pytest.raises((ValueError, TypeError), match=message):
        beam_search(model, source, valid, **kw)


def test_bad_sampling_settings_raise():
    for kw in (dict(top_p=0.0), dict(top_k=-1), dict(temperature=0.0)):
        with pytest.raises(ValueError, match=next(iter(kw))):
            SamplingConfig(**kw)
    with pytest.raises(ValueError, match="max_out_len"):
        DecodeConfig(max_out_len=0)


def test_bad_inputs_raise(model):
    source, valid = text_batch([[CLS_ID, 5, 6, SEP_ID]])
    with pytest.raises(ValueError, match=r"source_valid must have shape \[1, 4\]"):
        greedy_search(model, source, valid[:, :3], max_out_len=2)
    with pytest.raises(ValueError, match="0/1"):
        greedy_search(model, source, valid * 2, max_out_len=2)
    with pytest.raises(ValueError, match="attention_mask"):
        greedy_search(model, dict(source, attention_mask=source["attention_mask"][:, :3]), valid, max_out_len=2)
    with pytest.raises(ValueError, match="unknown source field"):
        greedy_search(model, dict(source, labels=source["input_ids"]), valid, max_out_len=2)
    with pytest.raises(ValueError, match="'input_ids' holds values outside"):
        greedy_search(model, dict(source, input_ids=_t([[0, 5, 6, 99999]])), valid, max_out_len=2)
    with pytest.raises(ValueError, match="image_locations"):
        greedy_search(model, {"image_features": _t(np.zeros((1, 2, 2048)), "float32"),
                              "attention_mask": _t(np.ones((1, 2, 2)), "float32")}, np.ones((1, 2)), max_out_len=2)


def test_nan_model_raises_clearly(tiny_config):
    paddle.seed(2)
    m = UnimoForGeneration(tiny_config)
    w = m.lm_head.mask_lm_out_fc_bias
    w.set_value(np.full(w.shape, np.nan, np.float32))
    source, valid = text_batch([[CLS_ID, 5, SEP_ID]])
    with pytest.raises(FloatingPointError, match="step 0"):
        beam_search(m, source, valid, beam_size=2, max_out_len=3)
    with pytest.raises(FloatingPointError, match="step 0"):
        greedy_search(m, source, valid, max_out_len=3)


def test_model_mode_and_flags_are_restored(tiny_config):
    paddle.seed(3)
    m = UnimoForGeneration(tiny_config)
    m.train()
    source, valid = text_batch([[CLS_ID, 5, SEP_ID]])
    flag = paddle.get_flags(["FLAGS_use_stride_kernel"])
    a = greedy_search(m, source, valid, max_out_len=4)
    assert a == greedy_search(m, source, valid, max_out_len=4)  # no dropout while decoding
    assert m.training
    assert paddle.get_flags(["FLAGS_use_stride_kernel"]) == flag  # switched off only while decoding


def test_ids_to_text(tokenizer):
    ids = [CLS_ID] + tokenizer.encode(" Hello  world") + [3, 1] + tokenizer.encode(" again\n\nand") + [MASK_ID]
    assert ids_to_text(ids, tokenizer) == " Hello world again and"
    assert ids_to_text(ids, tokenizer, strip=True) == "Hello world again and"
