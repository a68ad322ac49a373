"""Object tags for COCO captioning (issue 17.2), the deterministic baselines, SQuAD-QG grouping and CoQA [CLS] ids.

Oracles: the attention masks are written out by hand from the spec's sentences (section 3, image captioning);
tag words from the real Visual Genome vocabulary; the shape measure and QG grouping from hand-computed values."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unimo.reader.object_tags import (TagSequence, load_object_vocab, normalise_image_id, read_tag_file,
                                      store_tag_words, tag_sequence)
from unimo.utils.errors import DataError

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------ tag file reader
def test_read_tag_file_truncates_and_normalises(tmp_path):
    p = tmp_path / "tags.ids"
    p.write_text("000391895;11 12 13 2;0 0 0 0;2 3 4 5\nCOCO_val_42;;;\nabc;7;0;2\n")
    tags = read_tag_file(str(p), max_obj_len=3)
    assert tags == {"391895": TagSequence((11, 12, 13), (2, 3, 4)), "42": TagSequence((), ()),
                    "abc": TagSequence((7,), (2,))}
    assert read_tag_file(str(p))["391895"].token_ids == (11, 12, 13, 2)
    assert normalise_image_id(" 007 ") == "7"


@pytest.mark.parametrize("line, field, what", [
    ("1;11 12;0 0", None, "expected 4 ';'-separated fields"),
    ("1;11 x;0 0;2 3", "token_ids", "not a non-negative integer"),
    ("1;11 50265;0 0;2 3", "token_ids", "outside [0, 50265)"),
    ("1;11 12;0;2 3", "sent_ids", "1 values for 2 token_ids"),
    ("1;11 12;0 0;2 514", "pos_ids", "outside [0, 514)"),
])
def test_read_tag_file_errors_name_file_line_field(tmp_path, line, field, what):
    p = tmp_path / "bad.ids"
    p.write_text("9;5;0;2\n" + line + "\n")
    with pytest.raises(DataError) as e:
        read_tag_file(str(p))
    assert e.value.line == 2 and e.value.field == field
    assert str(e.value).startswith(f"{p}:2:") and what in str(e.value)


def test_read_tag_file_refuses_an_image_twice(tmp_path):
    p = tmp_path / "dup.ids"
    p.write_text("5;7;0;2\n\n005;8;0;2\n")
    with pytest.raises(DataError, match=r"dup.ids:3: field 'image_id': image '5' is listed twice \(first at line 1\)"):
        read_tag_file(str(p))


# ------------------------------------------------------------------------------------------------ tags from a store
class _Rec:
    def __init__(self, obj_id, obj_conf, image_id="x"):
        self.image_id, self._pred = image_id, (np.asarray(obj_id), np.asarray(obj_conf, np.float32))

    def object_predictions(self):
        return self._pred


def test_store_tag_words_order_threshold_duplicates(shared_data):
    names = load_object_vocab(str(shared_data / "vg_1600_400_20" / "objects_vocab.txt"))
    assert len(names) == 1600
    # 0-based ids without background name line id+1 of objects_vocab.txt (demo world: star = column 1595)
    star, heart, box = 1594, 1090, 719
    assert (names[star], names[heart], names[box]) == ("star", "heart", "box")
    rec = _Rec([heart, star, box, star, heart], [0.5, 0.9, 0.35, 0.5, 0.34])
    # descending confidence, the tie (0.5, 0.5) in box order, >= 0.35 kept, duplicates kept
    assert store_tag_words(rec, names, 0.35) == ["star", "heart", "star", "box"]
    assert store_tag_words(rec, names, 0.95) == []


def test_tag_sequence_is_caption_bpe_plus_sep(tokenizer):
    seq = tag_sequence(["star", "heart"], tokenizer)
    assert list(seq.token_ids) == tokenizer.encode(" star heart") + [2]
    assert list(seq.token_ids[:-1]) == tokenizer.encode("a star heart")[1:]  # the words as inside a caption
    assert seq.pos_ids == tuple(range(2, 2 + len(seq)))
    assert tag_sequence([], tokenizer) == TagSequence((), ())


def _store(path, tokenizer_free=True):
    from unimo.reader.feature_store import FeatureStoreWriter
    from unimo.reader.feature_formats import RegionFeatures

    rng = np.random.default_rng(0)
    with FeatureStoreWriter(path, feature_dim=8) as w:
        # "a": one box, "b": two boxes (so the batch pads the image rows)
        w.add(RegionFeatures("a", 100, 100, np.array([[0, 0, 50, 50]], np.float32), rng.normal(size=(1, 8)),
                             obj_id=np.array([1594]), obj_conf=np.array([0.9], np.float32)))
        w.add(RegionFeatures("b", 100, 100, np.array([[0, 0, 50, 50], [10, 10, 90, 90]], np.float32),
                             rng.normal(size=(2, 8)), obj_id=np.array([719, 1090]),
                             obj_conf=np.array([0.4, 0.8], np.float32)))
    return path


def test_cli_writes_the_official_format(tmp_path, shared_data, dict_dir, tokenizer):
    store = _store(tmp_path / "store")
    out = tmp_path / "tags.ids"
    vocab = shared_data / "vg_1600_400_20" / "objects_vocab.txt"
    cmd = [sys.executable, "-m", "preprocess.object_tags", "--features", str(store), "--vocab", str(vocab),
           "--output", str(out), "--dict-dir", str(dict_dir), "--no-progress", "--json"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["images"] == 2 and summary["tags"] == 3
    a = tokenizer.encode(" star") + [2]
    b = tokenizer.encode(" heart box") + [2]
    assert out.read_text().splitlines() == [
        "a;" + " ".join(map(str, a)) + ";" + " ".join("0" * len(a)) + ";" + " ".join(str(2 + i) for i in range(len(a))),
        "b;" + " ".join(map(str, b)) + ";" + " ".join("0" * len(b)) + ";" + " ".join(str(2 + i) for i in range(len(b)))]
    assert read_tag_file(str(out))["b"].token_ids == tuple(b)
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)  # no --overwrite
    assert again.returncode == 2 and again.stderr.strip().splitlines()[-1] == \
        f"error: {out}: --output: exists (pass --overwrite to replace it)"
    bad = subprocess.run(cmd[:5] + ["--vocab", str(tmp_path / "none.txt")] + cmd[7:] + ["--overwrite"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "object vocabulary not found" in bad.stderr


# ------------------------------------------------------------------------------------------------ the task
def _task(tmp_path, tokenizer, **over):
    from unimo.finetune.tasks.generation import CaptionConfig, CaptionTask

    store = _store(tmp_path / "store")
    tags = tmp_path / "tags.ids"
    tags.write_text("a;11 12;0 0;2 3\nb;13 14 2;0 0 0;2 3 4\n")
    values = dict(task="img2txt", do_train=False, feature_store=str(store), object_tags=True,
                  object_tag_file=str(tags), min_boxes=1, batch_size=2, disable_tqdm=True)
    values.update(over)
    return CaptionTask(CaptionConfig.from_values(values), tokenizer, str(tmp_path / "out"))


EXAMPLES = [{"image_id": "a", "tgt_ids": [0, 500, 2]}, {"image_id": "b", "tgt_ids": [0, 600, 700, 2]}]

# spec section 3, image captioning, training: order [image ; objects ; caption]; "image and object tags attend
# bidirectionally among themselves only; caption tokens attend to all valid image+object positions and causally to
# caption"; pad rows/cols 0. Example "a": image rows [IMG, box, pad], tags [11, 12, pad], caption [CLS 500 SEP pad]
#                   i0 i1 i2 o0 o1 o2 t0 t1 t2 t3
HAND_TRAIN_MASK_A = [[1, 1, 0, 1, 1, 0, 0, 0, 0, 0],   # i0
                     [1, 1, 0, 1, 1, 0, 0, 0, 0, 0],   # i1
                     [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],   # i2 (pad)
                     [1, 1, 0, 1, 1, 0, 0, 0, 0, 0],   # o0
                     [1, 1, 0, 1, 1, 0, 0, 0, 0, 0],   # o1
                     [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],   # o2 (pad)
                     [1, 1, 0, 1, 1, 0, 1, 0, 0, 0],   # t0 [CLS]
                     [1, 1, 0, 1, 1, 0, 1, 1, 0, 0],   # t1
                     [1, 1, 0, 1, 1, 0, 1, 1, 1, 0],   # t2 [SEP]
                     [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]   # t3 (pad)
# decoding: "source = [image ; objects] with outer(m)"
HAND_SOURCE_MASK_A = [[1, 1, 0, 1, 1, 0], [1, 1, 0, 1, 1, 0], [0] * 6, [1, 1, 0, 1, 1, 0], [1, 1, 0, 1, 1, 0], [0] * 6]


def test_collate_mask_inputs_and_labels_with_tags(tmp_path, tokenizer):
    task = _task(tmp_path, tokenizer)
    batch = task.collate(EXAMPLES)
    np.testing.assert_array_equal(batch["attention_mask"][0], np.array(HAND_TRAIN_MASK_A, np.float32))
    np.testing.assert_array_equal(batch["obj_input_ids"], [[11, 12, 1], [13, 14, 2]])  # padded with [PAD] = 1
    np.testing.assert_array_equal(batch["obj_position_ids"], [[2, 3, 1], [2, 3, 4]])
    # target position j predicts token j+1; flattened over [B, Nv + No + Nt] = [2, 3 + 3 + 4]
    np.testing.assert_array_equal(batch["label_positions"], [6, 7, 16, 17, 18])
    np.testing.assert_array_equal(batch["labels"], [500, 2, 600, 700, 2])
    source, valid = task.source_batch(["a", "b"])
    np.testing.assert_array_equal(source["attention_mask"][0], np.array(HAND_SOURCE_MASK_A, np.float32))
    np.testing.assert_array_equal(valid, [[1, 1, 0, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
    # without tags: no tag inputs, the plain [image ; caption] mask
    plain = _task(tmp_path / "p", tokenizer, object_tags=False).collate(EXAMPLES)
    assert "obj_input_ids" not in plain and plain["attention_mask"].shape == (2, 7, 7)
    np.testing.assert_array_equal(plain["label_positions"], [3, 4, 10, 11, 12])


def test_missing_image_and_config_errors(tmp_path, tokenizer):
    from unimo.finetune.tasks.generation import CaptionConfig
    from unimo.utils.errors import ConfigError, UserError

    task = _task(tmp_path, tokenizer)
    with pytest.raises(UserError, match="no object tags for image 'c'"):
        task.object_tags(["a", "c"])
    with pytest.raises(ConfigError, match="object_tags: needs object_tag_file"):
        CaptionConfig.from_values(task="img2txt", do_train=False, object_tags=True)


def test_store_tags_match_the_cli(tmp_path, tokenizer, shared_data):
    task = _task(tmp_path, tokenizer, object_tag_file=None,
                 object_vocab=str(shared_data / "vg_1600_400_20" / "objects_vocab.txt"), object_tag_conf=0.5)
    a, b = task.object_tags(["a", "b"])
    assert list(a.token_ids) == tokenizer.encode(" star") + [2]
    assert list(b.token_ids) == tokenizer.encode(" heart") + [2]  # box (0.4) below 0.5
    task.tag_source = {"a": TagSequence((5,), (2,)), "b": TagSequence((), ())}  # what the inference API may hand over
    assert [len(t) for t in task.object_tags(["a", "b"])] == [1, 0]


def test_tag_input_equals_tags_as_text_tokens_and_villa_perturbs_the_caption_only(tmp_path, tokenizer, tiny_config):
    """The model's tag path (official ``emb_obj_ids``: word + pos -> the text LayerNorm, spec 1.2) equals carrying
    the tags as extra text tokens with their own positions between the image and the caption (LayerNorm is per
    token); VILLA's text delta covers exactly the caption positions."""
    import paddle

    from unimo.model.modeling import UnimoForGeneration
    from unimo.training.adversarial import _validity, wrap_villa

    paddle.seed(0)
    cfg = tiny_config.copy(image_embedding_size=8)
    model = UnimoForGeneration(cfg)
    model.eval()
    task = _task(tmp_path, tokenizer)
    batch = task.collate(EXAMPLES)
    t = task.to_tensors(batch)
    seq_obj = model.unimo(input_ids=t["input_ids"], position_ids=t["position_ids"], image_features=t["image_features"],
                          image_locations=t["image_locations"], obj_input_ids=t["obj_input_ids"],
                          obj_position_ids=t["obj_position_ids"], attention_mask=t["attention_mask"]).numpy()
    seq_txt = model.unimo(input_ids=paddle.concat([t["obj_input_ids"], t["input_ids"]], axis=1),
                          position_ids=paddle.concat([t["obj_position_ids"], t["position_ids"]], axis=1),
                          image_features=t["image_features"], image_locations=t["image_locations"],
                          attention_mask=t["attention_mask"]).numpy()
    np.testing.assert_allclose(seq_obj, seq_txt, rtol=0, atol=1e-6)
    img_valid, txt_valid = _validity(t, 3, t["input_ids"].shape[1])
    np.testing.assert_array_equal(txt_valid.numpy(), [[1, 1, 1, 0], [1, 1, 1, 1]])  # the captions, not the tags
    np.testing.assert_array_equal(img_valid.numpy(), [[1, 1, 0], [1, 1, 1]])
    model.train()
    villa = wrap_villa(model, {"adv_steps": 2, "task": "img2txt"})
    loss, parts = villa(**t)
    assert np.isfinite(float(loss)) and set(parts) == {"pure", "adv_text", "adv_image", "kl"}


