"""GLUE classification (SST-2, CoLA, MNLI) and regression (STS-B): official classifier/regression heads.

Reader: ``[CLS] a [SEP] (b [SEP])``, positions from 2, bidirectional mask over valid tokens, truncation popping
from the longer text (official ``classification_reader.py``). Head: ReLU text pooler -> dropout -> ``cls_out_N``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from ... import masks
from ...model.modeling import UnimoForSequenceClassification
from ...reader.datasets import load_examples
from ..config import FinetuneConfig
from .base import Task, pad_2d

METRICS = ("acc", "mcc", "f1", "pearson_spearman")


@dataclass
class ClassificationConfig(FinetuneConfig):
    labels: Optional[list[Any]] = None  # label names in head order (else <train dir>/labels.json)
    max_seq_len: int = 512
    metric: Optional[str] = None  # acc | mcc | f1 | pearson_spearman (default: acc; regression: pearson_spearman)

    def validate(self) -> None:
        super().validate()
        self.require(self.metric is None or self.metric in METRICS, "metric", f"must be one of {', '.join(METRICS)}")


class ClassificationTask(Task):
    name = "classification"
    config_class = ClassificationConfig

    def __init__(self, cfg: ClassificationConfig, tokenizer, output_dir: str):
        super().__init__(cfg, tokenizer, output_dir)
        self.regression = cfg.task == "regression"
        self.metric = cfg.metric or ("pearson_spearman" if self.regression else "acc")
        self.key_metric = "pearson" if self.metric == "pearson_spearman" else self.metric
        self._labels: list[str] | None = None

    # -- labels
    @property
    def labels(self) -> list[str]:
        if self._labels is None:
            if self.cfg.labels:
                self._labels = [str(x) for x in self.cfg.labels]
            else:
                path = os.path.join(os.path.dirname(self.data_paths("train")[0]), "labels.json")
                if not os.path.exists(path):
                    raise FileNotFoundError(f"no `labels` in the config and no {path}")
                with open(path, encoding="utf-8") as f:
                    self._labels = [str(x) for x in json.load(f)]
        return self._labels

    @property
    def num_labels(self) -> int:
        return 1 if self.regression else len(self.labels)

    # -- reader
    def load(self, split: str) -> list[dict[str, Any]]:
        task = "regression" if self.regression else "classification"
        records = []
        label_index = None if self.regression else {name: i for i, name in enumerate(self.labels)}
        for path in self.data_paths(split):
            for line_no, ex in enumerate(load_examples(path, task), start=1):
                rec = self.tokenizer.build_inputs(ex.get("text_a_ids", ex.get("text_a")),
                                                  ex.get("text_b_ids", ex.get("text_b")),
                                                  self.cfg.max_seq_len)
                label = ex.get("label")
                if label is not None and label != "":
                    if self.regression:
                        rec["label"] = float(label)
                    else:
                        if str(label) not in label_index:
                            raise ValueError(f"{path} example {line_no}: label {label!r} not in {self.labels}")
                        rec["label"] = label_index[str(label)]
                rec["qid"] = ex.get("qid", len(records))  # default: the example's index in the split
                records.append(rec)
        return records

    def collate(self, examples: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
        ids = pad_2d([e["input_ids"] for e in examples], pad=1)
        pos = pad_2d([e["position_ids"] for e in examples], pad=1)
        valid = (ids != 1).astype(np.float32)
        valid[:, 0] = 1.0
        batch = {"input_ids": ids, "position_ids": pos, "attention_mask": masks.bidirectional_batch(valid)}
        if all("label" in e for e in examples):
            dtype = np.float32 if self.regression else np.int64
            batch["labels"] = np.array([e["label"] for e in examples], dtype=dtype)
        return batch

    # -- model
    def build_model(self, config):
        return self.load_or_init(UnimoForSequenceClassification, config, num_labels=self.num_labels)

    # -- metric
    def predict(self, model, examples: Sequence[dict[str, Any]]) -> np.ndarray:
        outs = []
        bs = self.cfg.eval_batch_size or self.cfg.batch_size
        for batch in self.batches(examples, bs):
            batch.pop("labels", None)
            outs.append(model(**self.to_tensors(batch)).logits.numpy())
        return np.concatenate(outs, axis=0)

    def evaluate(self, model, split: str) -> dict[str, float]:
        from ...eval import glue

        examples = self.load(split)
        logits = self.predict(model, examples)
        if self.regression:
            preds = logits[:, 0].tolist()
        else:
            preds = logits.argmax(-1).tolist()
        out = [{"qid": e["qid"], "prediction": p if self.regression else self.labels[p]}
               for e, p in zip(examples, preds)]
        self.write_json(f"predictions_{split}.json", out)
        if not all("label" in e for e in examples):
            return {}
        refs = [e["label"] for e in examples]
        return glue.glue_metric(self.metric, preds, refs)
