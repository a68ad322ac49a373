"""SCST (src/unimo/finetune/tasks/scst.py): fast CIDEr-D against pycocoevalcap and hand values, teacher-forced
log-probabilities against the decoders' own scores, the policy-gradient sign, the rollout bookkeeping, the task,
a short SCST run on the demo world that raises CIDEr-D, and the whole ``run.py`` path with the task registered."""
from __future__ import annotations

import json
import math

import numpy as np
import paddle
import pytest

from conftest import build_demo_data

from unimo.finetune.tasks.scst import CiderD, ScstCaptionTask, ScstModel, policy_loss, sequence_log_probs
from unimo.generation import DecodeConfig, SamplingConfig, greedy_search, ids_to_text, sample
from unimo.model.modeling import UnimoForGeneration
from unimo.tokenizer import SEP_ID


def _pycoco_scores(hyps: list[str], refs: list[list[str]]) -> np.ndarray:
    from pycocoevalcap.cider.cider_scorer import CiderScorer

    scorer = CiderScorer(n=4, sigma=6.0)
    for h, r in zip(hyps, refs):
        scorer += (h, r)
    return scorer.compute_score()[1]


# ------------------------------------------------------------------------------------------------------- CIDEr-D
def test_cider_hand_values():
    cider = CiderD([["a b"], ["c d"]])
    # idf of every n-gram = log 2 (2 images, each n-gram in one); identical 1- and 2-gram vectors -> cosine 1,
    # no 3/4-grams -> 0; same bigram count -> no length penalty: 10 * mean([1, 1, 0, 0]) = 5
    assert cider.score("a b", 0) == pytest.approx(5.0, abs=1e-12)
    # "a": unigram cosine log2^2 / (log2 * sqrt(2) log2) = 1/sqrt(2); 0 vs 1 bigrams -> exp(-1 / 72)
    assert cider.score("a", 0) == pytest.approx(10 * (1 / math.sqrt(2)) * math.exp(-1 / 72) / 4, abs=1e-12)
    assert cider.score("c d", 0) == 0.0 and cider.score("", 1) == 0.0
    # clipping (CIDEr-D): repeating a matched word does not raise the unigram overlap above the reference's weight
    assert cider.score("a a b", 0) < cider.score("a b", 0)


def test_cider_equals_pycocoevalcap_on_hand_cases():
    refs = [["a man riding a horse on a beach", "a person rides a horse", "the horse walks on the sand"],
            ["two dogs play in the snow", "dogs playing in snow", "a dog and another dog in the snow"],
            ["a plate of food with broccoli", "broccoli and rice on a white plate", "a meal on a plate"]]
    cider = CiderD(refs)
    rounds = [["a man riding a horse", "two dogs in the snow", "a plate with broccoli and rice"],
              ["", "dogs dogs dogs dogs", "a plate of food with broccoli"],  # empty, repetition, exact copy
              ["zebra unicorn", "snow", "a white plate plate of rice on a table near broccoli and a fork"]]
    for hyps in rounds:
        want = _pycoco_scores(hyps, refs)
        got = cider.scores(hyps, [0, 1, 2])
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # score_refs with the corpus df equals scoring a corpus image with the same references
    assert cider.score_refs(rounds[0][1], refs[1]) == pytest.approx(cider.score(rounds[0][1], 1), abs=1e-12)
    # the df is the corpus's: scoring one image alone does not change it (pycocoevalcap would use that image only)
    alone = _pycoco_scores([rounds[0][0]], [refs[0]])[0]
    assert alone == 0.0 and cider.score(rounds[0][0], 0) > 0.5  # a 1-image pycoco corpus has idf log(1) = 0


def test_cider_equals_pycocoevalcap_on_demo_references(demo_refs):
    rng = np.random.default_rng(0)
    hyps = []
    for _ in demo_refs:  # a truncated reference of a random image: partial and mismatched captions
        words = demo_refs[rng.integers(len(demo_refs))][rng.integers(5)].split()
        hyps.append(" ".join(words[:rng.integers(0, len(words) + 1)]))
    cider = CiderD(demo_refs)
    np.testing.assert_allclose(cider.scores(hyps, range(len(hyps))), _pycoco_scores(hyps, demo_refs),
                               rtol=1e-10, atol=1e-12)


def test_cider_errors():
    with pytest.raises(ValueError, match="non-empty"):
        CiderD([])
    with pytest.raises(ValueError, match="image 1 has no reference"):
        CiderD([["a"], []])
    with pytest.raises(IndexError, match="outside the CIDEr-D corpus"):
        CiderD([["a b"]]).score("a", 3)


