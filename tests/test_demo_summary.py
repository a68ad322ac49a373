"""The demo's results table (unimo.utils.demo_summary) and the shuffled-image control it reports."""
from __future__ import annotations

import json
from collections import Counter

from unimo.finetune.tasks.multimodal import MultimodalTask
from unimo.utils.demo_summary import results_table


def _write(out, task, split, metrics):
    (out / task).mkdir(parents=True)
    (out / task / "results.json").write_text(json.dumps({"metrics": {split: metrics}}))


def test_results_table_reports_learned_baseline_and_blind_control(tmp_path):
    _write(tmp_path, "img2txt", "test", {"CIDEr-D": 0.91, "constant_caption_CIDEr-D": 0.45,
                                         "CIDEr-D_shuffled_images": 0.3})
    _write(tmp_path, "vqa", "dev", {"vqa_acc": 55.5, "majority_answer_acc": 24.25, "vqa_acc_shuffled_images": 44.0})
    _write(tmp_path, "retrieval", "dev", {"avg_recall@1": 0.25, "chance_recall@1": 0.02})
    table, data = results_table(str(tmp_path))
    rows = {line.split("|")[1].strip().split(":")[0]: [c.strip() for c in line.split("|")[2:6]]
            for line in table.splitlines()[2:]}
    assert rows["COCO-style captioning"] == ["0.910", "0.450", "0.300", "test"]
    assert rows["VQA v2-style"] == ["55.500", "24.250", "44.000", "dev"]
    assert rows["SNLI-VE-style"][0] == "not run"
    assert rows["Flickr-style retrieval"] == ["0.250", "0.020", "-", "dev"]
    assert data["vqa"] == {"split": "dev", "vqa_acc": 55.5, "majority_answer_acc": 24.25,
                           "vqa_acc_shuffled_images": 44.0}


def test_shuffled_images_keep_the_images_but_move_them():
    examples = [{"question_id": i, "image_id": str(i // 3)} for i in range(60)]
    shuffled = MultimodalTask.with_shuffled_images(examples)
    assert Counter(e["image_id"] for e in shuffled) == Counter(e["image_id"] for e in examples)
    assert [e["question_id"] for e in shuffled] == list(range(60))
    moved = sum(a["image_id"] != b["image_id"] for a, b in zip(examples, shuffled))
    assert moved >= 50
    assert shuffled == MultimodalTask.with_shuffled_images(examples)  # fixed seed: the same control every run
    assert examples[0]["image_id"] == "0"  # inputs untouched
