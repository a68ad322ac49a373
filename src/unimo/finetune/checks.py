"""Fail-fast data checks of a fine-tuning run, before the model is built: every split that the run will read is
loaded, every ``image_id`` it references is looked up in the feature store, and the store's feature dimension is
compared with the model's ``image_embedding_size``; a task checkpoint given as ``init_checkpoint`` must have the head
size this run builds (labels, answer vocabulary), and every classification label must be one of the run's labels.
A fault is one :class:`~unimo.utils.errors.UserError` naming
the file, line and field - never a KeyError in a DataLoader thread in the middle of training, nor a matmul shape
error inside Paddle at the first step."""
from __future__ import annotations

import json
import os
from typing import Any, Optional

from ..reader.datasets import iter_lines, load_examples
from ..registry import get_spec
from ..utils.errors import ConfigError, DataError


def splits_in_use(task: Any, cfg: dict[str, Any]) -> list[str]:
    splits = []
    if cfg.get("do_train"):
        splits.append("train")
    if cfg.get("do_eval") and task.has_split("dev"):
        splits.append("dev")
    if cfg.get("do_test") and task.has_split("test"):
        splits.append("test")
    # extra splits run as run.py runs them: dev* ones with do_eval, the others with do_test
    for extra in cfg.get("extra_eval_splits") or []:
        wanted = cfg.get("do_eval") if extra.startswith("dev") else cfg.get("do_test")
        if wanted and extra not in splits and task.has_split(extra):
            splits.append(extra)
    return splits


def _references(text: str, image_ids: set[str]) -> Optional[str]:
    """The image id of ``image_ids`` a record line references (JSONL ``image_id``, or the first field of an official
    ``;`` / TSV line, whose COCO form carries a 9-character prefix), else None."""
    stripped = text.strip()
    if not stripped:
        return None
    if stripped.startswith("{"):
        try:
            value = str(json.loads(stripped).get("image_id"))
        except (json.JSONDecodeError, AttributeError):
            return None
        return value if value in image_ids else None
    head = stripped.split(";", 1)[0].split("\t", 1)[0].strip()
    if head in image_ids:
        return head
    if len(head) > 9:
        short = head[9:].lstrip("0")
        for image_id in image_ids:
            if short == image_id.lstrip("0"):
                return image_id
    return None


def _line_of(path: str, image_id: str) -> Optional[int]:
    """Line of the first record of ``path`` that references ``image_id``."""
    for n, text in iter_lines(path):
        if _references(text, {image_id}):
            return n
    return None


def _without_records_of(path: str, image_ids: set[str], dst: str) -> int:
    """Copy ``path`` to ``dst`` (atomically) without the lines that reference ``image_ids``; returns the number of
    lines left out."""
    from ..utils.io import atomic_write

    dropped = 0
    with atomic_write(dst) as out:
        for _, text in iter_lines(path):
            if _references(text, image_ids):
                dropped += 1
                continue
            out.write(text if text.endswith("\n") else text + "\n")
    return dropped


