"""Which model a checkpoint is for, and what to do with each variable name.

The official-name <-> state-dict correspondence itself lives only in ``unimo.model.modeling`` (``OFFICIAL_NAMES``,
``backbone_name_map`` and each model's ``official_name_map()``); this module picks the model class and classifies
the names that the chosen model does not use.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from ..model.configuration import UnimoConfig
from ..registry import converter_heads

TASKS = converter_heads()  # the model a converted checkpoint is built as (unimo.registry's head names)

# Persistables that are not weights: each is reported with the pattern that matched it, never dropped silently.
IGNORE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("*_moment1_0", "Adam/AdamW/Lamb first moment"),
    ("*_moment2_0", "Adam/AdamW/Lamb second moment"),
    ("*_beta1_pow_acc_0", "Adam beta1 power accumulator"),
    ("*_beta2_pow_acc_0", "Adam beta2 power accumulator"),
    ("*_velocity_0", "Momentum optimizer velocity"),
    ("*_moment_0", "Adagrad/RMSProp moment"),
    ("*_mean_square_0", "RMSProp mean square"),
    ("@LR_DECAY_COUNTER@", "learning-rate schedule step counter"),
    ("learning_rate_*", "learning-rate variable"),
    ("scheduled_learning_rate*", "learning-rate schedule output"),
    ("loss_scaling_*", "fp16 dynamic loss scale"),
    ("num_good_steps_*", "fp16 dynamic loss-scaling counter"),
    ("num_bad_steps_*", "fp16 dynamic loss-scaling counter"),
    ("duplicated_trigram_blocking_*", "decode-time trigram-blocking helper (not a weight)"),
)

# Official names of every head, for telling "a known variable the chosen model has no place for" from an unknown.
_HEAD_PATTERNS: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"mask_lm_.*"), "generation"),
    (re.compile(r"cls_out_(\d+)_[wb]"), "classification"),
    (re.compile(r"cls_out_[wb]_[01]"), "ve"),
    (re.compile(r"match_fc\.[wb]_0"), "retrieval"),
    (re.compile(r"vqa_(fc_[01]\.[wb]_0|layer_norm_(scale|bias))"), "vqa"),
    (re.compile(r"pooled_fc_(text|image)\.[wb]_0"), "pooler"),
    (re.compile(r"(role|turn)_embedding"), "dialog"),
)


# The backbone: a checkpoint must carry all of it (``unimo.convert legacy`` refuses one that lacks a tensor, unless
# --allow-missing). The text encoder always; the image input layers (created by the official code only for image
# tasks) when the chosen model reads images, and never only partly. Everything else (LM head, poolers, task heads,
# role/turn embeddings) is a head and may be freshly initialised (listed in the report).
_TEXT_ENCODER = re.compile(r"word_embedding|pos_embedding|pre_encoder_layer_norm_(scale|bias)|encoder_layer_\d+_.+")
_IMAGE_INPUT = re.compile(r"(image_emb|image_loc)\.[wb]_0|v_pre_encoder_layer_norm_(scale|bias)")


def backbone_part(name: str) -> Optional[str]:
    """"text" (text encoder), "image" (image input layers) or None (a head) for an official variable name."""
    if _TEXT_ENCODER.fullmatch(name):
        return "text"
    if _IMAGE_INPUT.fullmatch(name):
        return "image"
    return None


def reads_images(task: str) -> bool:
    """Whether every fine-tuning task served by converter head ``task`` reads image features (then the image input
    layers are part of the backbone a checkpoint must carry)."""
    from ..registry import get_spec, task_names

    specs = [get_spec(n) for n in task_names() if get_spec(n).head == task]
    return bool(specs) and all(spec.multimodal for spec in specs)


def ignore_pattern(name: str) -> Optional[tuple[str, str]]:
    """(pattern, reason) of the first ignore pattern that ``name`` matches, or None."""
    for pattern, reason in IGNORE_PATTERNS:
        if fnmatch.fnmatchcase(name, pattern):
            return pattern, reason
    return None


def head_of(name: str) -> Optional[str]:
    """The task whose head owns the official variable ``name`` (None for backbone or unknown names)."""
    for pattern, task in _HEAD_PATTERNS:
        if pattern.fullmatch(name):
            return task
    return None


@dataclass
class TaskChoice:
    task: str
    num_labels: Optional[int]
    reason: str


def classification_label_counts(names: Iterable[str]) -> list[int]:
    counts = set()
    for name in names:
        m = re.fullmatch(r"cls_out_(\d+)_w", name)
        if m:
            counts.add(int(m.group(1)))
    return sorted(counts)


def detect_task(names: Iterable[str], shapes: Optional[dict[str, tuple[int, ...]]] = None) -> TaskChoice:
    """Pick the model for a checkpoint from the variable names it holds.

    A fine-tuned head (VE ``cls_out_w_*``, retrieval ``match_fc``, classifier ``cls_out_{N}_w``, our VQA
    ``vqa_fc_*``) wins over the LM
    head, which pre-trained and fine-tuned dirs both carry; several different fine-tuned heads are ambiguous.
    ``cls_out_1_*`` (one output) is the regression head of the official code.
    """
    names = set(names)
    shapes = shapes or {}
    found: list[TaskChoice] = []
    if {"cls_out_w_0", "cls_out_w_1"} <= names:
        n = shapes.get("cls_out_w_1", (None, None))[-1]
        found.append(TaskChoice("ve", n, "cls_out_w_0/cls_out_w_1 present"))
    if "match_fc.w_0" in names:
        found.append(TaskChoice("retrieval", None, "match_fc.w_0 present"))
    if "vqa_fc_1.w_0" in names:  # our VQA head (no official release has one)
        found.append(TaskChoice("vqa", shapes.get("vqa_fc_1.w_0", (None, None))[-1], "vqa_fc_1.w_0 present"))
    for n in classification_label_counts(names):
        task = "regression" if n == 1 else "classification"
        found.append(TaskChoice(task, n, f"cls_out_{n}_w present"))
    if len(found) > 1:
        raise ValueError("checkpoint holds several task heads (" + "; ".join(c.reason for c in found)
                         + "): choose one with --task (and --num-labels)")
    if found:
        return found[0]
    if any(n.startswith("mask_lm_") for n in names):
        return TaskChoice("generation", None, "mask_lm_* present")
    return TaskChoice("backbone", None, "no head variables present")


def model_class_and_kwargs(task: str, num_labels: Optional[int], names: Iterable[str],
                           shapes: dict[str, tuple[int, ...]]) -> tuple[type, dict[str, Any]]:
    """The model class for ``task`` and its constructor arguments, filling the label count from the checkpoint
    when the user did not give one."""
    from ..model import modeling as m

    names = set(names)
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    if num_labels is not None and (not isinstance(num_labels, int) or num_labels < 1):
        raise ValueError(f"--num-labels must be a positive integer, got {num_labels!r}")
    if task == "backbone":
        return m.UnimoModel, {}
    if task == "generation":
        return m.UnimoForGeneration, {}
    if task == "retrieval":
        return m.UnimoForRetrieval, {}
    if task == "vqa":
        if num_labels is None and "vqa_fc_1.w_0" in shapes:
            num_labels = int(shapes["vqa_fc_1.w_0"][-1])
        return m.UnimoForVQA, ({} if num_labels is None else {"num_answers": num_labels})
    if task == "regression":
        if num_labels not in (None, 1):
            raise ValueError(f"regression has one output (cls_out_1_w); got --num-labels {num_labels}")
        return m.UnimoForSequenceClassification, {"num_labels": 1}
    if task == "classification":
        if num_labels is None:
            counts = [n for n in classification_label_counts(names) if n != 1] or classification_label_counts(names)
            if len(counts) != 1:
                raise ValueError("classification needs --num-labels: the checkpoint holds "
                                 + (f"cls_out_N_w for N in {counts}" if counts else "no cls_out_N_w head"))
            num_labels = counts[0]
        return m.UnimoForSequenceClassification, {"num_labels": num_labels}
    # visual entailment: label count and hidden width from the checkpoint's head when present
    kwargs: dict[str, Any] = {}
    if "cls_out_w_0" in shapes:
        kwargs["hidden"] = int(shapes["cls_out_w_0"][-1])
    if num_labels is not None:
        kwargs["num_labels"] = num_labels
    elif "cls_out_w_1" in shapes:
        kwargs["num_labels"] = int(shapes["cls_out_w_1"][-1])
    return m.UnimoForVisualEntailment, kwargs


def adjust_config_for_checkpoint(config: UnimoConfig, shapes: dict[str, tuple[int, ...]]) -> tuple[UnimoConfig,
                                                                                                    list[str]]:
    """CoQA checkpoints carry role/turn embeddings that the JSON configs do not declare: size them from the
    checkpoint (a note says so) rather than dropping them."""
    notes = []
    overrides = {}
    for name, fld in (("role_embedding", "role_type_size"), ("turn_embedding", "turn_type_size")):
        if name in shapes and not getattr(config, fld):
            overrides[fld] = int(shapes[name][0])
            notes.append(f"config.{fld} set to {overrides[fld]} from the shape of {name} {list(shapes[name])}")
    return (config.copy(**overrides) if overrides else config), notes
