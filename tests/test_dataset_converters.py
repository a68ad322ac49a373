"""Dataset converters (preprocess/datasets): small files in the real public layouts, exact outputs checked by hand."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from itertools import combinations
from pathlib import Path

import pytest

from conftest import REPO
from preprocess.datasets import (convert_coco_karpathy, convert_coqa, convert_flickr30k, convert_glue,
                                 convert_seq2seq, convert_snli_ve, convert_vqa_v2, normalize_answer, vqa_score)
from preprocess.datasets.common import DataError


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def visible_files(d: Path) -> list[str]:
    return sorted(os.listdir(d)) if d.exists() else []


# ------------------------------------------------------------------------------------------------ Karpathy
def karpathy(images):
    return {"dataset": "coco", "images": images}


def k_image(cocoid, split, sents, filename=None, imgid=0):
    return {"filepath": "val2014", "filename": filename or f"COCO_val2014_{cocoid:012d}.jpg", "imgid": imgid,
            "split": split, "cocoid": cocoid, "sentids": [s[0] for s in sents],
            "sentences": [{"tokens": raw.lower().strip(" .").split(), "raw": raw, "imgid": imgid, "sentid": sid}
                          for sid, raw in sents]}


@pytest.fixture()
def coco_json(tmp_path):
    return write_json(tmp_path / "dataset_coco.json", karpathy([
        k_image(391895, "test", [(770337, "A man with a red helmet on a small moped on a dirt road. "),
                                 (771687, "Man riding a motor bike on a dirt road on the countryside.")], imgid=0),
        k_image(522418, "train", [(681330, "A woman wearing a net on her head cutting a cake. ")], imgid=1),
        k_image(184613, "restval", [(445, "A child holding a flowered umbrella\nand petting a yak."),
                                    (446, "A young man holding an umbrella next to a herd of cattle.")], imgid=2),
    ]))


def test_coco_karpathy_outputs(coco_json, tmp_path):
    out = tmp_path / "out"
    s = convert_coco_karpathy(str(coco_json), str(out), progress=False)
    assert visible_files(out) == ["captions_test.jsonl", "captions_test_refs.json", "captions_train.jsonl",
                                  "captions_train_refs.json"]
    assert read_jsonl(out / "captions_test.jsonl") == [
        {"image_id": "391895", "caption": "A man with a red helmet on a small moped on a dirt road.",
         "caption_id": 770337, "split": "test"},
        {"image_id": "391895", "caption": "Man riding a motor bike on a dirt road on the countryside.",
         "caption_id": 771687, "split": "test"}]
    train = read_jsonl(out / "captions_train.jsonl")  # restval merged into train by default
    assert [(e["image_id"], e["caption_id"], e["split"]) for e in train] == [
        ("522418", 681330, "train"), ("184613", 445, "train"), ("184613", 446, "train")]
    assert train[1]["caption"] == "A child holding a flowered umbrella and petting a yak."  # newline collapsed
    assert s["images"] == {"test": 1, "train": 2} and s["captions"] == {"test": 2, "train": 3}
    assert s["outputs"] == {"captions_test.jsonl": 2, "captions_train.jsonl": 3} and s["skipped_total"] == 0

    refs = json.loads((out / "captions_test_refs.json").read_text())
    assert refs["type"] == "captions" and refs["images"] == [{"id": "391895"}]
    assert refs["annotations"] == [
        {"image_id": "391895", "caption": "A man with a red helmet on a small moped on a dirt road.", "id": 770337},
        {"image_id": "391895", "caption": "Man riding a motor bike on a dirt road on the countryside.",
         "id": 771687}]
    # the refs load in the COCO API that pycocoevalcap's COCOEvalCap consumes, with string image ids
    from pycocotools.coco import COCO

    coco = COCO(str(out / "captions_test_refs.json"))
    res = coco.loadRes([{"image_id": "391895", "caption": "a man on a moped"}])
    assert coco.getImgIds() == ["391895"] and res.getImgIds() == ["391895"]
    assert [a["caption"] for a in coco.imgToAnns["391895"]][1].startswith("Man riding")


def test_coco_karpathy_options(coco_json, tmp_path):
    out = tmp_path / "sep"
    s = convert_coco_karpathy(str(coco_json), str(out), progress=False, restval="separate", text="tokens")
    assert s["images"] == {"restval": 1, "test": 1, "train": 1}
    rv = read_jsonl(out / "captions_restval.jsonl")
    assert rv[0] == {"image_id": "184613", "caption": "a child holding a flowered umbrella and petting a yak",
                     "caption_id": 445, "split": "restval"}
    s = convert_coco_karpathy(str(coco_json), str(tmp_path / "fn"), progress=False, image_id_from="filename")
    assert read_jsonl(tmp_path / "fn" / "captions_test.jsonl")[0]["image_id"] == "COCO_val2014_000000391895.jpg"


@pytest.mark.parametrize("mutate, where, field, reason", [
    (lambda d: d["images"][1].update(split="dev"), "images[1]", "split", "bad_split"),
    (lambda d: d["images"][1].update(cocoid=391895), "images[1]", "cocoid", "duplicate"),
    (lambda d: d["images"][1]["sentences"][0].update(raw="  \n "), "images[1].sentences[0]", "raw", "empty_text"),
    (lambda d: d["images"][2]["sentences"][1].pop("sentid"), "images[2].sentences[1]", "sentid", "bad_id"),
    (lambda d: d["images"][2]["sentences"][1].update(sentid=770337), "images[2].sentences[1]", "sentid",
     "duplicate"),
    (lambda d: d["images"][1].pop("cocoid"), "images[1]", "cocoid", "bad_id"),
])
def test_coco_karpathy_bad_input(coco_json, tmp_path, mutate, where, field, reason):
    data = json.loads(coco_json.read_text())
    mutate(data)
    bad = write_json(tmp_path / "bad.json", data)
    out = tmp_path / "out"
    with pytest.raises(DataError) as ei:
        convert_coco_karpathy(str(bad), str(out), progress=False)
    assert ei.value.reason == reason and ei.value.line == where and ei.value.field == field
    assert str(bad) in str(ei.value) and f"field '{field}'" in str(ei.value)
    assert not out.exists()  # nothing left behind (the folder this run created is removed too)
    s = convert_coco_karpathy(str(bad), str(out), progress=False, skip_bad=True)
    assert s["skipped"] == {reason: 1}
    assert sum(s["captions"].values()) == 4  # 5 captions minus the one bad caption / one-caption image


def test_karpathy_layout_and_json_errors(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [\n  {"split": "train",}\n]}')
    with pytest.raises(DataError, match=r"broken\.json:2: invalid JSON"):
        convert_coco_karpathy(str(broken), str(tmp_path / "o"), progress=False)
    with pytest.raises(DataError, match="'images' list"):
        convert_coco_karpathy(str(write_json(tmp_path / "x.json", {"data": []})), str(tmp_path / "o"),
                              progress=False)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        convert_coco_karpathy(str(tmp_path / "missing.json"), str(tmp_path / "o"), progress=False)


def test_failed_run_keeps_previous_outputs(coco_json, tmp_path):
    out = tmp_path / "out"
    convert_coco_karpathy(str(coco_json), str(out), progress=False)
    before = (out / "captions_train.jsonl").read_bytes()
    data = json.loads(coco_json.read_text())
    data["images"][2]["sentences"][0]["raw"] = ""  # the failure comes after train lines were already written
    with pytest.raises(DataError):
        convert_coco_karpathy(str(write_json(tmp_path / "bad.json", data)), str(out), progress=False, overwrite=True)
    assert (out / "captions_train.jsonl").read_bytes() == before
    assert [f for f in os.listdir(out) if f.startswith(".")] == []  # no temporary files left


def test_flickr30k(tmp_path):
    data = {"dataset": "flickr30k", "images": [
        {"filename": "1000092795.jpg", "imgid": 0, "split": "train", "sentids": [0, 1], "sentences": [
            {"raw": "Two young guys with shaggy hair look at their hands while hanging out in the yard.",
             "tokens": [], "sentid": 0, "imgid": 0},
            {"raw": "Two young, White males are outside near many bushes.", "tokens": [], "sentid": 1, "imgid": 0}]},
        {"filename": "10002456.jpg", "imgid": 1, "split": "val", "sentids": [5], "sentences": [
            {"raw": "Several men in hard hats are operating a giant pulley system.", "tokens": [], "sentid": 5,
             "imgid": 1}]},
        {"filename": "1000268201.jpg", "imgid": 2, "split": "test", "sentids": [10], "sentences": [
            {"raw": "A child in a pink dress is climbing up a set of stairs in an entry way.", "tokens": [],
             "sentid": 10, "imgid": 2}]}]}
    out = tmp_path / "f"
    s = convert_flickr30k(str(write_json(tmp_path / "dataset_flickr30k.json", data)), str(out), progress=False)
    assert s["images"] == {"test": 1, "train": 1, "val": 1}
    assert read_jsonl(out / "retrieval_train.jsonl") == [{"image_id": "1000092795", "captions": [
        "Two young guys with shaggy hair look at their hands while hanging out in the yard.",
        "Two young, White males are outside near many bushes."], "split": "train"}]
    assert read_jsonl(out / "retrieval_test.jsonl")[0]["image_id"] == "1000268201"


# ------------------------------------------------------------------------------------------------ VQA
def test_vqa_score_matches_leave_one_out_definition():
    # hand values of the closed form for 10 annotators
    expected = [0.0, 0.3, 0.6, 0.9] + [1.0] * 7
    assert [vqa_score(c) for c in range(11)] == pytest.approx(expected, abs=1e-12)
    assert vqa_score(1) == 0.3 and vqa_score(2) == 0.6 and vqa_score(3) == 0.9  # exact (Fraction arithmetic)
    # the metric's definition: mean over the 10 subsets of 9 annotators of min(#matches / 3, 1)
    for c in range(11):
        humans = [1] * c + [0] * (10 - c)
        accs = [min(Fraction(sum(sub), 3), 1) for sub in combinations(humans, 9)]
        assert vqa_score(c) == float(sum(accs) / len(accs))
    assert vqa_score(2, 5) == pytest.approx((2 * Fraction(1, 3) + 3 * Fraction(2, 3)) / 5)
    with pytest.raises(ValueError):
        vqa_score(11)


@pytest.mark.parametrize("raw, norm", [
    ("Two", "2"), ("two.", "2"), ("none", "0"), ("Ten dogs", "10 dogs"), ("the dog", "dog"), ("a dog", "dog"),
    ("Dog.", "dog"), ("dog!", "dog"), ("2.5", "2.5"), ("1,000", "1000"), ("dont know", "don't know"),
    ("I dont know", "i don't know"), ("Im", "im"), ("yes, it is", "yes it is"), ("black/white", "black white"),
    ("black / white", "black white"), ("(left)", "left"), ("U.S.A.", "usa"), ("  red\tcar\n", "red car"),
    ("whats up", "what's up"), ("an apple", "apple"), ("t-shirt", "t shirt"), ("mr. smith", "mr smith"),
])
def test_vqa_normalisation(raw, norm):
    assert normalize_answer(raw) == norm


def ans(*texts):
    return [{"answer": t, "answer_confidence": "yes", "answer_id": i + 1} for i, t in enumerate(texts)]


def vqa_files(tmp_path, train_q, train_a, val_q=None, val_a=None, test_q=None):
    def qfile(name, qs, subtype):
        return write_json(tmp_path / name, {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco",
                                            "license": {}, "data_subtype": subtype, "questions": qs})

    def afile(name, anns, subtype):
        return write_json(tmp_path / name, {"info": {}, "license": {}, "data_subtype": subtype,
                                            "annotations": anns})

    files = {"questions": {"train": str(qfile("v2_OpenEnded_mscoco_train2014_questions.json", train_q,
                                                "train2014"))},
             "annotations": {"train": str(afile("v2_mscoco_train2014_annotations.json", train_a, "train2014"))}}
    if val_q is not None:
        files["questions"]["val"] = str(qfile("v2_OpenEnded_mscoco_val2014_questions.json", val_q, "val2014"))
        files["annotations"]["val"] = str(afile("v2_mscoco_val2014_annotations.json", val_a, "val2014"))
    if test_q is not None:
        files["questions"]["test"] = str(qfile("v2_OpenEnded_mscoco_test2015_questions.json", test_q,
                                               "test2015"))
    return files


def q(qid, image_id, text):
    return {"image_id": image_id, "question": text, "question_id": qid}


def a(qid, image_id, mc, answers, qtype="how many", atype="number"):
    return {"question_type": qtype, "multiple_choice_answer": mc, "answers": answers, "image_id": image_id,
            "answer_type": atype, "question_id": qid}


@pytest.fixture()
def vqa_data(tmp_path):
    train_q = [q(458752000, 458752, "How many dogs are there?"), q(458752001, 458752, "What animal is this?"),
               q(262146000, 262146, "Do you know?"), q(262146001, 262146, "Is it sunny?"),
               q(262146002, 262146, "Is it raining?")]
    train_a = [
        a(458752000, 458752, "two", ans("Two", "2", "two.", "2", "2", "two", "3", "three", "none", "zero")),
        a(458752001, 458752, "dog", ans("the dog", "dog", "a dog", "Dog.", "dogs", "dogs", "cat", "cat", "cat",
                                        "dog!"), "what animal is", "other"),
        a(262146000, 262146, "dont know", ans("dont know", "don't know", "yes", "yes", "yes", "yes", "yes", "yes",
                                              "yes", "yes"), "do you", "yes/no"),
        a(262146001, 262146, "yes", ans(*["yes"] * 10), "is it", "yes/no"),
        a(262146002, 262146, "Yes!", ans(*["no"] * 9, "yes"), "is it", "yes/no"),
    ]
    val_q = [q(393225000, 393225, "Which animal?")]
    val_a = [a(393225000, 393225, "a dog", ans(*["dog"] * 10), "which", "other")]
    test_q = [q(1000, 1, "What is it?")]
    return vqa_files(tmp_path, train_q, train_a, val_q, val_a, test_q)


def test_vqa_v2_outputs(vqa_data, tmp_path):
    out = tmp_path / "vqa"
    s = convert_vqa_v2(str(out), progress=False, min_count=2, **vqa_data)
    train = read_jsonl(out / "vqa_train.jsonl")
    assert train[0] == {"question_id": "458752000", "image_id": "458752", "question": "How many dogs are there?",
                        "answers": [{"answer": "2", "score": 1.0}, {"answer": "0", "score": 0.6},
                                    {"answer": "3", "score": 0.6}],
                        "multiple_choice_answer": "2", "answer_type": "number", "question_type": "how many"}
    # dog x5 (the/a/./! variants) -> 1.0, cat x3 -> 0.9, dogs x2 -> 0.6
    assert train[1]["answers"] == [{"answer": "dog", "score": 1.0}, {"answer": "cat", "score": 0.9},
                                   {"answer": "dogs", "score": 0.6}]
    assert train[2]["answers"] == [{"answer": "yes", "score": 1.0}, {"answer": "don't know", "score": 0.6}]
    assert train[2]["multiple_choice_answer"] == "don't know"
    assert train[4]["answers"] == [{"answer": "no", "score": 1.0}, {"answer": "yes", "score": 0.3}]
    assert read_jsonl(out / "vqa_test.jsonl") == [
        {"question_id": "1000", "image_id": "1", "question": "What is it?", "answers": [],
         "multiple_choice_answer": None, "answer_type": None, "question_type": None}]
    # vocabulary from train only: MC answers 2, dog, don't know, yes, yes -> only "yes" reaches 2
    assert json.loads((out / "answer_vocab.json").read_text()) == ["yes"]
    assert s["questions"] == {"test": 1, "train": 5, "val": 1}
    assert s["answer_vocab"]["size"] == 1 and s["answer_vocab"]["question_coverage"] == pytest.approx(2 / 5)

    out2 = tmp_path / "vqa2"  # train+val counts: dog 2 (val "a dog"), yes 2, 2 1, don't know 1; ties alphabetical
    convert_vqa_v2(str(out2), progress=False, min_count=1, vocab_splits=["train", "val"], **vqa_data)
    assert json.loads((out2 / "answer_vocab.json").read_text()) == ["dog", "yes", "2", "don't know"]
    out3 = tmp_path / "vqa3"
    convert_vqa_v2(str(out3), progress=False, min_count=1, max_answers=3, vocab_splits=["train", "val"],
                   **vqa_data)
    assert json.loads((out3 / "answer_vocab.json").read_text()) == ["dog", "yes", "2"]


def test_vqa_default_vocab_threshold_and_input_dir(tmp_path):
    qs, anns = [], []
    for i, (mc, n) in enumerate([("red", 9), ("blue", 8), ("green", 12)]):
        for j in range(n):
            qid = i * 100 + j
            qs.append(q(qid, 7, "What color?"))
            anns.append(a(qid, 7, mc, ans(*[mc] * 10), "what color", "other"))
    vqa_files(tmp_path, qs, anns)
    s = convert_vqa_v2(str(tmp_path / "o"), input_dir=str(tmp_path), progress=False)
    assert json.loads((tmp_path / "o" / "answer_vocab.json").read_text()) == ["green", "red"]
    assert s["answer_vocab"]["smallest_count"] == 9 and s["answer_vocab"]["min_count"] == 9


@pytest.mark.parametrize("case, reason, skipped", [
    ("missing_annotation", "missing_annotation", None), ("image_mismatch", "image_mismatch", None),
    ("orphan", "orphan_annotation", None), ("no_answers", "no_answers", None),
    # a question whose id is unreadable or repeated also leaves its annotation (id 2) without a question
    ("bad_qid", "bad_id", {"bad_id": 1, "orphan_annotation": 1}),
    ("empty_question", "empty_text", None),
    ("dup_question", "duplicate", {"duplicate": 1, "orphan_annotation": 1})])
def test_vqa_bad_input(tmp_path, case, reason, skipped):
    qs = [q(1, 10, "What?"), q(2, 10, "Why?")]
    anns = [a(1, 10, "yes", ans(*["yes"] * 10)), a(2, 10, "no", ans(*["no"] * 10))]
    if case == "missing_annotation":
        anns.pop()
    elif case == "image_mismatch":
        anns[1]["image_id"] = 11
    elif case == "orphan":
        anns.append(a(3, 10, "no", ans(*["no"] * 10)))
    elif case == "no_answers":
        anns[1]["answers"] = []
    elif case == "bad_qid":
        qs[1]["question_id"] = None
    elif case == "empty_question":
        qs[1]["question"] = " "
    elif case == "dup_question":
        qs[1]["question_id"] = 1
    files = vqa_files(tmp_path, qs, anns)
    with pytest.raises(DataError) as ei:
        convert_vqa_v2(str(tmp_path / "o"), progress=False, **files)
    assert ei.value.reason == reason and "v2_" in str(ei.value)
    assert not (tmp_path / "o").exists()
    s = convert_vqa_v2(str(tmp_path / "o"), progress=False, skip_bad=True, **files)
    assert s["skipped"] == (skipped or {reason: 1})
    assert s["questions"]["train"] == (2 if case == "orphan" else 1)


# ------------------------------------------------------------------------------------------------ SNLI-VE
def snli_line(pair, label, hyp, image="3416050480"):
    return json.dumps({"annotator_labels": [label], "captionID": f"{image}.jpg#4", "gold_label": label,
                       "pairID": pair, "sentence1": "A woman is walking across the street eating a banana.",
                       "sentence1_binary_parse": "( ( A woman ) ...", "sentence1_parse": "(ROOT ...)",
                       "sentence2": hyp, "sentence2_binary_parse": "...", "sentence2_parse": "...",
                       "Flickr30K_ID": image})


def test_snli_ve(tmp_path):
    d = tmp_path / "snli"
    d.mkdir()
    write_lines(d / "snli_ve_train.jsonl", [snli_line("3416050480.jpg#4r1n", "neutral", "The woman is hungry."),
                                            snli_line("3416050480.jpg#4r1e", "entailment", "A woman eats a fruit."),
                                            snli_line("3416050480.jpg#4r1c", "contradiction", "A man sleeps.")])
    write_lines(d / "snli_ve_dev.jsonl", [snli_line("1.jpg#0r1e", "entailment", "Someone walks.", "1")])
    out = tmp_path / "ve"
    s = convert_snli_ve([str(d)], str(out), progress=False)
    train = read_jsonl(out / "ve_train.jsonl")
    assert [(e["label"], e["label_name"]) for e in train] == [(1, "neutral"), (0, "entailment"),
                                                              (2, "contradiction")]
    assert train[0] == {"pair_id": "3416050480.jpg#4r1n", "image_id": "3416050480",
                        "premise": "A woman is walking across the street eating a banana.",
                        "hypothesis": "The woman is hungry.", "label": 1, "label_name": "neutral"}
    assert s["labels"] == {"dev": {"entailment": 1}, "train": {"contradiction": 1, "entailment": 1, "neutral": 1}}
    assert s["label_ids"] == {"entailment": 0, "neutral": 1, "contradiction": 2}

    bad = write_lines(tmp_path / "snli_ve_test.jsonl", [snli_line("a", "entailment", "x"), snli_line("b", "-", "y"),
                                                         "{not json", snli_line("c", "neutral", ""),
                                                         snli_line("a", "neutral", "z")])
    with pytest.raises(DataError, match=r"snli_ve_test\.jsonl:2: field 'gold_label'"):
        convert_snli_ve([str(bad)], str(tmp_path / "x"), progress=False)
    s = convert_snli_ve([str(bad)], str(tmp_path / "x"), progress=False, skip_bad=True)
    assert s["skipped"] == {"bad_label": 1, "bad_json": 1, "duplicate": 1, "empty_text": 1}
    assert s["outputs"] == {"ve_test.jsonl": 1}


# ------------------------------------------------------------------------------------------------ GLUE
def test_glue_sst2_real_dev(shared_data, tmp_path):
    s = convert_glue("sst-2", [str(shared_data / "text_samples" / "sst2_glue_dev.tsv")], str(tmp_path / "o"),
                     progress=False, split="dev")
    rows = read_jsonl(tmp_path / "o" / "dev.jsonl")
    assert len(rows) == 872 and s["splits"] == {"dev": {"0": 428, "1": 444}}
    assert rows[0] == {"text_a": "it 's a charming and often affecting journey .", "label": "1"}
    assert json.loads((tmp_path / "o" / "labels.json").read_text()) == ["0", "1"]


def test_glue_cola_headerless_and_test(tmp_path):
    d = tmp_path / "CoLA"
    d.mkdir()
    write_lines(d / "train.tsv", ["gj04\t1\t\tOur friends won't buy this analysis, let alone the next one we "
                                  "propose.", "gj04\t0\t*\tThey drank the pub."])
    write_lines(d / "test.tsv", ["index\tsentence", "0\tBill whistled past the house."])
    s = convert_glue("cola", [str(d)], str(tmp_path / "o"), progress=False)
    assert read_jsonl(tmp_path / "o" / "train.jsonl") == [
        {"text_a": "Our friends won't buy this analysis, let alone the next one we propose.", "label": "1"},
        {"text_a": "They drank the pub.", "label": "0"}]
    assert read_jsonl(tmp_path / "o" / "test.jsonl") == [
        {"text_a": "Bill whistled past the house.", "label": None, "qid": "0"}]
    assert s["splits"] == {"test": {"unlabelled": 1}, "train": {"0": 1, "1": 1}}


MNLI_HEADER = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
               "sentence2_parse\tsentence1\tsentence2")


def test_glue_mnli_splits(tmp_path):
    d = tmp_path / "MNLI"
    d.mkdir()
    write_lines(d / "train.tsv", [MNLI_HEADER + "\tlabel1\tgold_label",
                                  "0\t31193\t31193n\tgovernment\t( x )\t( y )\t(ROOT x)\t(ROOT y)\tConceptually cream "
                                  "skimming has two basic dimensions.\tProduct and geography are what make cream "
                                  "skimming work. \tneutral\tneutral"])
    write_lines(d / "dev_matched.tsv", [MNLI_HEADER + "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label",
                                        "0\t63735\t63735n\tslate\tb\tb\tp\tp\tThe new rights are nice enough\t"
                                        "Everyone really likes the newest benefits \tneutral\tentailment\tneutral\t"
                                        "neutral\tneutral\tneutral"])
    write_lines(d / "dev_mismatched.tsv", [MNLI_HEADER + "\tlabel1\tgold_label",
                                           "7\t1\t1c\tletters\tb\tb\tp\tp\tA.\tB.\tcontradiction\tcontradiction"])
    write_lines(d / "test_matched.tsv", [MNLI_HEADER, "9\t1\t1\tslate\tb\tb\tp\tp\tHello.\tHi."])
    write_lines(d / "diagnostic.tsv", ["index\tsentence1\tsentence2", "0\tThe cat sat.\tThe cat did not sit."])
    s = convert_glue("mnli", [str(d)], str(tmp_path / "o"), progress=False)
    o = tmp_path / "o"
    assert read_jsonl(o / "train.jsonl") == [{
        "text_a": "Conceptually cream skimming has two basic dimensions.",
        "text_b": "Product and geography are what make cream skimming work.", "label": "neutral", "qid": "0"}]
    assert read_jsonl(o / "dev_mismatched.jsonl")[0]["label"] == "contradiction"
    assert read_jsonl(o / "test_matched.jsonl")[0] == {"text_a": "Hello.", "text_b": "Hi.", "label": None,
                                                       "qid": "9"}
    assert read_jsonl(o / "diagnostic.jsonl")[0]["text_b"] == "The cat did not sit."
    assert sorted(s["outputs"]) == ["dev_matched.jsonl", "dev_mismatched.jsonl", "diagnostic.jsonl",
                                    "test_matched.jsonl", "train.jsonl"]
    assert json.loads((o / "labels.json").read_text()) == ["entailment", "neutral", "contradiction"]


def test_glue_stsb_and_bad_rows(tmp_path):
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    good = ["0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off.\tAn air plane is taking "
            "off.\t5.000", "1\tmain-captions\tMSRvid\t2012test\t0004\tnone\tnone\tA man is playing a flute.\tA man "
            "is playing a bamboo flute.\t3.800"]
    f = write_lines(tmp_path / "dev.tsv", [header, *good])
    s = convert_glue("sts-b", [str(f)], str(tmp_path / "o"), progress=False)
    rows = read_jsonl(tmp_path / "o" / "dev.jsonl")
    assert [r["label"] for r in rows] == [5.0, 3.8] and rows[1]["text_b"] == "A man is playing a bamboo flute."
    assert not (tmp_path / "o" / "labels.json").exists() and s["labels"] is None
    bad = write_lines(tmp_path / "train.tsv", [header, *good,
                                               "2\tg\tf\ty\to\tn\tn\tA.\tB.\tnan",
                                               "3\tg\tf\ty\to\tn\tn\tA.\tB.\t5.5",
                                               "4\tg\tf\ty\to\tn\tn\tA.\tB.",
                                               "5\tg\tf\ty\to\tn\tn\t \tB.\t1.0"])
    with pytest.raises(DataError, match=r"train\.tsv:4: field 'score'"):
        convert_glue("sts-b", [str(bad)], str(tmp_path / "x"), progress=False)
    s = convert_glue("sts-b", [str(bad)], str(tmp_path / "x"), progress=False, skip_bad=True)
    assert s["skipped"] == {"bad_label": 2, "bad_field_count": 1, "empty_text": 1} and s["outputs"] == {
        "train.jsonl": 2}
    sst = write_lines(tmp_path / "sst.tsv", ["sentence\tlabel", "good .\t1", "bad .\t2"])
    with pytest.raises(DataError, match=r"sst\.tsv:3: field 'label': '2' is not one of"):
        convert_glue("sst-2", [str(sst)], str(tmp_path / "y"), progress=False)
    with pytest.raises(DataError, match="no sentence1 column"):
        convert_glue("mnli", [str(sst)], str(tmp_path / "y"), progress=False)
    with pytest.raises(ValueError, match="unknown GLUE task"):
        convert_glue("qqp", [str(sst)], str(tmp_path / "y"), progress=False)


# ------------------------------------------------------------------------------------------------ seq2seq
def test_cnndm_parallel_files(tmp_path):
    d = tmp_path / "cnndm"
    d.mkdir()
    write_lines(d / "train.src", ["( cnn ) the first article .", "second article text ."])
    write_lines(d / "train.tgt", ["summary one .", "summary two ."])
    write_lines(d / "dev.source", ["dev article ."])
    write_lines(d / "dev.target", ["dev summary ."])
    s = convert_seq2seq("cnndm", [str(d)], str(tmp_path / "o"), progress=False)
    assert read_jsonl(tmp_path / "o" / "train.jsonl") == [
        {"id": "0", "src": ["( cnn ) the first article ."], "tgt": "summary one ."},
        {"id": "1", "src": ["second article text ."], "tgt": "summary two ."}]
    assert read_jsonl(tmp_path / "o" / "dev.jsonl") == [{"id": "0", "src": ["dev article ."],
                                                          "tgt": "dev summary ."}]
    assert s["outputs"] == {"dev.jsonl": 1, "train.jsonl": 2}
    write_lines(d / "train.tgt", ["summary one .", "summary two .", "extra ."])
    with pytest.raises(DataError, match=r"train\.tgt:3: has more lines than .*train\.src"):
        convert_seq2seq("cnndm", [str(d)], str(tmp_path / "x"), progress=False)
    write_lines(d / "train.tgt", ["summary one .", "   "])
    with pytest.raises(DataError, match=r"train\.tgt:2: field 'tgt': empty"):
        convert_seq2seq("cnndm", [str(d)], str(tmp_path / "x"), progress=False)
    s = convert_seq2seq("cnndm", [str(d)], str(tmp_path / "x"), progress=False, skip_bad=True)
    assert s["skipped"] == {"empty_text": 1} and s["outputs"]["train.jsonl"] == 1
    (d / "dev.target").unlink()
    with pytest.raises(FileNotFoundError, match="dev.target"):
        convert_seq2seq("cnndm", [str(d)], str(tmp_path / "x"), progress=False)


def test_gigaword_tsv(tmp_path):
    f = write_lines(tmp_path / "test.tsv", ["src\ttgt", "australia 's current account deficit shrunk by a record "
                                            "#.## billion dollars\taustralian current account deficit narrows",
                                            "only one column"])
    with pytest.raises(DataError, match=r"test\.tsv:3: expected 2 tab-separated columns, got 1"):
        convert_seq2seq("gigaword", [str(f)], str(tmp_path / "o"), progress=False)
    s = convert_seq2seq("gigaword", [str(f)], str(tmp_path / "o"), progress=False, skip_bad=True)
    assert read_jsonl(tmp_path / "o" / "test.jsonl") == [{
        "id": "0", "src": ["australia 's current account deficit shrunk by a record #.## billion dollars"],
        "tgt": "australian current account deficit narrows"}]
    assert s["skipped"] == {"bad_field_count": 1}
    f2 = write_lines(tmp_path / "x.tsv", ["src\tsummary", "a\tb"])
    with pytest.raises(DataError, match="no tgt column"):
        convert_seq2seq("gigaword", [str(f2)], str(tmp_path / "p"), progress=False)


def test_squad_qg_from_hf_sample(shared_data, tmp_path):
    s = convert_seq2seq("squad-qg", [str(shared_data / "text_samples" / "squad_v2_sample.json")],
                        str(tmp_path / "o"), progress=False, split="dev")
    rows = read_jsonl(tmp_path / "o" / "dev.jsonl")
    # 14 questions: 8 answerable, 6 SQuAD 2.0 unanswerable ones skipped and counted
    assert len(rows) == 8 and s["unanswerable"] == 6 and s["skipped_total"] == 0
    assert rows[0]["id"] == "56ddde6b9a695914005b9628" and rows[0]["tgt"] == "In what country is Normandy located?"
    assert rows[0]["src"][1] == "France" and rows[0]["src"][0].startswith("The Normans (Norman: Nourmands;")
    assert rows[1]["src"][1] == "10th and 11th centuries"  # the first of the annotators' answers
    assert [r["id"] for r in rows][-1] == "56e16839cd28a01900c67889" and rows[-1]["src"][1] == "time and storage"


def test_squad_qg_official_layout(tmp_path):
    data = {"version": "v2.0", "data": [{"title": "Normans", "paragraphs": [{
        "context": "The Normans were in Normandy.", "qas": [
            {"question": "Who was in Normandy?", "id": "q1", "answers": [{"text": "The Normans", "answer_start": 0}],
             "is_impossible": False},
            {"question": "Who was not?", "id": "q2", "answers": [], "plausible_answers": [{"text": "x"}],
             "is_impossible": True},
            {"question": "", "id": "q3", "answers": [{"text": "Normandy", "answer_start": 20}]}]}]}]}
    f = write_json(tmp_path / "train-v2.0.json", data)
    with pytest.raises(DataError, match=r"data\[0\]\.paragraphs\[0\]\.qas\[2\]: field 'question': empty"):
        convert_seq2seq("squad-qg", [str(f)], str(tmp_path / "o"), progress=False)
    s = convert_seq2seq("squad-qg", [str(f)], str(tmp_path / "o"), progress=False, skip_bad=True)
    assert read_jsonl(tmp_path / "o" / "train.jsonl") == [
        {"id": "q1", "src": ["The Normans were in Normandy.", "The Normans"], "tgt": "Who was in Normandy?"}]
    assert s["unanswerable"] == 1 and s["skipped"] == {"empty_text": 1}


def test_xsum_jsonl(shared_data, tmp_path):
    src = shared_data / "text_samples" / "xsum_sample.jsonl"
    s = convert_seq2seq("xsum", [str(src)], str(tmp_path / "o"), progress=False, split="test")
    rows = read_jsonl(tmp_path / "o" / "test.jsonl")
    raw = read_jsonl(src)
    assert len(rows) == 10 and s["outputs"] == {"test.jsonl": 10}
    assert rows[3] == {"id": "3", "src": [raw[3]["document"].strip()], "tgt": raw[3]["summary"].strip()}
    assert "â‚¬78bn" in rows[3]["src"][0]  # the sample's mojibake is kept as is
    f = write_lines(tmp_path / "train.jsonl",
                    [json.dumps({"id": 7, "article": "a b", "title": "t", "highlights": "h"})])
    convert_seq2seq("seq2seq-jsonl", [str(f)], str(tmp_path / "g"), progress=False, src_fields=["title", "article"],
                    tgt_field="highlights")
    assert read_jsonl(tmp_path / "g" / "train.jsonl") == [{"id": "7", "src": ["t", "a b"], "tgt": "h"}]
    with pytest.raises(ValueError, match="--src-field"):
        convert_seq2seq("seq2seq-jsonl", [str(f)], str(tmp_path / "h"), progress=False)
    with pytest.raises(DataError, match=r"train\.jsonl:1: field 'document': missing"):
        convert_seq2seq("xsum", [str(f)], str(tmp_path / "h"), progress=False)


# ------------------------------------------------------------------------------------------------ CoQA
def coqa_story(sid="3zotghdk5ibi9cex97fepx7jetpso7", turns=3):
    qs = ["What color was Cotton?", "Where did she live?", "Did she live alone?"][:turns]
    a_texts = ["white", "in a barn", "no"][:turns]
    return {"source": "mctest", "id": sid, "filename": "mc160.test.41",
            "story": "Once upon a time, in a barn near a farm house, there lived a little white kitten named Cotton.",
            "questions": [{"input_text": t, "turn_id": i + 1} for i, t in enumerate(qs)],
            "answers": [{"span_start": 59, "span_end": 93, "span_text": "x", "input_text": t, "turn_id": i + 1}
                        for i, t in enumerate(a_texts)]}


def test_coqa(tmp_path):
    f = write_json(tmp_path / "coqa-dev-v1.0.json", {"version": "1.0", "data": [coqa_story()]})
    s = convert_coqa([str(f)], str(tmp_path / "o"), progress=False)
    rows = read_jsonl(tmp_path / "o" / "dev.jsonl")
    story = coqa_story()["story"]
    assert rows == [
        {"id": "3zotghdk5ibi9cex97fepx7jetpso7_1", "src": ["What color was Cotton?"], "knowledge": story,
         "tgt": "white"},
        {"id": "3zotghdk5ibi9cex97fepx7jetpso7_2", "src": ["What color was Cotton?", "white", "Where did she live?"],
         "knowledge": story, "tgt": "in a barn"},
        {"id": "3zotghdk5ibi9cex97fepx7jetpso7_3", "src": ["What color was Cotton?", "white", "Where did she live?",
                                                          "in a barn", "Did she live alone?"],
         "knowledge": story, "tgt": "no"}]
    assert s["stories"] == {"dev": 1}

    bad_turn, bad_answer = coqa_story("s2"), coqa_story("s3")
    bad_turn["answers"][1]["turn_id"] = 3
    bad_answer["answers"][2]["input_text"] = ""
    f = write_json(tmp_path / "coqa-train-v1.0.json", {"version": "1.0", "data": [bad_turn, coqa_story("ok"),
                                                                                 bad_answer]})
    with pytest.raises(DataError, match=r"data\[0\]\.answers\[1\]: field 'turn_id'"):
        convert_coqa([str(f)], str(tmp_path / "x"), progress=False)
    s = convert_coqa([str(f)], str(tmp_path / "x"), progress=False, skip_bad=True)
    assert s["skipped"] == {"bad_turn": 1, "empty_text": 1} and s["outputs"] == {"train.jsonl": 3}


# ------------------------------------------------------------------------------------------------ CLI
def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "preprocess.datasets", *args], capture_output=True, text=True,
                          cwd=str(REPO), env=env, timeout=120)


def test_cli_summary_and_errors(tmp_path):
    f = write_lines(tmp_path / "dev.tsv", ["sentence\tlabel", "fine .\t1", "broken .\tx", "ok .\t0"])
    out = tmp_path / "o"
    r = run_cli("glue", "--task", "sst-2", "--input", str(f), "--output", str(out), "--no-progress")
    assert r.returncode == 2 and not out.exists()
    assert r.stderr.strip().endswith("dev.tsv:3: field 'label': 'x' is not one of ['0', '1']")
    r = run_cli("glue", "--task", "sst-2", "--input", str(f), "--output", str(out), "--skip-bad", "--no-progress")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["skipped"] == {"bad_label": 1} and summary["outputs"] == {"dev.jsonl": 2}
    assert json.loads((out / "glue-sst-2_summary.json").read_text()) == summary
    assert visible_files(out) == ["dev.jsonl", "glue-sst-2_summary.json", "labels.json"]
    r = run_cli("vqa-v2", "--output", str(tmp_path / "v"), "--questions", "train")
    assert r.returncode == 2 and "SPLIT=PATH" in r.stderr
