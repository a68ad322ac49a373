"""A task = a reader (examples -> padded batches), a head (the model class), and a metric, in one place."""
from __future__ import annotations

import json
import os
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import paddle

from ...model.configuration import UnimoConfig
from ...tokenizer import UnimoTokenizer
from ..config import FinetuneConfig


class ListDataset(paddle.io.Dataset):
    def __init__(self, examples: Sequence[Any]):
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Any:
        return self.examples[i]


def pad_2d(rows: Sequence[Sequence[int]], pad: int, width: Optional[int] = None, dtype=np.int64) -> np.ndarray:
    width = width or max(len(r) for r in rows)
    out = np.full((len(rows), width), pad, dtype=dtype)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


class Task:
    """Base class. Subclasses set ``model_class``/``key_metric`` and implement the reader and the metric."""

    name = "task"
    key_metric = "loss"
    greater_is_better = True
    config_class: type[FinetuneConfig] = FinetuneConfig  # the task's typed configuration (its keys and defaults)

    def __init__(self, cfg: FinetuneConfig, tokenizer: UnimoTokenizer, output_dir: str):
        self.cfg, self.tokenizer, self.output_dir = cfg, tokenizer, output_dir
        # split -> the files to read instead of the configured ones (checked copies without the records that
        # `skip_bad: true` skipped, written by unimo.finetune.checks)
        self.checked_files: dict[str, list[str]] = {}

    # -- data
    def data_paths(self, split: str) -> list[str]:
        """The files of a split, in order: ``<split>_file`` is one path or a list (VQA trains on train + val)."""
        if split in self.checked_files:
            return list(self.checked_files[split])
        key = f"{split}_file"
        value = self.cfg.get(key)
        if not value:
            raise KeyError(f"config has no {key}")
        out = []
        for path in ([value] if isinstance(value, str) else list(value)):
            if not os.path.isabs(path) and self.cfg.get("data_dir"):
                path = os.path.join(self.cfg["data_dir"], path)
            if not os.path.exists(path):
                raise FileNotFoundError(f"{key}: {path} does not exist")
            out.append(path)
        return out

    def data_path(self, split: str) -> str:
        """The one file of a split (a reader that reads a list goes through ``data_paths`` / ``read_examples``)."""
        paths = self.data_paths(split)
        if len(paths) != 1:
            raise ValueError(f"{split}_file: {type(self).__name__} reads one file per split here, got {len(paths)}")
        return paths[0]

    def read_examples(self, split: str, kind: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every record of the split's files, in order (``unimo.reader.datasets.load_examples`` per file)."""
        from ...reader.datasets import load_examples

        for path in self.data_paths(split):
            yield from load_examples(path, kind, **kwargs)

    def has_split(self, split: str) -> bool:
        return bool(self.cfg.get(f"{split}_file"))

    def load(self, split: str) -> list[Any]:
        raise NotImplementedError

    def collate(self, examples: Sequence[Any]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    # -- model
    def build_model(self, config: UnimoConfig):
        raise NotImplementedError

    def load_or_init(self, model_cls, config: UnimoConfig, **kwargs: Any):
        init = self.cfg.get("init_checkpoint")
        if init:
            model = model_cls.from_pretrained(init, config=config, trust_pickle=self.cfg.trust_pickle, **kwargs)
            report = model.load_report
            print(json.dumps({"init_checkpoint": init, "missing_initialised": report.missing,
                              "unused_in_checkpoint": report.unexpected}))
            return model
        return model_cls(config, **kwargs)

    def artifacts(self) -> dict[str, str]:
        """Files a checkpoint of this task needs besides the weights (copied next to them, e.g. the VQA answer
        vocabulary), as {file name in the checkpoint dir: source path}."""
        return {}

    def save_checkpoint(self, model, directory: str) -> None:
        import shutil

        model.save_pretrained(directory)
        for name, src in self.artifacts().items():
            shutil.copyfile(src, os.path.join(directory, name))

    # -- evaluation
    def evaluate(self, model, split: str) -> dict[str, float]:
        raise NotImplementedError

    def batches(self, examples: Sequence[Any], batch_size: int):
        for i in range(0, len(examples), batch_size):
            yield self.collate(examples[i:i + batch_size])

    @staticmethod
    def to_tensors(batch: dict[str, np.ndarray]) -> dict[str, paddle.Tensor]:
        return {k: paddle.to_tensor(v) for k, v in batch.items()}

    def write_json(self, name: str, data: Any) -> str:
        os.makedirs(self.output_dir, exist_ok=True)
        path = os.path.join(self.output_dir, name)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, ensure_ascii=False)
        os.replace(path + ".tmp", path)
        return path
