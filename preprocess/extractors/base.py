"""Backend interface and registry for region-feature extractors.

A backend turns one BGR image (as OpenCV reads it) into regions: boxes in pixels (x1, y1, x2, y2), one feature
vector per box, and optionally class probabilities and an objectness confidence. Adding a detector (a Faster R-CNN
port, a PaddleDetection model, ...) means writing one class::

    @register_backend("frcnn")
    class FrcnnExtractor(RegionExtractor):
        def __init__(self, feature_dim=2048, max_boxes=36, min_boxes=10, weights=None, **kw): ...
        def extract(self, image_bgr): return Extraction(boxes, features, cls_prob, obj_conf)

and the CLI (``python -m preprocess.extract_features --backend frcnn``) picks it up.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, TypeVar

import numpy as np


class ExtractorError(RuntimeError):
    """A backend cannot run as configured (missing weights, bad option values, ...)."""


@dataclass
class Extraction:
    """Regions of one image. ``boxes`` [N,4] float32 pixels x1y1x2y2; ``features`` [N,D] float32."""

    boxes: np.ndarray
    features: np.ndarray
    cls_prob: np.ndarray | None = None  # [N, C] rows summing to 1, when the backend has a classifier
    obj_conf: np.ndarray | None = None  # [N] objectness / detection confidence in [0, 1]

    def __post_init__(self) -> None:
        n = self.boxes.shape[0]
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"boxes must be [N,4], got {self.boxes.shape}")
        if self.features.ndim != 2 or self.features.shape[0] != n:
            raise ValueError(f"features must be [{n},D], got {self.features.shape}")
        for name in ("cls_prob", "obj_conf"):
            value = getattr(self, name)
            if value is not None and value.shape[0] != n:
                raise ValueError(f"{name} has {value.shape[0]} rows for {n} boxes")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


class RegionExtractor(ABC):
    """Base class of all backends. Subclasses set ``name`` (via the decorator) and implement :meth:`extract`."""

    name: str = "?"
    feature_dim: int
    num_classes: int | None = None  # width of cls_prob when the backend has a classifier

    @abstractmethod
    def extract(self, image_bgr: np.ndarray) -> Extraction:
        """Regions of one HxWx3 uint8 BGR image."""

    def describe(self) -> dict:
        """Settings that identify the features (goes into the JSON summary)."""
        return {"backend": self.name, "feature_dim": self.feature_dim}


_REGISTRY: dict[str, type[RegionExtractor]] = {}
T = TypeVar("T", bound=type[RegionExtractor])


def register_backend(name: str) -> Callable[[T], T]:
    """Class decorator adding a backend under ``name``."""

    def deco(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"extractor backend {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def registered_backends() -> dict[str, type[RegionExtractor]]:
    return dict(_REGISTRY)


# ---------------------------------------------------------------------------------------------------------------
# Box utilities shared by the backends
# ---------------------------------------------------------------------------------------------------------------

from unimo.utils.boxes import box_iou  # noqa: E402  (one IoU for the project)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices by decreasing score (ties keep the earlier box)."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    if len(order) == 0:
        return order
    iou = box_iou(boxes, boxes)
    keep: list[int] = []
    suppressed = np.zeros(len(order), dtype=bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= iou[i] > iou_threshold
    return np.asarray(keep, dtype=np.int64)
