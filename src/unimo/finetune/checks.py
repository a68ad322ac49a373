"""Fail-fast data checks of a fine-tuning run, before the model is built: every split that the run will read is
loaded, every ``image_id`` it references is looked up in the feature store, and the store's feature dimension is
compared with the model's ``image_embedding_size``. A fault is one :class:`~unimo.utils.errors.UserError` naming
the file, line and field - never a KeyError in a DataLoader thread in the middle of training, nor a matmul shape
error inside Paddle at the first step."""
from __future__ import annotations

import json
from typing import Any, Optional

from ..reader.datasets import iter_lines, load_examples
from ..utils.errors import ConfigError, DataError

# task class name -> example kind of unimo.reader.datasets
_KINDS = {"VisualEntailmentTask": "ve", "VQATask": "vqa", "CaptionTask": "caption", "ScstCaptionTask": "caption",
          "RetrievalTask": "retrieval"}


def splits_in_use(task: Any, cfg: dict[str, Any]) -> list[str]:
    splits = []
    if cfg.get("do_train"):
        splits.append("train")
    if cfg.get("do_eval") and task.has_split("dev"):
        splits.append("dev")
    if cfg.get("do_test") and task.has_split("test"):
        splits.append("test")
    for extra in cfg.get("extra_eval_splits") or []:
        if extra not in splits and task.has_split(extra):
            splits.append(extra)
    return splits


def _line_of(path: str, image_id: str) -> Optional[int]:
    """Line of the first record of ``path`` that references ``image_id`` (JSONL, or official ``;`` / TSV lines)."""
    for n, text in iter_lines(path):
        stripped = text.strip()
        if not stripped:
            continue
        if stripped.startswith("{"):
            try:
                if str(json.loads(stripped).get("image_id")) == image_id:
                    return n
            except (json.JSONDecodeError, AttributeError):
                continue
        else:
            head = stripped.split(";", 1)[0].split("\t", 1)[0].strip()
            if head == image_id or (len(head) > 9 and head[9:].lstrip("0") == image_id.lstrip("0")):
                return n
    return None


def check_multimodal_data(task: Any, cfg: dict[str, Any], model_config: Any, config_path: str) -> dict[str, int]:
    """Check the feature store against the model config and every split's image ids against the store.
    Returns {split: number of image references checked}."""
    kind = _KINDS.get(type(task).__name__)
    if kind is None:
        return {}
    try:
        images = task.images  # opens the store
    except KeyError as e:
        raise ConfigError(str(e.args[0]), file=config_path, field="feature_store") from None
    store = images.store
    dim, want = int(store.feature_dim), int(model_config.image_embedding_size)
    if dim != want:
        raise ConfigError(f"the feature store {store.path} has {dim}-d region features but the model config "
                          f"{cfg.get('model_config')} has image_embedding_size {want}", file=config_path,
                          field="feature_store", hint="use the store the model was trained on, or another model_config")
    checked: dict[str, int] = {}
    for split in splits_in_use(task, cfg):
        path = task.data_path(split)
        ids = [str(ex["image_id"]) for ex in load_examples(path, kind)]
        for image_id in ids:
            if image_id not in store:
                raise DataError(path, _line_of(path, image_id), "image_id",
                                f"{image_id!r} is not in the feature store {store.path}", "unknown_image",
                                hint="convert its features into the store, or remove the record")
        checked[split] = len(ids)
    return checked
