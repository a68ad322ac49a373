"""Padded image batches from a feature store: the image half of every multi-modal reader.

Rows per image come from :func:`unimo.reader.features.region_inputs` (global [IMG] row first). Padding rows have
zero features/locations and validity 0; an image without boxes keeps only its global row, which the official
code masks out entirely (``batching.py``: "an image with 0 boxes gets an all-zero image mask") -- we do the same.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from .features import FeatureStore, ImageInputs, region_inputs


class ImageBatcher:
    """``batch(image_ids)`` -> dict of ``image_features`` [B,Nv,D], ``image_locations`` [B,Nv,5],
    ``image_valid`` [B,Nv] (and ``image_boxes``, ``image_cls_prob`` on request). Keeps a small LRU cache."""

    def __init__(self, store: FeatureStore | str, max_img_len: int = 101, conf_threshold: float | None = None,
                 min_boxes: int = 10, max_boxes: int = 100, fixed_boxes: int | None = None, cache_size: int = 4096):
        self.store = FeatureStore.open(store) if isinstance(store, str) else store
        self.kwargs: dict[str, Any] = dict(max_img_len=max_img_len, conf_threshold=conf_threshold,
                                           min_boxes=min_boxes, max_boxes=max_boxes, fixed_boxes=fixed_boxes)
        self.cache: OrderedDict[str, ImageInputs] = OrderedDict()
        self.cache_size = cache_size

    def __getstate__(self) -> dict:  # DataLoader workers re-open the memory maps themselves
        state = dict(self.__dict__)
        state["cache"] = OrderedDict()
        return state

    def inputs(self, image_id: str) -> ImageInputs:
        image_id = str(image_id)
        hit = self.cache.get(image_id)
        if hit is not None:
            self.cache.move_to_end(image_id)
            return hit
        if image_id not in self.store:
            raise KeyError(f"image id {image_id!r} is not in the feature store {self.store}")
        value = region_inputs(self.store[image_id], **self.kwargs)
        self.cache[image_id] = value
        if len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return value

    def batch(self, image_ids: Sequence[str], with_boxes: bool = False, with_cls_prob: bool = False
              ) -> dict[str, np.ndarray]:
        items = [self.inputs(i) for i in image_ids]
        return stack_images(items, with_boxes=with_boxes, with_cls_prob=with_cls_prob)


def stack_images(items: Sequence[ImageInputs], with_boxes: bool = False, with_cls_prob: bool = False
                 ) -> dict[str, np.ndarray]:
    n = max(x.features.shape[0] for x in items)
    d = items[0].features.shape[1]
    b = len(items)
    feats = np.zeros((b, n, d), np.float32)
    locs = np.zeros((b, n, 5), np.float32)
    valid = np.zeros((b, n), np.float32)
    boxes = np.zeros((b, n, 4), np.float32) if with_boxes else None
    probs = None
    if with_cls_prob:
        c = next((x.cls_prob.shape[1] for x in items if x.cls_prob is not None), 0)
        probs = np.zeros((b, n, c), np.float32)
    for i, x in enumerate(items):
        k = x.features.shape[0]
        feats[i, :k], locs[i, :k] = x.features, x.locations
        valid[i, :k] = 1.0 if x.num_regions > 0 else 0.0
        if boxes is not None:
            boxes[i, :k] = x.boxes
        if probs is not None and x.cls_prob is not None:
            probs[i, :k] = x.cls_prob
    out = {"image_features": feats, "image_locations": locs, "image_valid": valid}
    if boxes is not None:
        out["image_boxes"] = boxes
    if probs is not None:
        out["image_cls_prob"] = probs
    return out
