"""Every multi-modal task trains and evaluates from its own run.sh on a demo world (tiny model, CPU), starting, as in
the paper, from a short UNIMO pre-training on that world (text + image + pair streams) -- and beats its trivial
baseline by a wide margin. Each test also checks that the model reads the image: the same model evaluated on
shuffled images (``shuffled_image_control``) must do clearly worse. (Before the classic extractor's features were
centred, a model could pass the baseline checks of VQA and VE from the question alone: the control catches that.)"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, build_demo_data, SHARED

pytestmark = pytest.mark.slow

SCENES = 600  # 360 train / 60 restval / 60 val / 60 test / 60 image-only scenes
TINY = ["model_config=model_files/config/unimo_demo_en.json", "max_img_len=37", "eval_steps=0",
        "save_steps=100000", "logging_steps=10", "disable_tqdm=true", "warmup_ratio=0.1", "learning_rate=2e-4",
        "shuffled_image_control=true",
        "global_batch_size=null"]  # the official global batch (SNLI-VE: 192) would accumulate dozens of tiny batches


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return build_demo_data(tmp_path_factory.mktemp("demo"), SCENES)


@pytest.fixture(scope="module")
def pretrained(demo, tmp_path_factory) -> Path:
    """script/pretrain/demo/run.sh (CMCL rewrites included), 200 steps: the init of every fine-tuning below."""
    out = tmp_path_factory.mktemp("pretrain")
    env = dict(os.environ, DEMO_DATA=str(demo), LOG_DIR=str(out / "log"))
    proc = subprocess.run(["bash", str(REPO / "script" / "pretrain" / "demo" / "run.sh"), f"output_dir={out}",
                           "max_steps=200", "save_steps=100000", "disable_tqdm=true"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    log = out / "log" / "workerlog.0"
    assert proc.returncode == 0, (proc.stdout[-2000:], log.read_text()[-4000:] if log.exists() else "")
    res = json.loads((out / "results.json").read_text())
    first, last = res["losses"]["first"], res["losses"]["last"]  # every loss of the three streams falls
    for k in ("loss_mlm", "loss_s2s", "loss_mrc", "loss_vl_mlm", "loss_vl_mrc"):
        assert last[k] < 0.5 * first[k], (k, first[k], last[k])
    for k in ("loss_mrfr", "loss_vl_mrfr", "loss_cmcl"):
        assert last[k] < 0.85 * first[k], (k, first[k], last[k])
    # CMCL alone already aligns images and captions: zero-shot retrieval far above chance on held-out images
    zero_shot = res["retrieval"]
    assert zero_shot["avg_recall@1"] > 5 * zero_shot["chance_recall@1"], zero_shot
    return out / "final"


def _run(script: str, out: Path, init: Path, *overrides: str) -> dict:
    env = dict(os.environ, LOG_DIR=str(out / "log"))
    proc = subprocess.run(["bash", str(REPO / script), *TINY, f"init_checkpoint={init}", f"output_dir={out}",
                           *overrides], cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    log = out / "log" / "workerlog.0"
    assert proc.returncode == 0, (proc.stdout[-2000:], log.read_text()[-4000:] if log.exists() else "")
    results = json.loads((out / "results.json").read_text())
    assert (out / "train_log.jsonl").exists()
    return results


def _losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()
            if '"loss"' in line and "train_runtime" not in line]


def test_vqa(demo, pretrained, tmp_path):
    res = _run("script/vqa/VQAv2_val/run.sh", tmp_path, pretrained, f"data_dir={demo}/vqa",
               f"feature_store={demo}/world/features/store", "test_file=null", "epochs=6", "batch_size=32")
    dev = res["metrics"]["dev"]
    assert dev["vqa_acc"] > dev["majority_answer_acc"] + 15, dev
    assert dev["vqa_acc"] > dev["vqa_acc_shuffled_images"] + 5, dev
    assert (tmp_path / "vqa_results_dev.json").exists() and (tmp_path / "final" / "answer_vocab.json").exists()


def test_visual_entailment(demo, pretrained, tmp_path):
    res = _run("script/visual_entailment/SNLI-VE/run.sh", tmp_path, pretrained, f"data_dir={demo}/snli_ve",
               f"feature_store={demo}/world/features/store", "do_test=true", "epochs=10", "batch_size=32",
               "adv_steps=0")
    for split in ("dev", "test"):
        m = res["metrics"][split]
        # the text alone can reach 2/3 (neutral hypotheses are recognisable; entailment vs contradiction is not)
        assert m["acc"] > m["majority_class_acc"] + 0.3, (split, m)
        assert m["acc"] > m["acc_shuffled_images"] + 0.04, (split, m)


def test_retrieval(demo, pretrained, tmp_path):
    res = _run("script/retrieval/Flickr30k/run.sh", tmp_path, pretrained, f"data_dir={demo}/flickr",
               f"feature_store={demo}/world/features/store", "epochs=1", "max_steps=150", "batch_size=8",
               "lr_decay_epochs=null", "negative_images=3", "negative_captions=3", "max_eval_images=30")
    dev = res["metrics"]["dev"]
    scores = np.load(tmp_path / "scores_dev.npy")
    assert scores.shape == (dev["num_captions"], 30) == (150, 30) and np.isfinite(scores).all()
    for kind in ("img", "cap"):
        assert 0 <= dev[f"{kind}_recall@1"] <= dev[f"{kind}_recall@5"] <= dev[f"{kind}_recall@10"] <= 1
    assert dev["avg_recall@1"] > 4 * dev["chance_recall@1"], dev
    assert dev["avg_recall@10"] > 2 * 10 * dev["chance_recall@1"], dev
    losses = _losses(tmp_path)
    assert losses and np.isfinite(losses).all()


def test_captioning(demo, pretrained, tmp_path):
    res = _run("script/img2txt/coco/run.sh", tmp_path, pretrained, f"data_dir={demo}/coco",
               f"feature_store={demo}/world/features/store", "epochs=2", "batch_size=32", "eval_batch_size=30",
               "adv_steps=0", "label_smoothing=0.0", "max_eval_images=30",
               # the official recipe's object tags, computed from the store's object predictions (no tag file)
               "object_tag_file=null", f"object_vocab={SHARED / 'data' / 'vg_1600_400_20' / 'objects_vocab.txt'}")
    dev = res["metrics"]["dev"]
    for key in ("Bleu_4", "METEOR", "ROUGE_L", "CIDEr-D", "constant_caption_CIDEr-D"):
        assert key in dev and dev[key] is not None and dev[key] >= 0, (key, dev)
    assert dev["CIDEr-D"] > dev["constant_caption_CIDEr-D"], dev
    assert dev["CIDEr-D"] > dev["CIDEr-D_shuffled_images"] + 0.15, dev  # captions describe their own image
    preds = json.loads((tmp_path / "captions_dev_results.json").read_text())
    assert len(preds) == 30 and all(p["caption"].strip() for p in preds)
    losses = _losses(tmp_path)
    assert losses[-1] < 0.8 * losses[0], losses
