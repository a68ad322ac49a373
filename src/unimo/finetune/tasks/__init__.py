"""Task registry: ``task`` in a YAML selects the reader + head + metric."""
from __future__ import annotations

import importlib

_REGISTRY = {
    "classification": ("classification", "ClassificationTask"),
    "regression": ("classification", "ClassificationTask"),
    "visual_entailment": ("multimodal", "VisualEntailmentTask"),
    "vqa": ("multimodal", "VQATask"),
    "retrieval": ("multimodal", "RetrievalTask"),
    "seq2seq": ("generation", "Seq2SeqTask"),
    "dialog": ("generation", "Seq2SeqTask"),
    "img2txt": ("generation", "CaptionTask"),
    "img2txt_scst": ("scst", "ScstCaptionTask"),
}


def get_task_class(name: str):
    if name not in _REGISTRY:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    module, cls = _REGISTRY[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def register(name: str, module: str, cls: str) -> None:
    _REGISTRY[name] = (module, cls)
