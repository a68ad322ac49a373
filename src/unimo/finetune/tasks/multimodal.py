"""Multi-modal understanding tasks on [image ; text] with full cross-modal attention:
SNLI-VE (official head), VQA v2 (ours: the official release has none), Flickr30k retrieval (official head, circle loss).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
from tqdm import tqdm

from ... import masks
from ...model.modeling import UnimoForRetrieval, UnimoForVisualEntailment, UnimoForVQA
from ...reader.image_batch import ImageBatcher
from ...tokenizer import CLS_ID, PAD_ID, SEP_ID
from ..config import FinetuneConfig
from .base import Task, pad_2d


@dataclass
class MultimodalConfig(FinetuneConfig):
    """The image side (official ``--max_img_len`` etc.: BUTD features, 10-100 boxes by confidence) + the text length."""

    feature_store: Optional[str] = None  # python -m preprocess.features convert ... --output STORE
    max_img_len: int = 101  # image rows incl. the global [IMG] row
    max_seq_len: int = 512
    conf_threshold: Optional[float] = None
    min_boxes: int = 10
    max_boxes: int = 100
    fixed_boxes: Optional[int] = None
    shuffled_image_control: bool = False  # also evaluate with images shuffled across examples (a blind baseline)

    def validate(self) -> None:
        super().validate()
        self.require(self.max_img_len >= 1, "max_img_len", "must be >= 1")
        self.require(1 <= self.min_boxes <= self.max_boxes, "min_boxes", "must be in [1, max_boxes]")
        self.require(self.fixed_boxes is None or self.fixed_boxes >= 1, "fixed_boxes", "must be >= 1")
        self.require(self.conf_threshold is None or 0.0 <= self.conf_threshold <= 1.0, "conf_threshold",
                     "must be in [0, 1]")


class MultimodalTask(Task):
    """Shared reader half: text ``[CLS] ... [SEP]`` after the image rows, mask = outer(valid image ; valid text)."""

    config_class = MultimodalConfig

    def __init__(self, cfg: MultimodalConfig, tokenizer, output_dir: str):
        super().__init__(cfg, tokenizer, output_dir)
        self._images: ImageBatcher | None = None

    @property
    def images(self) -> ImageBatcher:
        """The image reader (built from ``feature_store`` on first use; assignable, e.g. by the inference API)."""
        if self._images is None:
            cfg = self.cfg
            store = cfg.feature_store
            if not store:
                raise KeyError("config has no feature_store (python -m preprocess.features convert ... --output STORE)")
            if not os.path.isabs(store) and cfg.data_dir and not os.path.exists(store):
                store = os.path.join(cfg.data_dir, store)
            self._images = ImageBatcher(store, cfg.max_img_len, cfg.conf_threshold, cfg.min_boxes, cfg.max_boxes,
                                        cfg.fixed_boxes)
        return self._images

    @images.setter
    def images(self, value: ImageBatcher) -> None:
        self._images = value

    def text_ids(self, text: str | None, ids: Sequence[int] | None) -> list[int]:
        """``[CLS] text [SEP]`` truncated to max_seq_len keeping the final [SEP] (official VE/retrieval readers)."""
        max_len = self.cfg.max_seq_len
        if ids is not None:
            body = [i for i in ids if i not in (CLS_ID, SEP_ID)]
        else:
            body = self.tokenizer.encode(text or "")
        return [CLS_ID] + body[:max_len - 2] + [SEP_ID]

    def pack(self, image_ids: Sequence[str], texts: Sequence[list[int]]) -> dict[str, np.ndarray]:
        img = self.images.batch(image_ids)
        ids = pad_2d(texts, PAD_ID)
        pos = pad_2d([list(range(2, 2 + len(t))) for t in texts], PAD_ID)
        txt_valid = np.zeros(ids.shape, np.float32)
        for i, t in enumerate(texts):
            txt_valid[i, :len(t)] = 1.0
        valid = np.concatenate([img["image_valid"], txt_valid], axis=1)
        return {"input_ids": ids, "position_ids": pos, "image_features": img["image_features"],
                "image_locations": img["image_locations"], "attention_mask": masks.bidirectional_batch(valid)}

    @staticmethod
    def with_shuffled_images(examples: Sequence[dict], seed: int = 0) -> list[dict]:
        """Copies of ``examples`` whose ``image_id`` is that of another example (a fixed random permutation).
        Evaluating on them is the blind control: a model that reads the image must do clearly worse, a model that
        answers from the text alone scores the same (``shuffled_image_control: true`` reports it)."""
        perm = np.random.default_rng(seed).permutation(len(examples))
        return [dict(e, image_id=examples[j]["image_id"]) for e, j in zip(examples, perm)]

    def forward_batches(self, model, examples: Sequence[Any], desc: str):
        """(examples, logits [n, classes] as numpy) per evaluation batch, the labels left out."""
        bs = self.cfg.eval_batch_size or self.cfg.batch_size
        for i in tqdm(range(0, len(examples), bs), desc=desc, disable=self.cfg.disable_tqdm):
            batch = self.collate(examples[i:i + bs])
            batch.pop("labels", None)
            yield examples[i:i + bs], model(**self.to_tensors(batch)).logits.numpy()


# ------------------------------------------------------------------------------------------------------- SNLI-VE
class VisualEntailmentTask(MultimodalTask):
    name = "visual_entailment"
    key_metric = "acc"
    LABELS = ["entailment", "neutral", "contradiction"]

    def load(self, split: str) -> list[dict[str, Any]]:
        out = []
        for ex in self.read_examples(split, "ve"):
            out.append({"image_id": str(ex["image_id"]), "pair_id": ex.get("pair_id"),
                        "text": self.text_ids(ex.get("hypothesis"), ex.get("hypothesis_ids")),
                        "label": ex.get("label")})
        return out

    def collate(self, examples):
        batch = self.pack([e["image_id"] for e in examples], [e["text"] for e in examples])
        if all(e["label"] is not None for e in examples):
            batch["labels"] = np.array([e["label"] for e in examples], np.int64)
        return batch

    def build_model(self, config):
        return self.load_or_init(UnimoForVisualEntailment, config)

    def _predict(self, model, examples: Sequence[dict], desc: str) -> tuple[list[dict], int]:
        preds, correct = [], 0
        for exs, logits in self.forward_batches(model, examples, desc):
            for e, p in zip(exs, logits.argmax(-1).tolist()):
                preds.append({"pair_id": e["pair_id"], "image_id": e["image_id"], "prediction": self.LABELS[p]})
                correct += int(e["label"] == p)
        return preds, correct

    def evaluate(self, model, split: str) -> dict[str, float]:
        examples = self.load(split)
        preds, correct = self._predict(model, examples, f"ve-{split}")
        self.write_json(f"predictions_{split}.json", preds)
        labels = [e["label"] for e in examples if e["label"] is not None]
        if not labels:
            return {}
        # trivial baseline: always the most frequent class (ties: the lowest label id, np.argmax's first maximum;
        # the accuracy is that count either way)
        counts = np.bincount(labels)
        majority = counts[int(np.argmax(counts))] / len(labels)
        result = {"acc": correct / len(labels), "majority_class_acc": float(majority), "num_examples": len(labels)}
        if self.cfg.shuffled_image_control:
            _, blind = self._predict(model, self.with_shuffled_images(examples), f"ve-{split}-shuffled")
            result["acc_shuffled_images"] = blind / len(labels)
        return result


# ------------------------------------------------------------------------------------------------------- VQA v2
@dataclass
class VQAConfig(MultimodalConfig):
    answer_vocab: Optional[str] = None  # default <train dir>/answer_vocab.json
    max_seq_len: int = 40


class VQATask(MultimodalTask):
    name = "vqa"
    key_metric = "vqa_acc"
    config_class = VQAConfig

    @property
    def answer_vocab_path(self) -> str:
        path = self.cfg.answer_vocab or os.path.join(os.path.dirname(self.data_paths("train")[0]), "answer_vocab.json")
        if not os.path.isabs(path) and self.cfg.data_dir and not os.path.exists(path):
            path = os.path.join(self.cfg.data_dir, path)
        return path

    def artifacts(self) -> dict[str, str]:
        return {"answer_vocab.json": self.answer_vocab_path}

    @property
    def answers(self) -> list[str]:
        if not hasattr(self, "_answers"):
            with open(self.answer_vocab_path, encoding="utf-8") as f:
                self._answers = list(json.load(f))
            self._answer_index = {a: i for i, a in enumerate(self._answers)}
        return self._answers

    def load(self, split: str) -> list[dict[str, Any]]:
        self.answers  # noqa: B018  (loads the vocabulary)
        out = []
        for ex in self.read_examples(split, "vqa"):
            targets = {self._answer_index[a["answer"]]: float(a["score"]) for a in ex.get("answers", [])
                       if a["answer"] in self._answer_index}  # answers outside the vocabulary cannot be predicted
            out.append({"question_id": ex["question_id"], "image_id": str(ex["image_id"]),
                        "text": self.text_ids(ex["question"], None), "targets": targets, "question": ex["question"],
                        "gt": [a["answer"] for a in ex.get("answers", [])]})
        return out

    def collate(self, examples):
        batch = self.pack([e["image_id"] for e in examples], [e["text"] for e in examples])
        labels = np.zeros((len(examples), len(self.answers)), np.float32)
        for i, e in enumerate(examples):
            for j, s in e["targets"].items():
                labels[i, j] = s
        batch["labels"] = labels
        return batch

    def build_model(self, config):
        return self.load_or_init(UnimoForVQA, config, num_answers=len(self.answers))

    def evaluate(self, model, split: str) -> dict[str, float]:
        from ...eval.vqa import write_vqa_results

        examples = self.load(split)
        answers, score = self._predict(model, examples, f"vqa-{split}")
        os.makedirs(self.output_dir, exist_ok=True)
        qid_int = {k: (int(k) if str(k).isdigit() else k) for k in answers}
        write_vqa_results(os.path.join(self.output_dir, f"vqa_results_{split}.json"),
                          {qid_int[k]: v for k, v in answers.items()})
        self.write_json("predictions_examples.json", [
            {"question_id": e["question_id"], "image_id": e["image_id"], "question": e["question"],
             "answer": answers[e["question_id"]]} for e in examples[:200]])
        labelled = [e for e in examples if e["gt"]]
        if not labelled:
            return {}
        # targets hold the official leave-one-out accuracy of each answer, so this is the VQA accuracy
        majority = self._majority_baseline(labelled)
        result = {"vqa_acc": 100.0 * score / len(labelled), "majority_answer_acc": majority,
                  "num_questions": len(labelled)}
        if self.cfg.shuffled_image_control:
            _, blind = self._predict(model, self.with_shuffled_images(examples), f"vqa-{split}-shuffled")
            result["vqa_acc_shuffled_images"] = 100.0 * blind / len(labelled)
        return result

    def _predict(self, model, examples: Sequence[dict], desc: str) -> tuple[dict[Any, str], float]:
        """({question_id: answer}, summed VQA accuracy) of the arg-max answers."""
        answers: dict[Any, str] = {}
        score = 0.0
        for exs, logits in self.forward_batches(model, examples, desc):
            for e, p in zip(exs, logits.argmax(-1).tolist()):
                answers[e["question_id"]] = self.answers[p]
                score += e["targets"].get(p, 0.0)
        return answers, score

    @staticmethod
    def _majority_baseline(examples: Sequence[dict]) -> float:
        totals: dict[int, float] = {}
        for e in examples:
            for j, s in e["targets"].items():
                totals[j] = totals.get(j, 0.0) + s
        if not totals:
            return 0.0
        # the answer with the largest summed VQA score; ties: the lowest answer index (a stated rule, not dict order)
        best = min(totals, key=lambda j: (-totals[j], j))
        return 100.0 * totals[best] / len(examples)


# ------------------------------------------------------------------------------------------------------- Retrieval
@dataclass
class RetrievalConfig(MultimodalConfig):
    negative_images: int = 10  # per training group (official)
    negative_captions: int = 10
    margin: float = 0.2  # circle loss (official)
    scale: float = 1.0
    score_batch_size: int = 128
    max_eval_images: Optional[int] = None  # the first N images and their captions (CPU-sized evaluation)

    def validate(self) -> None:
        super().validate()
        for key in ("negative_images", "negative_captions"):
            self.require(getattr(self, key) >= 0, key, "must be >= 0")
        self.require(self.negative_images + self.negative_captions >= 1, "negative_captions",
                     "the circle loss needs negatives: negative_images + negative_captions must be >= 1")
        self.require(self.score_batch_size >= 1, "score_batch_size", "must be >= 1")


class RetrievalTask(MultimodalTask):
    """Flickr30k: training groups of 1 positive + 10 negative images (same caption) + 10 negative captions (same
    image), official circle loss; evaluation scores every caption against every image."""

    name = "retrieval"
    key_metric = "avg_recall@1"
    config_class = RetrievalConfig

    def _load_images(self, split: str) -> list[dict[str, Any]]:
        out = []
        for ex in self.read_examples(split, "retrieval"):
            caps = ex.get("captions_ids") or ex.get("captions") or []
            texts = [self.text_ids(None, c) if not isinstance(c, str) else self.text_ids(c, None) for c in caps]
            out.append({"image_id": str(ex["image_id"]), "texts": texts})
        return out

    def load(self, split: str) -> list[dict[str, Any]]:
        images = self._load_images(split)
        self._train_images = images
        return [{"image": i, "caption": c} for i, im in enumerate(images) for c in range(len(im["texts"]))]

    def collate(self, examples):
        rng = np.random.default_rng([self.cfg.seed, *[e["image"] * 131 + e["caption"] for e in examples]])
        images = self._train_images
        n_img, n_cap = self.cfg.negative_images, self.cfg.negative_captions
        ids, texts = [], []
        for e in examples:
            im = images[e["image"]]
            caption = im["texts"][e["caption"]]
            others = [j for j in rng.choice(len(images), size=min(len(images), n_img + n_cap + 2), replace=False)
                      if j != e["image"]]
            neg_imgs = (others * (n_img // max(1, len(others)) + 1))[:n_img]
            neg_caps_src = (others[::-1] * (n_cap // max(1, len(others)) + 1))[:n_cap]
            ids.append(im["image_id"])
            texts.append(caption)
            for j in neg_imgs:
                ids.append(images[j]["image_id"])
                texts.append(caption)
            for j in neg_caps_src:
                other = images[j]["texts"]
                ids.append(im["image_id"])
                texts.append(other[int(rng.integers(len(other)))])
        batch = self.pack(ids, texts)
        # match labels in the model's group layout: the positive pair first, then its negatives
        batch["labels"] = np.tile(np.array([1] + [0] * (n_img + n_cap), np.int64), len(examples))
        return batch

    def build_model(self, config):
        cfg = self.cfg
        return self.load_or_init(UnimoForRetrieval, config, margin=cfg.margin, scale=cfg.scale,
                                 negative_images=cfg.negative_images, negative_captions=cfg.negative_captions)

    def evaluate(self, model, split: str) -> dict[str, float]:
        from ...eval.retrieval import recall_at_k

        images = self._load_images(split)
        if self.cfg.max_eval_images:  # the first N images and their captions (CPU-sized evaluation)
            images = images[:self.cfg.max_eval_images]
        captions = [(ci, t) for ci, im in enumerate(images) for t in im["texts"]]
        scores = np.zeros((len(captions), len(images)), np.float32)
        bs = self.cfg.score_batch_size
        pairs = [(c, i) for c in range(len(captions)) for i in range(len(images))]
        for start in tqdm(range(0, len(pairs), bs), desc=f"retrieval-{split}", disable=self.cfg.disable_tqdm):
            chunk = pairs[start:start + bs]
            batch = self.pack([images[i]["image_id"] for _, i in chunk], [captions[c][1] for c, _ in chunk])
            out = model(**self.to_tensors(batch)).scores.numpy()
            for (c, i), s in zip(chunk, out):
                scores[c, i] = s
        os.makedirs(self.output_dir, exist_ok=True)
        np.save(os.path.join(self.output_dir, f"scores_{split}.npy"), scores)
        result = recall_at_k(scores, [c for c, _ in captions])
        result["chance_recall@1"] = 1.0 / len(images)
        return {k: v for k, v in result.items() if isinstance(v, (int, float))}
