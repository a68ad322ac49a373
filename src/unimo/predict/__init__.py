"""Inference for fine-tuned UNIMO task models: ``python -m unimo.predict caption|vqa|ve|retrieve ...`` and the
Python API (:class:`UnimoCaptioner`, :class:`UnimoVQA`, :class:`UnimoVisualEntailment`, :class:`UnimoRetriever`).

    from unimo.predict import UnimoCaptioner
    cap = UnimoCaptioner.from_pretrained("output/img2txt/coco/best", features="data/coco_features")
    print(cap.generate(["391895"]))
"""
from __future__ import annotations

import importlib
from typing import Any

# names -> submodule, imported on first use: `python -m unimo.predict --help` must not import Paddle (its warnings)
_WHERE = {"PREDICTORS": "api", "UnimoCaptioner": "api", "UnimoRetriever": "api", "UnimoVisualEntailment": "api",
          "UnimoVQA": "api", "load_answer_vocab": "api", "load_task_model": "api", "ModelLoadError": "errors",
          "PredictError": "errors", "UnknownImageError": "errors", "ImageFolderFeatures": "images"}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