def check_multimodal_data(task: Any, cfg: Any, model_config: Any, config_path: str) -> dict[str, Any]:
    """Check the feature store against the model config and every split's image ids against the store.

    An image id the store lacks is a :class:`DataError` naming file, line and field; with ``skip_bad: true`` the
    records that reference it are left out: the split is read from a copy without them
    (``<output_dir>/checked_data/<split>.<ext>``, ``task.checked_files``) and the count is returned. Returns
    {split: number of image references checked} and, when records were skipped, {"skipped": {split: {...}}}."""
    spec = get_spec(cfg.task)
    if not spec.multimodal:
        return {}
    kind = spec.reader_kind
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
    checked: dict[str, Any] = {}
    skipped: dict[str, Any] = {}
    for split in splits_in_use(task, cfg):
        paths = task.data_paths(split)
        read_from: list[str] = []
        kept = 0
        for index, path in enumerate(paths):
            ids = [str(ex["image_id"]) for ex in load_examples(path, kind)]
            missing_set = {i for i in ids if i not in store}
            missing = sorted(missing_set)
            if missing and not cfg.skip_bad:
                first = next(i for i in ids if i not in store)
                raise DataError(path, _line_of(path, first), "image_id",
                                f"{first!r} is not in the feature store {store.path}", "unknown_image",
                                hint="convert its features into the store, remove the record, or set skip_bad=true")
            kept += sum(1 for i in ids if i not in missing_set)
            if not missing:
                read_from.append(path)
                continue
            name = os.path.basename(path)
            part = f".{index}" if len(paths) > 1 else ""
            dst = os.path.join(task.output_dir, "checked_data",
                               f"{split}{part}{name[name.find('.'):] if '.' in name else ''}")
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            dropped = _without_records_of(path, set(missing), dst)
            if dropped == 0:  # the format names images elsewhere (official retrieval lines): cannot filter by line
                raise DataError(path, None, "image_id", f"{missing[0]!r} is not in the feature store {store.path}",
                                "unknown_image", hint="skip_bad cannot leave out records of this format; convert "
                                                      "the missing images' features into the store")
            read_from.append(dst)
            report = {"unknown_image_records": dropped, "unknown_images": len(missing), "file": path,
                      "read_from": dst, "first_missing": missing[:5]}
            key = split if len(paths) == 1 else f"{split}[{index}]"
            skipped[key] = report
            print(json.dumps({"skipped_bad_records": key, "unknown_image_records": dropped,
                              "unknown_images": len(missing), "read_from": dst}))
        if read_from != paths:
            task.checked_files[split] = read_from
        checked[split] = kept
    if skipped:
        checked["skipped"] = skipped
    return checked


# task class name -> (task model class, its head-size init kwarg, the run's head size)
_HEADS = {
    "ClassificationTask": ("UnimoForSequenceClassification", "num_labels", lambda task: task.num_labels),
    "VQATask": ("UnimoForVQA", "num_answers", lambda task: len(task.answers)),
}


def check_heads(task: Any, cfg: Any, config_path: str) -> dict[str, Any]:
    """The head this run builds against a task checkpoint of the same architecture given as ``init_checkpoint``
    (a 3-label MNLI head cannot start a 2-label SST-2 run: the checkpoint's head would be dropped silently), and, for
    classification, every label of every split used against the label list. Returns what was checked."""
    from ..model.configuration import CONFIG_NAME, UnimoConfig

    name = type(task).__name__
    if name not in _HEADS:
        return {}
    architecture, kwarg, size_of = _HEADS[name]
    size = int(size_of(task))
    checked: dict[str, Any] = {kwarg: size}
    init = cfg.init_checkpoint
    if init and os.path.isfile(os.path.join(init, CONFIG_NAME)):
        saved = UnimoConfig.from_pretrained(init).extra
        saved_size = (saved.get("init_kwargs") or {}).get(kwarg)
        if saved.get("architecture") == architecture and saved_size is not None and int(saved_size) != size:
            what = "labels" if kwarg == "num_labels" else "answers"
            raise ConfigError(f"the checkpoint {init} is a {architecture} with {saved_size} {what}, this run has "
                              f"{size}", file=config_path, field="init_checkpoint",
                              hint="start from the pre-trained backbone, or use the label list / answer vocabulary "
                                   "the checkpoint was trained with")
    if name == "ClassificationTask" and not task.regression:
        labels = set(task.labels)
        for split in splits_in_use(task, cfg):
            for path in task.data_paths(split):
                for n, ex in enumerate(load_examples(path, "classification"), start=1):
                    label = ex.get("label")
                    if label is not None and label != "" and str(label) not in labels:
                        raise DataError(path, None, "label", f"example {n}: {label!r} is not one of the run's "
                                        f"labels {task.labels}", "unknown_label",
                                        hint="set `labels` in the config or fix <train dir>/labels.json")
    return checked
