from .configuration import UnimoConfig
from .modeling import (KVCache, UnimoForGeneration, UnimoForRetrieval, UnimoForSequenceClassification,
                       UnimoForVisualEntailment, UnimoLMHead, UnimoModel, UnimoPretrainedModel, backbone_name_map)

__all__ = ["UnimoConfig", "UnimoModel", "UnimoPretrainedModel", "UnimoLMHead", "UnimoForGeneration",
           "UnimoForSequenceClassification", "UnimoForVisualEntailment", "UnimoForRetrieval", "KVCache",
           "backbone_name_map"]
