"""Image region features: dump formats, the canonical feature store, and UNIMO's region post-processing.

Public names (import them from here): :class:`RegionFeatures`, :func:`read_features`, the writers
(:func:`write_butd_tsv`, :func:`write_lxmert_tsv`, :func:`write_uniter_npz_dir`, :func:`write_unimo_retrieval_tsv`,
:func:`write_unimo_img2txt`, :func:`write_unimo_ve`), :class:`FeatureStoreWriter`, :class:`FeatureStore`,
:class:`ImageInputs` and :func:`region_inputs`. No paddle / model import here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .feature_formats import (FORMATS, WRITERS, FeatureFormatError, RegionFeatures, atomic_text_file, b64_array,
                              read_features, write_butd_tsv, write_lxmert_tsv, write_unimo_img2txt,
                              write_unimo_retrieval_tsv, write_unimo_ve, write_uniter_npz_dir)
from .feature_store import FeatureStore, FeatureStoreWriter

GLOBAL_LOCATION = np.array([0.0, 0.0, 1.0, 1.0, 1.0], dtype=np.float32)


@dataclass
class ImageInputs:
    """Model-ready image rows for one image: row 0 is the global "[IMG]" region, rows 1.. the kept boxes."""

    features: np.ndarray   # [n+1, D] float32, row 0 = mean of the kept region features
    locations: np.ndarray  # [n+1, 5] float32, row 0 = [0, 0, 1, 1, 1]
    boxes: np.ndarray      # [n+1, 4] float32 pixel boxes, row 0 = [0, 0, W, H]
    cls_prob: np.ndarray | None  # [n+1, C] float32 (row 0 zeros), or None

    @property
    def num_regions(self) -> int:
        """Kept regions excluding the global row (0 = image without boxes: the official code masks it out)."""
        return int(self.features.shape[0]) - 1


def select_regions(regions: RegionFeatures, conf_threshold: float | None = None, min_boxes: int = 10,
                   max_boxes: int = 100, fixed_boxes: int | None = None) -> np.ndarray:
    """Indices of the boxes to keep, in output order.

    * ``fixed_boxes=k``: the ``k`` most confident boxes (the first ``k`` when no confidence is known).
    * ``conf_threshold=t``: BUTD's adaptive rule -- keep boxes with confidence ``>= t`` (``generate_tsv.py``
      uses ``>=``), but at least ``min_boxes`` and at most ``max_boxes`` (fewer only if the image has fewer);
      kept boxes are ordered by decreasing confidence. Needs ``obj_conf`` (or ``cls_prob`` to derive it).
    * neither: every box, in stored order (the official UNIMO readers).
    """
    n = regions.num_boxes
    if fixed_boxes is not None and conf_threshold is not None:
        raise ValueError("give either fixed_boxes or conf_threshold, not both")
    if fixed_boxes is None and conf_threshold is None:
        return np.arange(n)
    conf = regions.obj_conf
    if conf is None:
        predictions = regions.object_predictions()
        conf = None if predictions is None else predictions[1]
    if fixed_boxes is not None:
        if fixed_boxes < 0:
            raise ValueError(f"fixed_boxes must be >= 0, got {fixed_boxes}")
        k = min(int(fixed_boxes), n)
        return np.arange(k) if conf is None else np.argsort(-conf, kind="stable")[:k]
    if not 0 <= min_boxes <= max_boxes:
        raise ValueError(f"need 0 <= min_boxes <= max_boxes, got min_boxes={min_boxes}, max_boxes={max_boxes}")
    if conf is None:
        raise ValueError(f"image {regions.image_id!r}: conf_threshold needs detector confidences "
                         "(obj_conf or cls_prob), and this record has neither")
    keep = int((conf >= conf_threshold).sum())
    keep = min(max(keep, int(min_boxes)), int(max_boxes), n)
    return np.argsort(-conf, kind="stable")[:keep]


def region_inputs(regions: RegionFeatures, max_img_len: int = 101, conf_threshold: float | None = None,
                  min_boxes: int = 10, max_boxes: int = 100, fixed_boxes: int | None = None) -> ImageInputs:
    """The official UNIMO image rows (``img2txt_reader.py``): selection, 5-d locations, global row, truncation.

    Locations are ``[x1/W, y1/H, x2/W, y2/H, (x2-x1)(y2-y1)/(W*H)]`` (area from the pixel box, computed in
    float64 like the official numpy code, stored float32). The global row's feature is the mean of the kept
    region features (zeros for an image without boxes) and its location ``[0, 0, 1, 1, 1]``. Rows are then cut
    to ``max_img_len`` in total -- after the mean, as the official reader does (a no-op with <= 100 boxes and
    the default 101). See :func:`select_regions` for ``conf_threshold`` / ``min_boxes`` / ``max_boxes`` /
    ``fixed_boxes``.
    """
    if max_img_len < 1:
        raise ValueError(f"max_img_len must be >= 1, got {max_img_len}")
    w, h = regions.image_w, regions.image_h
    if w <= 0 or h <= 0:
        raise ValueError(f"image {regions.image_id!r}: image size {w}x{h} is not positive")
    idx = select_regions(regions, conf_threshold, min_boxes, max_boxes, fixed_boxes)
    feats = regions.features[idx]
    boxes = regions.boxes[idx]
    scale = np.array([w, h, w, h], dtype=np.float64)
    norm = boxes.astype(np.float64) / scale
    area = (boxes[:, 3].astype(np.float64) - boxes[:, 1]) * (boxes[:, 2].astype(np.float64) - boxes[:, 0]) / (w * h)
    locations = np.concatenate([GLOBAL_LOCATION[None, :], np.concatenate([norm, area[:, None]], axis=1)], axis=0)
    # np.mean over float32 rows: the same float32 pairwise sum the official reader gets.
    mean = feats.mean(axis=0) if len(idx) else np.zeros(regions.features.shape[1], dtype=np.float32)
    features = np.concatenate([mean[None, :].astype(np.float32), feats], axis=0)
    all_boxes = np.concatenate([np.array([[0, 0, w, h]], dtype=np.float32), boxes], axis=0)
    cls_prob = None
    if regions.cls_prob is not None:
        cls_prob = np.concatenate([np.zeros((1, regions.cls_prob.shape[1]), np.float32), regions.cls_prob[idx]], 0)
    keep = min(max_img_len, features.shape[0])
    return ImageInputs(
        features=np.ascontiguousarray(features[:keep], dtype=np.float32),
        locations=np.ascontiguousarray(locations[:keep], dtype=np.float32),
        boxes=np.ascontiguousarray(all_boxes[:keep], dtype=np.float32),
        cls_prob=None if cls_prob is None else np.ascontiguousarray(cls_prob[:keep], dtype=np.float32),
    )


__all__ = [
    "FORMATS", "WRITERS", "FeatureFormatError", "RegionFeatures", "read_features", "write_butd_tsv",
    "write_lxmert_tsv", "write_uniter_npz_dir", "write_unimo_retrieval_tsv", "write_unimo_img2txt", "write_unimo_ve",
    "atomic_text_file", "b64_array", "FeatureStoreWriter", "FeatureStore", "ImageInputs", "select_regions",
    "region_inputs", "GLOBAL_LOCATION",
]
