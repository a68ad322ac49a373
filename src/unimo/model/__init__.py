"""Model package. ``UnimoConfig`` is light; the paddle modules load on first use (keeps CLIs and readers fast)."""
from .configuration import UnimoConfig

_MODELING = {"KVCache", "UnimoForGeneration", "UnimoForRetrieval", "UnimoForSequenceClassification",
             "UnimoForVisualEntailment", "UnimoForVQA", "UnimoLMHead", "UnimoModel", "UnimoPretrainedModel", "backbone_name_map",
             "OFFICIAL_NAMES", "UnimoOutput", "UnimoClassificationOutput", "UnimoVQAOutput", "UnimoRetrievalOutput",
             "UnimoGenerationOutput"}


def __getattr__(name: str):
    if name in _MODELING:
        from . import modeling

        return getattr(modeling, name)
    raise AttributeError(f"module 'unimo.model' has no attribute {name!r}")


__all__ = ["UnimoConfig", *sorted(_MODELING)]