def test_generate_decodes_from_image_and_tags(tmp_path, tokenizer, tiny_config, monkeypatch):
    import paddle

    from unimo.finetune.tasks import generation
    from unimo.model.modeling import UnimoForGeneration

    paddle.seed(0)
    model = UnimoForGeneration(tiny_config.copy(image_embedding_size=8))
    model.eval()
    task = _task(tmp_path, tokenizer, beam_size=2, max_out_len=4, min_out_len=1)
    seen = []
    real = generation.beam_search
    monkeypatch.setattr(generation, "beam_search", lambda m, s, v, c: seen.append((s, v)) or real(m, s, v, c))
    out = task.generate(model, ["a", "b"])
    assert sorted(out) == ["a", "b"]
    source, valid = seen[0]
    np.testing.assert_array_equal(source["obj_input_ids"], [[11, 12, 1], [13, 14, 2]])
    np.testing.assert_array_equal(source["attention_mask"][0], np.array(HAND_SOURCE_MASK_A, np.float32))


# ------------------------------------------------------------------------------------------------ baselines
def test_constant_caption_tie_rule():
    from unimo.finetune.tasks.generation import most_frequent_caption

    caps = ["b red", "a blue", "c green", "a blue", "b red", "c green", "d"]
    for perm in (caps, caps[::-1], sorted(caps)):
        assert most_frequent_caption(perm) == "a blue"  # three captions tie at 2: the alphabetically first
    assert most_frequent_caption(["x", "y", "y"]) == "y"