# ------------------------------------------------------------------------------------------- policy gradient
@pytest.fixture(scope="module")
def small_model(tiny_config):
    paddle.seed(3)
    config = tiny_config.copy(vocab_size=40, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return UnimoForGeneration(config)


def _images(n: int, regions: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    valid = np.ones((n, regions), np.float32)
    valid[-1, regions - 1:] = 0  # one padded region row
    return {"image_features": rng.normal(size=(n, regions, 2048)).astype(np.float32) * valid[:, :, None],
            "image_locations": rng.random((n, regions, 5)).astype(np.float32) * valid[:, :, None],
            "image_valid": valid}


@pytest.mark.parametrize("min_out_len", [0, 3])
def test_teacher_forced_log_probs_equal_decoder_scores(small_model, min_out_len):
    """sum log p from one teacher-forced pass == the decoders' step-by-step scores (length penalty 0), for greedy
    captions and for samples, with the EOS blocked before min_out_len in both."""
    img = _images(3)
    src = {"image_features": img["image_features"], "image_locations": img["image_locations"],
           "attention_mask": img["image_valid"][:, :, None] * img["image_valid"][:, None, :]}
    for max_len, hyps in ((12, greedy_search(small_model, src, img["image_valid"],
                                             DecodeConfig(max_out_len=12, min_out_len=min_out_len, eos_id=SEP_ID))),
                          (6, sample(small_model, src, img["image_valid"],
                                     SamplingConfig(max_out_len=6, min_out_len=min_out_len, eos_id=SEP_ID, seed=4)))):
        targets = [ids + [SEP_ID] if len(ids) < max_len else ids for ids, _ in hyps]
        with paddle.no_grad():
            logp = sequence_log_probs(small_model, img["image_features"], img["image_locations"], img["image_valid"],
                                      targets, min_out_len=min_out_len).numpy()
        np.testing.assert_allclose(logp, [s for _, s in hyps], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("advantage", [1.0, -1.0, 0.0])
def test_policy_gradient_sign(small_model, advantage):
    """One SGD step on -(r - b) log p(sample): the sample's log-probability rises when it beat the baseline, falls
    when it did worse, and nothing moves when r == b."""
    model = UnimoForGeneration(small_model.config)
    model.set_state_dict(small_model.state_dict())
    img = _images(1, seed=1)
    target = [[7, 8, 9, 10, SEP_ID]]

    def logp():
        return sequence_log_probs(model, img["image_features"], img["image_locations"], img["image_valid"], target)

    before = float(logp()[0])
    opt = paddle.optimizer.SGD(learning_rate=0.05, parameters=model.parameters())
    loss = policy_loss(logp(), [0.5 + advantage], [0.5])
    loss.backward()
    opt.step()
    after = float(logp()[0])
    if advantage > 0:
        assert after > before + 1e-3
    elif advantage < 0:
        assert after < before - 1e-3
    else:
        assert after == before


# -------------------------------------------------------------------------------------- demo world and the model
@pytest.fixture(scope="module")
def demo(tmp_path_factory, repo_root):
    return build_demo_data(tmp_path_factory.mktemp("scst_demo"), 60)


@pytest.fixture(scope="module")
def demo_refs(demo):
    from unimo.eval.coco import python_ptb_tokenize

    refs: dict[str, list[str]] = {}
    with open(demo / "coco" / "captions_train.jsonl", encoding="utf-8") as f:
        for line in f:
            e = json.loads(line)
            refs.setdefault(e["image_id"], []).append(python_ptb_tokenize(e["caption"]))
    return list(refs.values())


JUNK = " indeed"


class CompactTokenizer:
    """The real BPE tokenizer restricted to the demo captions' ids (renumbered densely, specials kept), so that a
    tiny captioner's LM head has ~60 outputs instead of 50,265: same texts, ~1000x cheaper softmax."""

    def __init__(self, real, texts):
        ids = sorted({i for t in texts for i in real.encode(t)} - {0, 1, 2, 3})
        self.real_ids = [0, 1, 2, 3] + ids
        self.index = {r: c for c, r in enumerate(self.real_ids)}
        self.real = real

    def encode(self, text):
        return [self.index.get(i, 3) for i in self.real.encode(text)]

    def decode(self, ids, **kwargs):
        return self.real.decode([self.real_ids[int(i)] for i in ids], **kwargs)

    def word_start_table(self):
        return self.real.word_start_table()[self.real_ids]


def _cfg(demo, **extra):
    return ScstCaptionTask.config_class.from_values({"task": "img2txt_scst", "data_dir": str(demo / "coco"),
            "train_file": "captions_train.jsonl", "dev_file": "captions_val.jsonl",
            "feature_store": str(demo / "world" / "features" / "store"), "max_img_len": 37, "disable_tqdm": True,
            "max_out_len": 20, "min_out_len": 3, "seed": 1, **extra})


@pytest.fixture(scope="module")
def compact(demo, tokenizer):
    texts = [json.loads(line)["caption"] for split in ("train", "val", "test")
             for line in open(demo / "coco" / f"captions_{split}.jsonl", encoding="utf-8")]
    return CompactTokenizer(tokenizer, texts + [JUNK])


def test_task_reader_and_model(demo, compact, tiny_config, tmp_path):
    task = ScstCaptionTask(_cfg(demo, scst_samples=3), compact, str(tmp_path))
    train = task.load("train")
    captions = [json.loads(line) for line in open(demo / "coco" / "captions_train.jsonl", encoding="utf-8")]
    assert [e["image_id"] for e in train] == list(dict.fromkeys(c["image_id"] for c in captions))
    assert [e["image_index"] for e in train] == list(range(len(train)))
    assert sum(len(g["refs"]) for g in task.train_images()) == len(captions)
    assert len(task.load("dev")) == sum(1 for _ in open(demo / "coco" / "captions_val.jsonl"))  # per caption
    batch = task.collate(train[:3])
    assert set(batch) == {"image_features", "image_locations", "image_valid", "image_index"}
    assert batch["image_features"].shape[:2] == batch["image_valid"].shape and batch["image_features"].shape[0] == 3
    np.testing.assert_array_equal(batch["image_index"], [0, 1, 2])
    config = tiny_config.copy(vocab_size=len(compact.real_ids))
    model = task.build_model(config)
    assert isinstance(model, ScstModel) and model.num_samples == 3 and model.cider.num_images == len(train)
    assert (model.sampling.max_out_len, model.sampling.min_out_len, model.sampling.eos_id) == (20, 3, SEP_ID)
    plain = ScstCaptionTask(_cfg(demo, do_train=False), compact, str(tmp_path)).build_model(config)
    assert type(plain) is UnimoForGeneration
    from unimo.utils.errors import ConfigError

    with pytest.raises(ConfigError, match="adv_steps: img2txt_scst does not combine with VILLA"):
        _cfg(demo, adv_steps=4)
    with pytest.raises(ValueError, match="scst_baseline"):
        ScstModel(plain, compact, model.cider, baseline="beam")


@pytest.mark.parametrize("baseline", ["greedy", "mean"])
def test_rollout_bookkeeping(demo, compact, tiny_config, tmp_path, baseline):
    """The loss is -mean((r - b) * log p) with r = CIDEr-D of the decoded samples against their image's references
    and b = the greedy caption's CIDEr-D (or the mean of the image's other samples)."""
    from unimo.eval.coco import python_ptb_tokenize

    task = ScstCaptionTask(_cfg(demo, scst_samples=3, scst_baseline=baseline, max_out_len=8), compact, str(tmp_path))
    paddle.seed(0)
    model = task.build_model(tiny_config.copy(vocab_size=len(compact.real_ids), hidden_dropout_prob=0.0,
                                              attention_probs_dropout_prob=0.0))
    examples = task.load("train")[2:5]
    batch = {k: paddle.to_tensor(v) for k, v in task.collate(examples).items()}
    model.train()
    loss, parts = model(**batch)
    roll = model.last_rollout
    assert len(roll["samples"]) == 9
    np.testing.assert_array_equal(roll["image_index"], np.repeat([2, 3, 4], 3))
    texts = [python_ptb_tokenize(ids_to_text(s, compact, strip=True)) for s in roll["samples"]]
    want_r = [model.cider.score_refs(t, task.train_images()[i]["refs"]) for t, i in zip(texts, roll["image_index"])]
    np.testing.assert_allclose(roll["rewards"], want_r, rtol=1e-12)
    if baseline == "greedy":
        img = task.images.batch([e["image_id"] for e in examples])
        v = img["image_valid"]
        greedy = greedy_search(model.model, {"image_features": img["image_features"],
                                             "image_locations": img["image_locations"],
                                             "attention_mask": v[:, :, None] * v[:, None, :]}, v,
                               DecodeConfig(max_out_len=8, min_out_len=3, eos_id=SEP_ID))
        gr = [model.cider.score(python_ptb_tokenize(ids_to_text(g, compact, strip=True)), i)
              for (g, _), i in zip(greedy, [2, 3, 4])]
        np.testing.assert_allclose(roll["baselines"], np.repeat(gr, 3), rtol=1e-12)
    else:
        r = np.asarray(want_r).reshape(3, 3)
        np.testing.assert_allclose(roll["baselines"], ((r.sum(1, keepdims=True) - r) / 2).reshape(-1), rtol=1e-12)
    expected = -np.mean((np.asarray(roll["rewards"]) - roll["baselines"]) * roll["log_probs"].numpy())
    assert float(loss) == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert parts["reward"] == pytest.approx(float(np.mean(want_r)))
    # the log-probs carry gradients to the parameters
    loss.backward()
    assert float(np.abs(model.model.lm_head.mask_lm_trans_fc.weight.grad.numpy()).max()) > 0


# ---------------------------------------------------------------------------------------- SCST raises CIDEr-D
def test_short_scst_run_raises_cider(demo, compact, tiny_config, tmp_path):
    """A tiny captioner is cross-entropy trained on the demo world's training captions, 70% of which end with a
    junk word (" indeed") no reference contains: its greedy captions mostly carry it, which CIDEr-D punishes
    (extra n-grams, length penalty). 30 SCST steps (Adam 3e-4, 4 samples per image, greedy baseline) on the same
    images must raise both the greedy CIDEr-D and the mean CIDEr-D of sampled captions, and drop the junk (fixed
    seeds; observed with 4 seeds: greedy 0.40..0.55 -> 0.64..0.88, sampled +0.07..+0.10, junk -> 0..7%)."""
    from unimo.eval.coco import python_ptb_tokenize
    from unimo.finetune.tasks.generation import CaptionTask

    task = ScstCaptionTask(_cfg(demo, scst_samples=4), compact, str(tmp_path))
    images = task.train_images()
    config = tiny_config.copy(vocab_size=len(compact.real_ids), hidden_dropout_prob=0.0,
                              attention_probs_dropout_prob=0.0)
    rng = np.random.default_rng(1)
    junk = compact.encode(JUNK)
    xe = []
    for e in CaptionTask.load(task, "train"):
        tgt = e["tgt_ids"]
        xe.append({**e, "tgt_ids": tgt[:-1] + junk + [SEP_ID] if rng.random() < 0.7 else tgt})
    paddle.seed(1)
    model = UnimoForGeneration(config, label_smoothing=task.cfg.label_smoothing)  # 0.1, as the XE stage
    opt = paddle.optimizer.Adam(learning_rate=3e-3, parameters=model.parameters())
    for _ in range(12):  # epochs of cross-entropy training
        order = rng.permutation(len(xe))
        for s in range(0, len(order), 16):
            batch = CaptionTask.collate(task, [xe[i] for i in order[s:s + 16]])
            loss = model(**{k: paddle.to_tensor(v) for k, v in batch.items()}).loss
            loss.backward()
            opt.step()
            opt.clear_grad()

    scst = ScstModel(model, compact, CiderD([g["refs"] for g in images]), num_samples=4, max_out_len=20,
                     min_out_len=3, seed=1)
    img = task.images.batch([g["image_id"] for g in images])
    valid = img["image_valid"]
    source = {"image_features": img["image_features"], "image_locations": img["image_locations"],
              "attention_mask": valid[:, :, None] * valid[:, None, :]}
    index = [g["image_index"] for g in images]

    def greedy_cider():
        hyps = greedy_search(model, source, valid, DecodeConfig(max_out_len=20, min_out_len=3, eos_id=SEP_ID))
        texts = [ids_to_text(h, compact, strip=True) for h, _ in hyps]
        score = scst.cider.scores([python_ptb_tokenize(t) for t in texts], index).mean()
        return float(score), float(np.mean(["indeed" in t for t in texts]))

    def sampled_cider(k=8):
        rep = np.repeat(np.arange(len(images)), k)
        hyps = sample(model, {n: v[rep] for n, v in source.items()}, valid[rep],
                      SamplingConfig(max_out_len=20, min_out_len=3, eos_id=SEP_ID, seed=99))
        texts = [python_ptb_tokenize(ids_to_text(h, compact, strip=True)) for h, _ in hyps]
        return float(scst.cider.scores(texts, np.array(index)[rep]).mean())

    greedy_before, junk_before = greedy_cider()
    sampled_before = sampled_cider()
    assert junk_before > 0.1  # the flaw is there
    opt = paddle.optimizer.Adam(learning_rate=3e-4, parameters=scst.parameters(),
                                grad_clip=paddle.nn.ClipGradByGlobalNorm(1.0))
    examples = task.load("train")
    scst.train()
    for _ in range(30):
        chunk = [examples[i] for i in rng.choice(len(examples), 16, replace=False)]
        loss, parts = scst(**{k: paddle.to_tensor(v) for k, v in task.collate(chunk).items()})
        assert np.isfinite(float(loss))
        loss.backward()
        opt.step()
        opt.clear_grad()
    greedy_after, junk_after = greedy_cider()
    sampled_after = sampled_cider()
    print(json.dumps({"greedy": [greedy_before, greedy_after], "junk": [junk_before, junk_after],
                      "sampled": [sampled_before, sampled_after]}))
    assert greedy_after > greedy_before + 0.05
    assert sampled_after > sampled_before + 0.03
    assert junk_after < junk_before / 2


# ----------------------------------------------------------------------------------- run.py with the task registered
def test_run_py_end_to_end(demo, dict_dir, repo_root, tmp_path, monkeypatch):
    """Two SCST steps through the real entry point (PaddleNLP Trainer, evaluation with beam search + COCO metrics,
    best checkpoint, final reload): the checkpoints are plain UnimoForGeneration ones."""
    from unimo.eval import coco
    from unimo.finetune import run

    monkeypatch.setattr(coco, "java_status", lambda: (False, "disabled in this test (speed)"))
    monkeypatch.setenv("UNIMO_VISUALDL", "0")
    out = tmp_path / "out"
    conf = {"task": "img2txt_scst", "dataset": "demo", "data_dir": str(demo / "coco"),
            "train_file": "captions_train.jsonl", "dev_file": "captions_val.jsonl",
            "feature_store": str(demo / "world" / "features" / "store"),
            "model_config": str(repo_root / "model_files/config/unimo_tiny_en.json"), "vocab_dir": str(dict_dir),
            "init_checkpoint": None, "max_img_len": 37, "batch_size": 2, "max_steps": 2, "eval_steps": 2,
            "save_steps": 2, "logging_steps": 1, "learning_rate": 1.0e-4, "scst_samples": 2, "max_out_len": 4,
            "min_out_len": 1, "beam_size": 2, "max_eval_images": 4, "adv_steps": 0, "disable_tqdm": True,
            "output_dir": str(out)}
    path = tmp_path / "conf.yaml"
    path.write_text(json.dumps(conf))  # JSON is YAML
    results = run.main(["--config", str(path)])
    assert "CIDEr-D" in results["metrics"]["dev"] and np.isfinite(results["metrics"]["dev"]["CIDEr-D"])
    assert results["metrics"]["dev"]["num_images"] == 4
    logs = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in logs if "loss" in r]
    assert len(steps) == 2 and all(np.isfinite(r["loss"]) and 0 <= r["loss_reward"] for r in steps)
    assert results["best"]["step"] == 2 and results["checkpoint"] == str(out / "best")
    best = UnimoForGeneration.from_pretrained(str(out / "best"), strict=True)  # save_pretrained of the inner model
    trainer_state = paddle.load(str(out / "checkpoint-2" / "model_state.pdparams"))  # the Trainer's own checkpoint
    assert sorted(trainer_state) == sorted(best.state_dict())
    for k, v in best.state_dict().items():
        np.testing.assert_array_equal(np.asarray(trainer_state[k]), v.numpy())


def test_scst_config_file(repo_root):
    """script/img2txt/coco_scst/conf.yaml: inherits the COCO settings, switches VILLA off, SCST settings present."""
    from unimo.finetune.run import load_run_config

    task_cls, cfg = load_run_config(str(repo_root / "script/img2txt/coco_scst/conf.yaml"), {})
    assert task_cls is ScstCaptionTask
    assert cfg["task"] == "img2txt_scst" and cfg["adv_steps"] == 0
    assert cfg["init_checkpoint"] == "output/img2txt/coco/best"
    assert cfg["learning_rate"] == pytest.approx(1e-6) and cfg["scst_samples"] == 5
    assert (cfg["max_img_len"], cfg["max_out_len"], cfg["min_out_len"], cfg["beam_size"]) == (101, 50, 5, 5)
