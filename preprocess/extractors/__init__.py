"""Region-feature extractor backends (``python -m preprocess.extract_features --backend NAME``).

Built in: ``classic`` (OpenCV proposals + hand-made descriptors, no weights) and ``grid`` (a paddle.vision ResNet
feature map pooled over a grid of cells). A new backend is one :class:`RegionExtractor` subclass decorated with
:func:`register_backend`; import its module here (or before calling :func:`create_extractor`).
"""
from __future__ import annotations

from .base import Extraction, ExtractorError, RegionExtractor, box_iou, nms, register_backend, registered_backends
from . import classic as _classic  # noqa: F401  (registers "classic")
from . import grid as _grid  # noqa: F401  (registers "grid"; paddle is imported only when it runs)


def available_backends() -> list[str]:
    return sorted(registered_backends())


def create_extractor(name: str, **options) -> RegionExtractor:
    """Instantiate backend ``name`` with CLI-style options (feature_dim, max_boxes, min_boxes, weights, ...)."""
    backends = registered_backends()
    if name not in backends:
        raise ExtractorError(f"unknown extractor backend {name!r}; available: {', '.join(sorted(backends))}")
    return backends[name](**options)


__all__ = ["Extraction", "ExtractorError", "RegionExtractor", "available_backends", "box_iou", "create_extractor",
           "nms", "register_backend"]