def test_vqa_majority_tie_rule():
    from unimo.finetune.tasks.multimodal import VQATask

    exs = [{"targets": {3: 1.0}}, {"targets": {1: 1.0}}, {"targets": {2: 0.3}}]
    assert VQATask._majority_baseline(exs) == pytest.approx(100.0 / 3)
    assert VQATask._majority_baseline(exs[::-1]) == pytest.approx(100.0 / 3)


# ------------------------------------------------------------------------------------------------ shape measure
def test_shape_mentions_hand_counted():
    from unimo.eval.shapes import shape_mentions

    scenes = {"1": [("green", "star"), ("green", "heart")], "2": [("red", "circle"), ("blue", "square")]}
    caps = {"1": "A green cross and a green cross.",          # 2 shape nouns wrong, 2 pairs wrong
            "2": "A small red circle left of two squares."}   # circle, square right; pair red circle right
    m = shape_mentions(caps, scenes, ["circle", "square", "triangle", "star", "heart", "cross"],
                       ["red", "green", "blue", "yellow", "purple", "orange"])
    assert m == {"shape_precision": 2 / 4, "pair_precision": 1 / 3, "captions_shapes_right": 1 / 2,
                 "shape_recall": (0 / 2 + 2 / 2) / 2, "shape_nouns": 4, "pairs": 3, "captions": 2}
    with pytest.raises(KeyError):
        shape_mentions({"3": "a star"}, scenes, ["star"], ["red"])


