"""Example loaders (unimo.reader.datasets): normalised JSONL and the official UNIMO data files, bad input."""
from __future__ import annotations

import base64
import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from preprocess.datasets import convert_coco_karpathy, convert_coqa, convert_glue, convert_seq2seq, convert_vqa_v2
from unimo.reader.datasets import (DataError, detect_format, iter_examples, load_examples, load_gpt2_vocab,
                                   read_official_image)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def b64(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr, dtype=np.float32).tobytes()).decode("ascii")


def test_loader_does_not_import_paddle():
    code = ("import sys, unimo.reader.datasets, preprocess.datasets; "
            "print('paddle' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=str(Path(__file__).resolve().parents[1]))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


# ------------------------------------------------------------------------------------------------ round trips
def test_roundtrip_converters_to_loader(shared_data, tmp_path):
    """What the converters write is what the loader returns, for every text task."""
    sst = tmp_path / "sst"
    convert_glue("sst-2", [str(shared_data / "text_samples" / "sst2_glue_dev.tsv")], str(sst), progress=False,
                 split="dev")
    ex = load_examples(str(sst / "dev.jsonl"), "classification")
    assert ex == read_jsonl(sst / "dev.jsonl") and len(ex) == 872
    assert ex[1] == {"text_a": "unflinchingly bleak and desperate", "label": "0"}

    xs = tmp_path / "xsum"
    convert_seq2seq("xsum", [str(shared_data / "text_samples" / "xsum_sample.jsonl")], str(xs), progress=False,
                    split="train")
    assert load_examples(str(xs / "train.jsonl"), "seq2seq") == read_jsonl(xs / "train.jsonl")

    sq = tmp_path / "sq"
    convert_seq2seq("squad-qg", [str(shared_data / "text_samples" / "squad_v2_sample.json")], str(sq),
                    progress=False, split="dev")
    summary: dict = {}
    ex = load_examples(str(sq / "dev.jsonl"), "seq2seq", summary=summary)
    assert len(ex) == 8 and ex[0]["src"][1] == "France"
    assert summary["examples"] == 8 and summary["format"] == "jsonl" and summary["skipped_total"] == 0


def test_roundtrip_caption_vqa_dialog(tmp_path):
    karpathy = {"images": [{"filename": "a.jpg", "split": "val", "cocoid": 42, "imgid": 0, "sentences": [
        {"raw": "A cat.", "tokens": ["a", "cat"], "sentid": 1}]}]}
    (tmp_path / "k.json").write_text(json.dumps(karpathy))
    convert_coco_karpathy(str(tmp_path / "k.json"), str(tmp_path / "cap"), progress=False)
    assert load_examples(str(tmp_path / "cap" / "captions_val.jsonl"), "caption") == [
        {"image_id": "42", "caption": "A cat.", "caption_id": 1, "split": "val"}]

    (tmp_path / "q.json").write_text(json.dumps({"questions": [{"image_id": 5, "question": "Color?",
                                                                "question_id": 50}]}))
    (tmp_path / "a.json").write_text(json.dumps({"annotations": [{
        "question_id": 50, "image_id": 5, "question_type": "what color", "answer_type": "other",
        "multiple_choice_answer": "red", "answers": [{"answer": t} for t in ["red"] * 7 + ["blue"] * 3]}]}))
    convert_vqa_v2(str(tmp_path / "vqa"), questions={"train": str(tmp_path / "q.json")},
                   annotations={"train": str(tmp_path / "a.json")}, progress=False, min_count=1)
    assert load_examples(str(tmp_path / "vqa" / "vqa_train.jsonl"), "vqa") == [{
        "question_id": "50", "image_id": "5", "question": "Color?",
        "answers": [{"answer": "red", "score": 1.0}, {"answer": "blue", "score": 0.9}],
        "multiple_choice_answer": "red", "answer_type": "other", "question_type": "what color"}]

    story = {"id": "s", "story": "Cotton is white.", "questions": [{"input_text": "Color?", "turn_id": 1},
                                                                   {"input_text": "Sure?", "turn_id": 2}],
             "answers": [{"input_text": "white", "turn_id": 1}, {"input_text": "yes", "turn_id": 2}]}
    (tmp_path / "coqa-dev-v1.0.json").write_text(json.dumps({"data": [story]}))
    convert_coqa([str(tmp_path / "coqa-dev-v1.0.json")], str(tmp_path / "coqa"), progress=False)
    ex = load_examples(str(tmp_path / "coqa" / "dev.jsonl"), "dialog")
    assert ex[1] == {"id": "s_2", "src": ["Color?", "white", "Sure?"], "tgt": "yes", "knowledge": "Cotton is white."}


def test_jsonl_contract_per_task(tmp_path):
    cases = {
        "ve": ({"pair_id": "p", "image_id": 3416050480, "premise": "A woman walks.", "hypothesis": "She moves.",
                "label": 0, "label_name": "entailment"},
               {"pair_id": "p", "image_id": "3416050480", "premise": "A woman walks.", "hypothesis": "She moves.",
                "label": 0, "label_name": "entailment"}),
        "retrieval": ({"image_id": "1000092795", "captions": ["Two guys.", "Men outside."], "split": "test"},
                      {"image_id": "1000092795", "captions": ["Two guys.", "Men outside."], "split": "test"}),
        "regression": ({"text_a": "A plane.", "text_b": "An air plane.", "label": 5, "qid": 0},
                       {"text_a": "A plane.", "text_b": "An air plane.", "label": 5.0, "qid": "0"}),
        "classification": ({"text_a": "good .", "label": 1}, {"text_a": "good .", "label": "1"}),
    }
    for task, (given, expected) in cases.items():
        f = write_lines(tmp_path / f"{task}.jsonl", [json.dumps(given)])
        assert load_examples(str(f), task) == [expected], task


@pytest.mark.parametrize("task, line, field, reason", [
    ("ve", {"pair_id": "p", "image_id": "1", "premise": "a", "hypothesis": "b", "label": 3}, "label", "bad_label"),
    ("ve", {"pair_id": "p", "image_id": "1", "premise": "a", "hypothesis": "b", "label": 0,
            "label_name": "neutral"}, "label_name", "bad_label"),
    ("vqa", {"question_id": "1", "image_id": "2", "question": "q", "answers": [{"answer": "x", "score": 1.5}]},
     "answers[0].score", "bad_number"),
    ("vqa", {"question_id": "1", "image_id": "2", "question": "q",
             "answers": [{"answer": "x", "score": 1}, {"answer": "x", "score": 0.3}]}, "answers[1].answer",
     "duplicate"),
    ("regression", {"text_a": "a", "label": "NaN"}, "label", "bad_number"),
    ("regression", {"text_a": "a", "label": "high"}, "label", "bad_number"),
    ("classification", {"text_b": "a", "label": "1"}, "text_a", "missing_field"),
    ("classification", {"text_a": ["a"], "label": "1"}, "text_a", "bad_type"),
    ("seq2seq", {"id": "1", "src": [], "tgt": "t"}, "src", "bad_type"),
    ("seq2seq", {"id": "1", "src": ["", " "], "tgt": "t"}, "src", "empty_text"),
    ("dialog", {"id": "1", "src": ["q"], "tgt": "t"}, "knowledge", "missing_field"),
    ("retrieval", {"image_id": "1", "captions": ["ok", ""]}, "captions[1]", "empty_text"),
    ("caption", {"image_id": "1", "caption": "c"}, "caption_id", "missing_field"),
])
def test_jsonl_bad_records(tmp_path, task, line, field, reason):
    good = {"ve": {"pair_id": "g", "image_id": "1", "premise": "a", "hypothesis": "b", "label": 1},
            "vqa": {"question_id": "9", "image_id": "2", "question": "q", "answers": []},
            "regression": {"text_a": "a", "label": 0.5}, "classification": {"text_a": "a", "label": "0"},
            "seq2seq": {"id": "0", "src": ["s"], "tgt": "t"},
            "dialog": {"id": "0", "src": ["q"], "knowledge": "k", "tgt": "t"},
            "retrieval": {"image_id": "0", "captions": ["c"]},
            "caption": {"image_id": "0", "caption": "c", "caption_id": 0}}[task]
    f = write_lines(tmp_path / "data.jsonl", [json.dumps(good), "", json.dumps(line), json.dumps(good)])
    with pytest.raises(DataError) as ei:
        load_examples(str(f), task)
    assert (ei.value.line, ei.value.field, ei.value.reason) == (3, field, reason)
    assert str(ei.value).startswith(f"{f}:3: field '{field}':")
    summary: dict = {}
    ex = load_examples(str(f), task, skip_bad=True, summary=summary)
    assert len(ex) == 2 and summary["skipped"] == {reason: 1} and summary["examples"] == 2
    assert summary["messages"] == [str(ei.value)]


def test_jsonl_file_level_errors(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_bytes(b'{"text_a": "ok", "label": "1"}\n{"text_a": "caf\xe9", "label": "1"}\n[1, 2]\n{"text_a": \n')
    with pytest.raises(DataError, match=r"x\.jsonl:2: not valid UTF-8"):
        load_examples(str(f), "classification")
    g = write_lines(tmp_path / "y.jsonl", ['{"text_a": "ok", "label": "1"}', "[1, 2]", '{"text_a": '])
    with pytest.raises(DataError, match=r"y\.jsonl:2: expected a JSON object"):
        load_examples(str(g), "classification")
    s: dict = {}
    assert len(load_examples(str(g), "classification", skip_bad=True, summary=s)) == 1
    assert s["skipped"] == {"bad_json": 2}
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_examples(str(tmp_path / "nope.jsonl"), "classification")
    with pytest.raises(ValueError, match="unknown task"):
        load_examples(str(g), "ner")
    with pytest.raises(ValueError, match="not available for task 'vqa'"):
        load_examples(str(g), "vqa", fmt="official_tsv")
    # a BOM and gzip are fine
    h = tmp_path / "z.jsonl.gz"
    with gzip.open(h, "wb") as fz:
        fz.write('\ufeff{"text_a": "ok", "label": "1"}\n'.encode("utf-8"))
    assert load_examples(str(h), "classification") == [{"text_a": "ok", "label": "1"}]


# ------------------------------------------------------------------------------------------------ official TSVs
def test_official_classification_and_regression_tsv(tmp_path):
    f = write_lines(tmp_path / "train.tsv", ["text_a\ttext_b\tlabel\tqid", "A man plays.\tA man performs.\t1\t0",
                                             "It rains.\tIt is sunny.\t0\t1"])
    assert detect_format(str(f), "classification") == "official_tsv"
    assert load_examples(str(f), "classification") == [
        {"text_a": "A man plays.", "text_b": "A man performs.", "label": "1", "qid": "0"},
        {"text_a": "It rains.", "text_b": "It is sunny.", "label": "0", "qid": "1"}]
    r = write_lines(tmp_path / "sts.tsv", ["text_a\ttext_b\tlabel", "a\tb\t3.8", "c\td\tinf", "e\tf", "g\th\t0"])
    with pytest.raises(DataError, match=r"sts\.tsv:3: field 'label': not a finite number"):
        load_examples(str(r), "regression")
    s: dict = {}
    ex = load_examples(str(r), "regression", skip_bad=True, summary=s)
    assert [e["label"] for e in ex] == [3.8, 0.0] and s["skipped"] == {"bad_number": 1, "bad_field_count": 1}
    t = write_lines(tmp_path / "test.tsv", ["qid\ttext_a", "7\tNo label here."])
    assert load_examples(str(t), "classification") == [{"text_a": "No label here.", "label": None, "qid": "7"}]
    bad = write_lines(tmp_path / "bad.tsv", ["sentence\tlabel", "x\t1"])
    with pytest.raises(DataError, match="cannot detect"):
        load_examples(str(bad), "classification")
    with pytest.raises(DataError, match=r"bad\.tsv:1: field 'text_a': header"):
        load_examples(str(bad), "classification", fmt="official_tsv")


def gpt2_ids(tokenizer, text: str) -> list[int]:
    """GPT-2 BPE ids of ``text`` (the official files' token spelling), via the GPT-2 encoder table."""
    return [tokenizer.encoder[t] for t in tokenizer.tokenize(text)]


def test_official_seq2seq_tsv(tmp_path, dict_dir, tokenizer):
    vocab = str(dict_dir / "unimo_en.vocab.txt")
    src1, src2, tgt = "The cat sat on the mat.", "Where is it?", "on the mat"
    line = "\t".join(" ".join(map(str, gpt2_ids(tokenizer, t))) for t in (src1, src2, tgt))
    f = write_lines(tmp_path / "dev.tsv", ["src\tanswer\ttgt", line, "13 262\t\t13 [SEP]"])
    assert detect_format(str(f), "seq2seq") == "official_seq2seq"
    ex = load_examples(str(f), "seq2seq", vocab_path=vocab)
    # ids through vocab.txt agree with the tokenizer's own text -> model id path
    assert ex[0] == {"id": "0", "src_ids": [tokenizer.encode(src1), tokenizer.encode(src2)],
                     "tgt_ids": tokenizer.encode(tgt)}
    # hand-checked rows of vocab.txt: GPT-2 13 "." is model id 4, 262 " the" is 5; "[SEP]" is 2
    assert ex[1] == {"id": "1", "src_ids": [[4, 5], []], "tgt_ids": [4, 2]}
    v = load_gpt2_vocab(vocab)
    assert v["13"] == 4 and v["262"] == 5 and v["[CLS]"] == 0 and v["[MASK]"] == 50264 and len(v) == 50265

    bad = write_lines(tmp_path / "bad.tsv", ["src\ttgt", "13 262\t4 99999999", "13\t13\textra", "\t13", "13\t262"])
    with pytest.raises(DataError, match=r"bad\.tsv:2: field 'tgt': token '99999999' is not in the vocabulary"):
        load_examples(str(bad), "seq2seq", vocab_path=vocab)
    s: dict = {}
    ex = load_examples(str(bad), "seq2seq", vocab_path=vocab, skip_bad=True, summary=s)
    # ids are row indices of the file, so the kept row keeps its official data_id
    assert ex == [{"id": "3", "src_ids": [[4]], "tgt_ids": [5]}]
    assert s["skipped"] == {"bad_token_id": 1, "bad_field_count": 1, "empty_text": 1}
    with pytest.raises(ValueError, match="vocab_path"):
        load_examples(str(bad), "seq2seq")


def test_official_dialog_tsv(tmp_path, dict_dir, tokenizer):
    vocab = str(dict_dir / "unimo_en.vocab.txt")
    turns = ["What color was Cotton?", "white", "Where did she live?"]
    src = " [SEP] ".join(" ".join(map(str, gpt2_ids(tokenizer, t))) for t in turns)
    know = " ".join(map(str, gpt2_ids(tokenizer, "Cotton lived in a barn.")))
    f = write_lines(tmp_path / "dev.tsv", ["src\tknowledge\ttgt",
                                           f"{src}\t{know}\t{' '.join(map(str, gpt2_ids(tokenizer, 'in a barn')))}"])
    ex = load_examples(str(f), "dialog", vocab_path=vocab)
    assert ex == [{"id": "0", "src_ids": [tokenizer.encode(t) for t in turns],
                   "knowledge_ids": tokenizer.encode("Cotton lived in a barn."),
                   "tgt_ids": tokenizer.encode("in a barn")}]
    with pytest.raises(DataError, match="knowledge column"):
        load_examples(str(write_lines(tmp_path / "x.tsv", ["src\ttgt", "13\t13"])), "dialog", vocab_path=vocab)


# ------------------------------------------------------------------------------------------------ official ';' files
def random_boxes(rng, n: int) -> np.ndarray:
    """Boxes inside a 500 x 375 image (x1 <= x2, y1 <= y2)."""
    xy = rng.uniform(0, 200, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(1, 170, (n, 2))], 1).astype(np.float32)


def ve_line(image_id="3416050480", data_id="12", label="2", ids="0 133 2", nb=2, boxes=None, feats=None,
            w="500", h="375") -> str:
    rng = np.random.default_rng(int(data_id) if data_id.isdigit() else 0)
    boxes = b64(random_boxes(rng, nb)) if boxes is None else boxes
    feats = b64(rng.normal(size=(nb, 8))) if feats is None else feats
    return ";".join([image_id, data_id, label, ids, "0 0 0", "0 1 2", "", w, h, str(nb), boxes, feats, "", ""])


def test_official_ve(tmp_path):
    rng = np.random.default_rng(0)
    boxes = random_boxes(rng, 3)
    feats = rng.normal(size=(3, 8)).astype(np.float32)
    f = write_lines(tmp_path / "ve_dev.txt", [ve_line(), ve_line("1", "13", "0", "0 5 4 2", 3, b64(boxes), b64(feats),
                                                                 w="640", h="480")])
    assert detect_format(str(f), "ve") == "official_ve"
    ex = load_examples(str(f), "ve", check_features=True)
    assert [(e["image_id"], e["pair_id"], e["label"], e["hypothesis_ids"]) for e in ex] == [
        ("3416050480", "12", 2, [0, 133, 2]), ("1", "13", 0, [0, 5, 4, 2])]
    assert ex[0]["label_name"] is None and ex[0]["premise"] is None
    img = read_official_image(ex[1]["feature_ref"])
    assert img["image_w"] == 640 and img["image_h"] == 480
    np.testing.assert_array_equal(img["boxes"], boxes)
    np.testing.assert_array_equal(img["features"], feats)


@pytest.mark.parametrize("kwargs, field, reason", [
    ({"label": "3"}, "label", "bad_label"), ({"label": "x"}, "label", "bad_number"),
    ({"ids": "0 abc 2"}, "token_ids", "bad_token_id"), ({"ids": "0 50265 2"}, "token_ids", "bad_token_id"),
    ({"ids": ""}, "token_ids", "empty_text"), ({"w": "0"}, "image_w", "bad_number"),
    ({"boxes": "not*base64"}, "boxes", "bad_base64"), ({"boxes": b64(np.zeros((3, 4)))}, "boxes", "bad_shape"),
    ({"feats": b64(np.full((2, 8), np.nan))}, "image_embeddings", "bad_number"),
    ({"boxes": b64(np.zeros((2, 3)))}, "boxes", "bad_shape"), ({"nb": 0}, "number_box", "bad_number"),
])
def test_official_ve_bad(tmp_path, kwargs, field, reason):
    f = write_lines(tmp_path / "ve.txt", [ve_line(), ve_line(data_id="5", **kwargs)])
    with pytest.raises(DataError) as ei:
        load_examples(str(f), "ve", check_features=True, fmt="official_ve")
    assert (ei.value.line, ei.value.field, ei.value.reason) == (2, field, reason)
    s: dict = {}
    assert len(load_examples(str(f), "ve", check_features=True, skip_bad=True, summary=s, fmt="official_ve")) == 1
    assert s["skipped"] == {reason: 1}


def test_official_ve_field_count_and_lazy_features(tmp_path):
    f = write_lines(tmp_path / "ve.txt", [ve_line(), ve_line() + ";extra"])
    with pytest.raises(DataError, match=r"ve\.txt:2: expected 14 ';'-separated fields, got 15"):
        load_examples(str(f), "ve", fmt="official_ve")
    # without check_features a broken feature field is only found when the image is read
    g = write_lines(tmp_path / "ve2.txt", [ve_line(boxes="@@@")])
    ex = load_examples(str(g), "ve")
    with pytest.raises(DataError, match=r"ve2\.txt:1: field 'boxes': bad base64"):
        read_official_image(ex[0]["feature_ref"])


def img2txt_line(image_id="COCO_val2014_000000391895", caption_id="770337", ids="0 83 313 19 2", nb=2,
                 feats=None) -> str:
    boxes = b64(np.array([[0, 0, 10, 20], [5, 5, 50, 40]][:nb]))
    feats = b64(np.arange(nb * 6).reshape(nb, 6)) if feats is None else feats
    probs = b64(np.ones((nb, 3)))
    return ";".join([image_id, caption_id, ids, "0 0 0 0 0", "0 1 2 3 4", "", "", "", "480", "640", str(nb), boxes,
                     probs, probs, feats, ""])


def test_official_img2txt_and_gz(tmp_path):
    # the official reader keeps int(image_id[9:]); e.g. "train2014" + a zero-padded COCO id
    lines = [img2txt_line("train2014000000391895"), img2txt_line("train2014000000522418", "681330", "0 4 2", 1)]
    f = write_lines(tmp_path / "coco_train.txt", lines)
    assert detect_format(str(f), "caption") == "official_img2txt"
    ex = load_examples(str(f), "caption", check_features=True)
    assert [(e["image_id"], e["caption_id"], e["caption_ids"]) for e in ex] == [
        ("391895", "770337", [0, 83, 313, 19, 2]), ("522418", "681330", [0, 4, 2])]
    img = read_official_image(ex[1]["feature_ref"])
    assert img["image_h"] == 480 and img["image_w"] == 640
    np.testing.assert_array_equal(img["boxes"], [[0, 0, 10, 20]])
    np.testing.assert_array_equal(img["features"], np.arange(6).reshape(1, 6))
    gz = tmp_path / "coco_train.txt.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as fz:
        fz.write("\n".join(lines) + "\n")
    exz = load_examples(str(gz), "caption", fmt="official_img2txt")
    assert [e["caption_ids"] for e in exz] == [e["caption_ids"] for e in ex]
    assert exz[1]["feature_ref"]["offset"] is None
    np.testing.assert_array_equal(read_official_image(exz[1]["feature_ref"])["features"], img["features"])
    bad = write_lines(tmp_path / "bad.txt", [img2txt_line("391895")])
    with pytest.raises(DataError, match=r"bad\.txt:1: field 'image_id'"):
        load_examples(str(bad), "caption", fmt="official_img2txt")


def test_official_retrieval_captions(tmp_path):
    f = write_lines(tmp_path / "caption_test.txt", [
        "0 1332 2;0 0 0;0 1 2;1000092795.jpg;0", "0 2409 4 2;0 0 0 0;0 1 2 3;1000092795.jpg;1",
        "0 83 2;0 0 0;0 1 2;10002456.jpg;5", "0 x 2;0 0 0;0 1 2;10002456.jpg;6", "0 4 2;0 0;0 1;;7"])
    assert detect_format(str(f), "retrieval") == "official_retrieval"
    with pytest.raises(DataError, match=r"caption_test\.txt:4: field 'token_ids': not an integer id: 'x'"):
        load_examples(str(f), "retrieval")
    s: dict = {}
    ex = load_examples(str(f), "retrieval", skip_bad=True, summary=s)
    assert ex == [{"image_id": "1000092795.jpg", "captions_ids": [[0, 1332, 2], [0, 2409, 4, 2]],
                   "caption_sent_ids": ["0", "1"], "split": None},
                  {"image_id": "10002456.jpg", "captions_ids": [[0, 83, 2]], "caption_sent_ids": ["5"],
                   "split": None}]
    assert s["skipped"] == {"bad_token_id": 1, "bad_id": 1}


def test_iter_examples_is_lazy_and_fills_summary(tmp_path):
    f = write_lines(tmp_path / "c.jsonl", [json.dumps({"text_a": f"t{i}", "label": "0"}) for i in range(5)])
    s: dict = {}
    it = iter_examples(str(f), "classification", summary=s)
    assert next(it) == {"text_a": "t0", "label": "0"} and s == {}
    assert len(list(it)) == 4 and s["examples"] == 5 and s["task"] == "classification"
