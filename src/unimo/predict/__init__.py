"""Inference for fine-tuned UNIMO task models: ``python -m unimo.predict caption|vqa|ve|retrieve ...`` and the
Python API (:class:`UnimoCaptioner`, :class:`UnimoVQA`, :class:`UnimoVisualEntailment`, :class:`UnimoRetriever`).

    from unimo.predict import UnimoCaptioner
    cap = UnimoCaptioner.from_pretrained("output/img2txt/coco/best", features="data/coco_features")
    print(cap.generate(["391895"]))
"""
from .api import (PREDICTORS, UnimoCaptioner, UnimoRetriever, UnimoVisualEntailment, UnimoVQA, load_answer_vocab,
                  load_task_model)
from .errors import ModelLoadError, PredictError, UnknownImageError
from .images import ImageFolderFeatures

__all__ = ["ImageFolderFeatures", "ModelLoadError", "PREDICTORS", "PredictError", "UnimoCaptioner", "UnimoRetriever",
           "UnimoVQA", "UnimoVisualEntailment", "UnknownImageError", "load_answer_vocab", "load_task_model"]