# ------------------------------------------------------------------------------------------------ seq2seq items
def _seq2seq_task(tmp_path, tokenizer, dict_dir, rows, **over):
    from unimo.finetune.tasks.generation import Seq2SeqConfig, Seq2SeqTask

    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    values = dict(task="seq2seq", do_train=False, data_dir=str(tmp_path), dev_file="dev.jsonl",
                  vocab_dir=str(dict_dir), disable_tqdm=True)
    values.update(over)
    cfg = Seq2SeqConfig.from_values(values)
    return Seq2SeqTask(cfg, tokenizer, str(tmp_path / "out"))


def test_coqa_cls_role_and_turn_follow_the_official_reader(tmp_path, tokenizer, dict_dir):
    rows = [{"id": 0, "src": ["who is it?", "a cat", "what colour?"], "knowledge": "a black cat sat.", "tgt": "black"}]
    task = _seq2seq_task(tmp_path, tokenizer, dict_dir, rows, task="dialog", metric="coqa")
    rec = task.load("dev")[0]
    lens = [len(tokenizer.encode(s)) + 1 for s in ["a black cat sat.", "who is it?", "a cat", "what colour?"]]
    # official: [CLS] role len%2 = 1, turn len = 3; knowledge 2/0; turns roles 1,0,1 and turns 3,2,1
    want_role = [1] + [2] * lens[0] + [1] * lens[1] + [0] * lens[2] + [1] * lens[3]
    want_turn = [3] + [0] * lens[0] + [3] * lens[1] + [2] * lens[2] + [1] * lens[3]
    assert rec["role_ids"] == want_role and rec["turn_ids"] == want_turn
    assert len(rec["role_ids"]) == len(rec["src_ids"])


