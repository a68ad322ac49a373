"""The one registry of fine-tuning tasks: the ``task:`` name of a run YAML and everything else that is named after it -
the task class (reader + head + metric), the example kind of ``unimo.reader.datasets``, the head name of the
checkpoint converter (``unimo.convert --task``), the task model class, whether it has image input, and the
``unimo.predict`` command that serves it. Fine-tuning, the data checks, VILLA, the converter and predict read it."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Optional


@dataclass(frozen=True)
class TaskSpec:
    name: str  # `task:` in a run YAML; results.json "task"
    module: str  # unimo.finetune.tasks.<module>
    task_class: str
    reader_kind: str  # unimo.reader.datasets task kind of its data files
    head: str  # unimo.convert head name (--task of `unimo.convert legacy`)
    model_class: str  # unimo.model.modeling class
    multimodal: bool  # reads image features (VILLA applies)
    predict_command: Optional[str] = None  # `python -m unimo.predict <command>`


_TASKS: dict[str, TaskSpec] = {}


def register(spec: TaskSpec) -> None:
    _TASKS[spec.name] = spec


for _spec in (
    TaskSpec("classification", "classification", "ClassificationTask", "classification", "classification",
             "UnimoForSequenceClassification", False),
    TaskSpec("regression", "classification", "ClassificationTask", "regression", "regression",
             "UnimoForSequenceClassification", False),
    TaskSpec("visual_entailment", "multimodal", "VisualEntailmentTask", "ve", "ve", "UnimoForVisualEntailment", True,
             "ve"),
    TaskSpec("vqa", "multimodal", "VQATask", "vqa", "vqa", "UnimoForVQA", True, "vqa"),
    TaskSpec("retrieval", "multimodal", "RetrievalTask", "retrieval", "retrieval", "UnimoForRetrieval", True,
             "retrieve"),
    TaskSpec("seq2seq", "generation", "Seq2SeqTask", "seq2seq", "generation", "UnimoForGeneration", False),
    TaskSpec("dialog", "generation", "Seq2SeqTask", "dialog", "generation", "UnimoForGeneration", False),
    TaskSpec("img2txt", "generation", "CaptionTask", "caption", "generation", "UnimoForGeneration", True, "caption"),
    TaskSpec("img2txt_scst", "scst", "ScstCaptionTask", "caption", "generation", "UnimoForGeneration", True),
):
    register(_spec)


def task_names() -> list[str]:
    return sorted(_TASKS)


def get_spec(name: str) -> TaskSpec:
    if name not in _TASKS:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(task_names())}")
    return _TASKS[name]


def get_task_class(name: str) -> Any:
    spec = get_spec(name)
    return getattr(importlib.import_module(f"unimo.finetune.tasks.{spec.module}"), spec.task_class)


def text_only_tasks() -> tuple[str, ...]:
    return tuple(n for n in task_names() if not _TASKS[n].multimodal)


def converter_heads() -> tuple[str, ...]:
    """Head names the converter builds: the backbone alone, then each task head once (registry order)."""
    heads = ["backbone"]
    for spec in _TASKS.values():
        if spec.head not in heads:
            heads.append(spec.head)
    return tuple(heads)
