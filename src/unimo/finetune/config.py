"""The fine-tuning configuration: the shared concerns (``unimo.training.config``) + the data concern declared here; each
task module derives its task's class from :class:`FinetuneConfig` (e.g. ``ClassificationConfig``) and names it as
its task's ``config_class``. ``python -m unimo.finetune.run --config conf.yaml [KEY=value ...]`` parses the YAML and
the overrides into that class (``ConfigBase.load``): unknown keys, wrong types and out-of-range values are errors
before any model is built or data is read."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

from ..registry import text_only_tasks
from ..training.config import ModelConfig, TrainingConfig, VillaConfig
from ..utils.config import ConfigBase


@dataclass
class DataConfig(ConfigBase):
    """Which task, which files, which splits run."""

    task: Optional[str] = None  # the task registry name (unimo.finetune.tasks)
    dataset: Optional[str] = None  # a label for output names and reports
    data_dir: Optional[str] = None  # relative data paths are resolved against it
    # a split file is one path or a list read in order (VQA v2 as the paper: train_file: [train, val])
    train_file: Optional[Union[str, list[str]]] = None
    dev_file: Optional[Union[str, list[str]]] = None
    test_file: Optional[Union[str, list[str]]] = None
    # extra evaluation splits, each read from a `<split>_file` key (e.g. MNLI dev_mismatched_file); dev* ones run
    # with do_eval, the others with do_test
    extra_eval_splits: Optional[list[str]] = None
    do_train: bool = True
    do_eval: bool = True
    do_test: bool = False
    # a record that references an image the feature store lacks: error (default), or skipped and counted in
    # results.json (`data_checked`)
    skip_bad: bool = False

    def validate(self) -> None:
        super().validate()
        self.require(bool(self.task), "task", "must name a task")
        if self.do_train:
            self.require(bool(self.train_file), "train_file", "is needed when do_train is true")


@dataclass
class DecodingConfig(ConfigBase):
    """Beam search of the generation tasks at evaluation (official ``--beam_size`` etc.; task defaults differ)."""

    beam_size: int = 5
    max_out_len: int = 64
    min_out_len: int = 0
    length_penalty: float = 0.0
    trigram_blocking: bool = False

    def validate(self) -> None:
        super().validate()
        self.require(self.beam_size >= 1, "beam_size", "must be >= 1")
        self.require(0 <= self.min_out_len <= self.max_out_len, "min_out_len",
                     f"must be in [0, max_out_len={self.max_out_len}]")


@dataclass
class FinetuneConfig(TrainingConfig, ModelConfig, VillaConfig, DataConfig):
    """Every fine-tuning run's keys; task configurations add theirs. Length keys a task declares
    (``TEXT_LENGTH_KEYS``) are checked against the model's position table."""

    TEXT_LENGTH_KEYS = ("max_seq_len", "max_src_len", "max_tgt_len", "max_out_len")

    def validate(self) -> None:
        super().validate()
        # VILLA perturbs the image features too: it does not apply to a task without them
        if self.adv_steps > 0 and self.task in text_only_tasks():
            raise self.error("adv_steps", f"VILLA perturbs the image features too, and task {self.task!r} has none",
                             "set adv_steps=0")

    def split_file(self, split: str) -> Optional[str]:
        """The (first) file of a split: ``train_file``/``dev_file``/``test_file`` or an extra split's
        ``<split>_file``."""
        value: Any = self.get(f"{split}_file")
        if isinstance(value, list):
            value = value[0] if value else None
        return None if value is None else str(value)

    @classmethod
    def extra_split_keys(cls, splits: Any) -> list[str]:
        return [f"{s}_file" for s in (splits or []) if isinstance(s, str) and s not in ("train", "dev", "test")]