def test_squad_qg_dev_metric_groups_references_by_source(tmp_path, tokenizer, dict_dir, monkeypatch):
    s1, s2 = "the cat sat on the mat in the sun .", "paris is the capital of france ."
    r1, r2, r3 = "where did the cat sit today ?", "what sat on the mat ?", "what is the capital of france ?"
    rows = [{"id": 0, "src": [s1], "tgt": r1}, {"id": 1, "src": [s1], "tgt": r2}, {"id": 2, "src": [s2], "tgt": r3}]
    task = _seq2seq_task(tmp_path, tokenizer, dict_dir, rows, metric="qg")
    # the last prediction of a sentence is its hypothesis; it equals one of the sentence's references
    monkeypatch.setattr(task, "generate", lambda model, exs: ["completely unrelated words here", r1, r3])
    res = task.evaluate(None, "dev")
    assert res["num_groups"] == 2 and res["num_examples"] == 3
    assert res["Bleu_4"] == pytest.approx(1.0, abs=1e-6)  # both groups: an exact match of a reference


def test_unimo_captioner_reads_tags_from_the_features(tmp_path, tokenizer, tiny_config, shared_data):
    """unimo.predict caption with a model trained with tags (object_tags in its training config): the tags come from
    the features' object predictions, and the captions equal the task's own decoding from [image ; those tags]."""
    import paddle

    from unimo.model.modeling import UnimoForGeneration
    from unimo.predict import UnimoCaptioner

    store = _store(tmp_path / "store")
    vocab = str(shared_data / "vg_1600_400_20" / "objects_vocab.txt")
    paddle.seed(0)
    model = UnimoForGeneration(tiny_config.copy(image_embedding_size=8))
    conf = {"task": "img2txt", "object_tags": True, "object_vocab": vocab, "object_tag_conf": 0.5, "min_boxes": 1,
            "max_out_len": 6, "beam_size": 2}
    cap = UnimoCaptioner(model, tokenizer, str(store), task_config=conf, progress=False)
    a, b = cap.task.object_tags(["a", "b"])
    assert list(a.token_ids) == tokenizer.encode(" star") + [2] and list(b.token_ids) == tokenizer.encode(" heart") + [2]
    reference = _task(tmp_path / "ref", tokenizer, object_tag_file=None, object_vocab=vocab, object_tag_conf=0.5,
                      max_out_len=6, beam_size=2)
    assert cap.generate(["a", "b"]) == reference.generate(model, ["a", "b"])
    off = UnimoCaptioner(model, tokenizer, str(store), task_config={**conf, "object_tags": False}, progress=False)
    assert all(len(t) == 0 for t in off.task.object_tags(["a", "b"]))
