"""A split file may be a list (VQA v2 as the paper: train on train + val): the task reads every file in order, data
errors name the file they are in, and the fail-fast checks cover each file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _task(tmp_path: Path, tokenizer, overrides: dict):
    from unimo.finetune.run import load_run_config

    conf = tmp_path / "conf.yaml"
    conf.write_text(f"base: {REPO / 'script/classification/SST-2/conf.yaml'}\n", encoding="utf-8")
    task_cls, cfg = load_run_config(str(conf), {"data_dir": str(tmp_path), "init_checkpoint": None,
                                                "model_config": str(REPO / "model_files/config/unimo_tiny_en.json"),
                                                **overrides})
    return task_cls(cfg, tokenizer, str(tmp_path / "out")), cfg


def test_train_file_list_reads_every_file_in_order(tmp_path, tokenizer):
    _write(tmp_path / "a.jsonl", [{"text_a": "good film", "label": "1"}, {"text_a": "bad film", "label": "0"}])
    _write(tmp_path / "b.jsonl", [{"text_a": "fine plot", "label": "1"}])
    task, cfg = _task(tmp_path, tokenizer, {"train_file": ["a.jsonl", "b.jsonl"], "dev_file": "b.jsonl"})
    assert cfg.train_file == ["a.jsonl", "b.jsonl"]
    assert task.data_paths("train") == [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
    records = task.load("train")
    assert [r["label"] for r in records] == [1, 0, 1]
    assert [r["qid"] for r in records] == [0, 1, 2]  # one index over the split, not per file
    want = [tokenizer.build_inputs(t, None, cfg.max_seq_len)["input_ids"] for t in ("good film", "bad film",
                                                                                    "fine plot")]
    assert [r["input_ids"] for r in records] == want
    assert task.load("dev")[0]["input_ids"] == want[2]


def test_a_bad_record_in_the_second_file_names_that_file(tmp_path, tokenizer):
    from unimo.finetune.checks import check_heads

    _write(tmp_path / "a.jsonl", [{"text_a": "good film", "label": "1"}])
    _write(tmp_path / "b.jsonl", [{"text_a": "fine plot", "label": "1"}, {"text_a": "odd", "label": "7"}])
    task, cfg = _task(tmp_path, tokenizer, {"train_file": ["a.jsonl", "b.jsonl"], "dev_file": None,
                                            "do_eval": False})
    with pytest.raises(Exception) as caught:
        check_heads(task, cfg, "conf.yaml")
    assert str(tmp_path / "b.jsonl") in str(caught.value) and "'7'" in str(caught.value)


def test_a_missing_file_of_the_list_is_named(tmp_path, tokenizer):
    _write(tmp_path / "a.jsonl", [{"text_a": "good film", "label": "1"}])
    task, _ = _task(tmp_path, tokenizer, {"train_file": ["a.jsonl", "nope.jsonl"]})
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        task.data_paths("train")


def test_list_override_from_the_command_line(tmp_path, tokenizer):
    _write(tmp_path / "a.jsonl", [{"text_a": "good film", "label": "1"}])
    _, cfg = _task(tmp_path, tokenizer, {"train_file": "a.jsonl"})
    assert cfg.train_file == "a.jsonl"
    from unimo.utils.config import parse_overrides

    assert parse_overrides(["train_file=[a.jsonl, b.jsonl]"])["train_file"] == ["a.jsonl", "b.jsonl"]


def test_vqa_trains_on_train_plus_val_and_answers_every_test_question(tmp_path, tokenizer):
    """script/vqa/VQAv2 (the paper's protocol): train_file [train, val] reads both files' questions and targets, no
    local evaluation, the test split on; VQAv2_val trains on train and evaluates val."""
    from unimo.finetune.run import load_run_config

    q = lambda i, img, answers: {"question_id": i, "image_id": img, "question": f"what is {i}?",  # noqa: E731
                                 "answers": [{"answer": a, "score": 1.0} for a in answers]}
    _write(tmp_path / "vqa_train.jsonl", [q(1, "1", ["red"]), q(2, "2", ["blue"])])
    _write(tmp_path / "vqa_val.jsonl", [q(3, "1", ["green"])])
    (tmp_path / "answer_vocab.json").write_text(json.dumps(["red", "blue", "green"]))
    common = {"data_dir": str(tmp_path), "init_checkpoint": None, "feature_store": str(tmp_path / "store"),
              "model_config": str(REPO / "model_files/config/unimo_tiny_en.json")}
    task_cls, cfg = load_run_config(str(REPO / "script/vqa/VQAv2/conf.yaml"), common)
    assert cfg.train_file == ["vqa_train.jsonl", "vqa_val.jsonl"] and not cfg.do_eval and cfg.do_test
    task = task_cls(cfg, tokenizer, str(tmp_path / "out"))
    train = task.load("train")
    assert [e["question_id"] for e in train] == ["1", "2", "3"]  # the reader keeps ids as strings
    assert [sorted(e["targets"]) for e in train] == [[0], [1], [2]]
    _, val_cfg = load_run_config(str(REPO / "script/vqa/VQAv2_val/conf.yaml"), common)
    assert val_cfg.train_file == "vqa_train.jsonl" and val_cfg.dev_file == "vqa_val.jsonl" and val_cfg.do_eval


def test_vqa_test_split_becomes_the_evalai_submission(tmp_path, tokenizer, tiny_config):
    """The unlabelled test2015 split: no local metric, and vqa_results_test.json answers every question (integer
    ids, an answer of the vocabulary each) in EvalAI's format [{"question_id", "answer"}]."""
    import numpy as np

    from unimo.finetune.run import load_run_config
    from unimo.reader.features import FeatureStoreWriter, RegionFeatures

    with FeatureStoreWriter(tmp_path / "store", feature_dim=tiny_config.image_embedding_size) as w:
        for k in range(3):
            boxes = np.array([[1, 1, 20, 20], [10, 5, 40, 30]], np.float32)
            w.add(RegionFeatures(str(k), 64, 48, boxes,
                                 np.full((2, tiny_config.image_embedding_size), k, np.float32)))
    _write(tmp_path / "vqa_train.jsonl", [{"question_id": 1, "image_id": "0", "question": "color?",
                                           "answers": [{"answer": "red", "score": 1.0}]}])
    _write(tmp_path / "vqa_test.jsonl", [{"question_id": 10 + k, "image_id": str(k), "question": f"how many {k}?",
                                          "answers": []} for k in range(3)])
    (tmp_path / "answer_vocab.json").write_text(json.dumps(["red", "blue", "two"]))
    task_cls, cfg = load_run_config(str(REPO / "script/vqa/VQAv2/conf.yaml"), {
        "data_dir": str(tmp_path), "init_checkpoint": None, "feature_store": str(tmp_path / "store"),
        "train_file": "vqa_train.jsonl", "model_config": str(REPO / "model_files/config/unimo_tiny_en.json"),
        "max_img_len": 8})
    task = task_cls(cfg, tokenizer, str(tmp_path / "out"))
    model = task.build_model(tiny_config)
    model.eval()
    assert task.evaluate(model, "test") == {}
    rows = json.loads((tmp_path / "out" / "vqa_results_test.json").read_text())
    assert sorted(r["question_id"] for r in rows) == [10, 11, 12]
    assert all(isinstance(r["question_id"], int) and r["answer"] in ("red", "blue", "two") for r in rows)
