"""UNIMO: unified-modal understanding and generation (Li et al., ACL 2021) in PaddlePaddle 3.x.

Importing the package prepares the CPU environment (MKL path, OpenMP threads) before paddle is loaded; the
heavy modules are imported lazily so ``unimo.tokenizer`` and CLIs stay light.
"""
from .utils.env import setup_cpu_env

setup_cpu_env()

from .tokenizer import UnimoTokenizer  # noqa: E402  (no paddle import)
from .model.configuration import UnimoConfig  # noqa: E402

__version__ = "0.1.0"

_LAZY = {"UnimoModel", "UnimoForGeneration", "UnimoForSequenceClassification", "UnimoForVisualEntailment",
         "UnimoForRetrieval", "UnimoLMHead", "KVCache"}


def __getattr__(name: str):
    if name in _LAZY:
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module 'unimo' has no attribute {name!r}")


__all__ = ["UnimoConfig", "UnimoTokenizer", "setup_cpu_env", *_LAZY]
