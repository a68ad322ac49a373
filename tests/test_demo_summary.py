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
    assert rows["COCO-style captioning, object tags"] == ["0.910", "0.450", "0.300", "test"]
    assert rows["COCO-style captioning, no tags"][0] == "not run"
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


def test_grounding_table_counts_shapes_against_the_world(tmp_path):
    """Captions naming the scene's true objects score 1.0; a caption with the right colours and wrong shapes
    (the examples.png failure) scores 0 on shapes and pairs."""
    from preprocess.demo_world import build_demo_world
    from unimo.utils.demo_summary import grounding_table, scene_objects

    world = tmp_path / "world"
    build_demo_world(world, num_scenes=10, image_size=64, feature_dim=16, max_boxes=8, min_boxes=2, progress=False)
    scenes, shapes, colours = scene_objects(str(world))
    assert len(scenes) == 10 and shapes[0] == "circle"
    right, wrong = [], []
    for image_id, objs in scenes.items():
        right.append({"image_id": int(image_id), "caption": " and ".join(f"a {c} {s}" for c, s in objs) + "."})
        others = [s for s in shapes if s not in {s for _, s in objs}]
        wrong.append({"image_id": int(image_id), "caption": f"a {objs[0][0]} {others[0]}."})
    for task, caps in (("img2txt", right), ("img2txt_notags", wrong)):
        (tmp_path / "out" / task).mkdir(parents=True)
        (tmp_path / "out" / task / "captions_test_results.json").write_text(json.dumps(caps))
    table, data = grounding_table(str(tmp_path / "out"), str(world))
    n_obj = sum(len(v) for v in scenes.values())
    assert data["img2txt"]["shape_precision"] == 1.0 and data["img2txt"]["pair_precision"] == 1.0
    assert data["img2txt"]["shape_nouns"] == n_obj and data["img2txt"]["shape_recall"] == 1.0
    assert data["img2txt_notags"]["shape_precision"] == 0.0 and data["img2txt_notags"]["pairs"] == 10
    assert data["img2txt_notags"]["captions_shapes_right"] == 0.0
    assert "| with object tags | 1.000 (" in table and "| without object tags | 0.000 (10)" in table
