"""``classic`` backend: region proposals and descriptors computed from the pixels with OpenCV, no weights.

It stands in for the bottom-up-attention detector where no detector is available (tests, the demo world, a first
run on a laptop). It is not a recogniser: features describe colour, shape, size, position and texture of each
region, so a model trained on them can learn what those properties look like.

Proposals (on the image scaled to at most ``work_size`` pixels on its longer side):
  1. foreground components: Lab distance to the border's median colour, Otsu threshold, connected components;
  2. colour components: two hue quantisations (12 bins, offset by half a bin, so one colour never falls on a bin
     edge in both) for saturated pixels plus 4 brightness bins for grey pixels, connected components of each;
  3. edge contours: Canny, dilation, external contours;
  4. unions of pairs of nearby object proposals (groups, like the multi-object boxes a detector also returns);
  5. fillers: whole image, 2x2 and 3x3 grids (only used to reach ``min_boxes``).
Each proposal is scored by the Lab contrast between the box and a ring around it (``obj_conf``); boxes are
de-duplicated by NMS and selected like BUTD: those scoring at least ``conf_thresh``, clamped to
[min_boxes, max_boxes] by score.

Descriptor per box (152 raw values, all roughly unit scale):
  colour (26): foreground mean/std Lab, mean saturation/value, saturation-weighted 12-bin hue histogram, circular
  mean hue, background mean Lab, foreground fraction; the foreground is the box's pixels far (Otsu) from the
  median colour of the box's own border;
  shape (83): foreground mask resized to 8x8, log Hu moments, extent, solidity, circularity, log aspect ratio,
  polygon vertex count (approxPolyDP, one-hot 3..10+);
  geometry (9): normalised x1, y1, x2, y2, w, h, sqrt(area), centre x, centre y;
  texture (34): magnitude-weighted 8-bin gradient orientation histograms in 2x2 cells, edge strength, grey std.
Each value is centred on its calibrated mean (``CALIBRATED_CENTER``), each group scaled by
``GROUP_WEIGHTS / sqrt(group size)``, then mapped linearly to ``feature_dim`` by a fixed Gaussian random projection.
The features are signed and about zero-mean, unlike a CNN's non-negative pool features, on purpose: with the former
design (projection + random bias + ReLU) 58% of a feature vector's squared norm was an offset shared by every region,
and a small UNIMO trained from scratch on the demo world ignored the image entirely (VQA/VE accuracy identical with
the true and with shuffled images); centred features let it ground from the first epochs (tests/test_multimodal_e2e.py
checks exactly that). The projection is
drawn from ``numpy.random.default_rng(CLASSIC_PROJECTION_SEED)``, so the same image and feature_dim give
bit-identical features run after run (across CPUs the projection's float32 matmul may differ in the last bits).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .base import Extraction, ExtractorError, RegionExtractor, box_iou, nms, register_backend

CLASSIC_PROJECTION_SEED = 20210801  # seed of the random projection (documented: changing it changes all features)
GROUP_SIZES = {"colour": 26, "shape": 83, "geometry": 9, "texture": 34}
GROUP_WEIGHTS = {"colour": 1.5, "shape": 1.5, "geometry": 1.0, "texture": 0.7}
RAW_DIM = sum(GROUP_SIZES.values())  # 152
_MIN_CONTRAST = 14.0  # Lab (8-bit scale) distance below which pixels count as background noise

_PROJECTIONS: dict[int, np.ndarray] = {}


def _projection(feature_dim: int) -> np.ndarray:
    """W [RAW_DIM, D] for the given output width; cached per process."""
    if feature_dim not in _PROJECTIONS:
        rng = np.random.default_rng(CLASSIC_PROJECTION_SEED)
        _PROJECTIONS[feature_dim] = rng.standard_normal((RAW_DIM, feature_dim)).astype(np.float32)
    return _PROJECTIONS[feature_dim]


# Mean of each raw descriptor value over 900 regions of 80 rendered demo-world scenes (rounded). Centring on measured
# means rather than on nominal ones (0.5, 1/bins) removes most of the offset all regions share (see the docstring).
CALIBRATED_CENTER = np.array([
    0.59, 0.58, 0.56, 0.22, 0.19, 0.25, 0.67, 0.81, 0.78, 0.52, 0.50, 0.15, 0.19, 0.00, 0.00,
    0.07, 0.00, 0.00, 0.14, 0.00, 0.08, 0.00, 0.03, 0.25, 0.02, 0.34, 0.15, 0.21, 0.25, 0.30,
    0.31, 0.28, 0.24, 0.17, 0.23, 0.32, 0.35, 0.41, 0.43, 0.38, 0.35, 0.25, 0.27, 0.37, 0.41,
    0.44, 0.44, 0.42, 0.38, 0.29, 0.29, 0.41, 0.43, 0.42, 0.42, 0.44, 0.42, 0.31, 0.25, 0.40,
    0.42, 0.41, 0.41, 0.43, 0.42, 0.28, 0.24, 0.38, 0.43, 0.43, 0.44, 0.43, 0.40, 0.26, 0.24,
    0.36, 0.41, 0.43, 0.45, 0.42, 0.37, 0.25, 0.19, 0.25, 0.29, 0.30, 0.30, 0.29, 0.25, 0.20,
    -0.04, -0.20, -0.23, -0.33, -0.10, 0.01, 0.06, 0.34, 0.76, 0.53, 0.00, 0.14, 0.33, 0.09, 0.14,
    0.08, 0.04, 0.03, 0.05, 0.32, 0.31, 0.68, 0.66, 0.36, 0.35, 0.34, 0.50, 0.48, 0.05, 0.04,
    0.02, 0.04, 0.03, 0.02, 0.02, 0.02, 0.03, 0.02, 0.02, 0.03, 0.04, 0.02, 0.04, 0.04, 0.04,
    0.03, 0.02, 0.03, 0.05, 0.03, 0.03, 0.03, 0.04, 0.03, 0.03, 0.04, 0.04, 0.02, 0.02, 0.03,
    0.30, 0.52], dtype=np.float32)


def _group_scale() -> np.ndarray:
    """Per-value weight ``GROUP_WEIGHTS[group] / sqrt(group size)``: every group contributes by its weight."""
    scale = np.empty(RAW_DIM, dtype=np.float32)
    start = 0
    for group, size in GROUP_SIZES.items():
        scale[start:start + size] = GROUP_WEIGHTS[group] / math.sqrt(size)
        start += size
    return scale


_CENTER, _SCALE = CALIBRATED_CENTER, _group_scale()


def _otsu(values: np.ndarray, floor: float) -> float:
    """Otsu threshold of non-negative distances (8-bit histogram), never below ``floor``."""
    v8 = np.clip(values, 0, 255).astype(np.uint8).reshape(-1, 1)
    t, _ = cv2.threshold(v8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return max(float(t), floor)


@register_backend("classic")
class ClassicExtractor(RegionExtractor):
    """Weight-free OpenCV proposals + hand-made descriptors (see the module docstring)."""

    def __init__(self, feature_dim: int = 2048, max_boxes: int = 36, min_boxes: int = 10,
                 conf_thresh: float = 0.2, nms_iou: float = 0.6, work_size: int = 320,
                 min_area_frac: float = 0.002, **unused) -> None:
        if feature_dim < 1:
            raise ExtractorError(f"feature_dim must be >= 1, got {feature_dim}")
        if not 1 <= min_boxes <= max_boxes:
            raise ExtractorError(f"need 1 <= min_boxes <= max_boxes, got min_boxes={min_boxes} max_boxes={max_boxes}")
        if not 0.0 < nms_iou <= 1.0:
            raise ExtractorError(f"nms_iou must be in (0, 1], got {nms_iou}")
        if work_size < 32:
            raise ExtractorError(f"work_size must be >= 32, got {work_size}")
        self.feature_dim = int(feature_dim)
        self.max_boxes = int(max_boxes)
        self.min_boxes = int(min_boxes)
        self.conf_thresh = float(conf_thresh)
        self.nms_iou = float(nms_iou)
        self.work_size = int(work_size)
        self.min_area_frac = float(min_area_frac)

    def describe(self) -> dict:
        return {**super().describe(), "max_boxes": self.max_boxes, "min_boxes": self.min_boxes,
                "conf_thresh": self.conf_thresh, "projection_seed": CLASSIC_PROJECTION_SEED}

    # ------------------------------------------------------------------ public
    def extract(self, image_bgr: np.ndarray) -> Extraction:
        img = _check_image(image_bgr)
        h0, w0 = img.shape[:2]
        factor = min(1.0, self.work_size / max(h0, w0))
        if factor < 1.0:
            img = cv2.resize(img, (max(1, round(w0 * factor)), max(1, round(h0 * factor))),
                             interpolation=cv2.INTER_AREA)
        ctx = _ImageContext(img)
        boxes, scores = self._select(ctx)
        raw = _describe_all(ctx, boxes)
        features = self.project(raw)
        out_boxes = boxes.astype(np.float32)
        if factor < 1.0:
            out_boxes[:, [0, 2]] *= w0 / ctx.w
            out_boxes[:, [1, 3]] *= h0 / ctx.h
        out_boxes[:, [0, 2]] = np.clip(out_boxes[:, [0, 2]], 0, w0)
        out_boxes[:, [1, 3]] = np.clip(out_boxes[:, [1, 3]], 0, h0)
        return Extraction(out_boxes, features, None, scores.astype(np.float32))

    def project(self, raw: np.ndarray) -> np.ndarray:
        """Raw [N, RAW_DIM] descriptors -> [N, feature_dim] features (centre, weight, project linearly)."""
        return (((raw - _CENTER) * _SCALE) @ _projection(self.feature_dim)).astype(np.float32)

    def raw_descriptors(self, image_bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Raw descriptors of given boxes (pixels of ``image_bgr``); for analysis and tests."""
        ctx = _ImageContext(_check_image(image_bgr))
        return _describe_all(ctx, np.asarray(boxes, dtype=np.float64))

    # ------------------------------------------------------------------ proposals
    def _select(self, ctx: "_ImageContext") -> tuple[np.ndarray, np.ndarray]:
        min_area = max(12, int(self.min_area_frac * ctx.h * ctx.w))
        cands = _foreground_components(ctx, min_area) + _colour_components(ctx, min_area) \
            + _edge_contours(ctx, min_area)
        obj = np.asarray(cands, dtype=np.float64).reshape(-1, 4)
        obj = obj[(obj[:, 2] - obj[:, 0] >= 3) & (obj[:, 3] - obj[:, 1] >= 3)]
        obj_scores = ctx.contrast_scores(obj)
        keep = nms(obj, obj_scores, self.nms_iou)
        obj, obj_scores = obj[keep], obj_scores[keep]
        groups, group_scores = _unions(obj, obj_scores, ctx, limit=max(0, self.max_boxes - len(obj)))
        fill = _fillers(ctx.w, ctx.h)
        fill_scores = np.linspace(0.1, 0.05, len(fill))  # low, ordered: whole image first
        boxes = np.concatenate([obj, groups, fill])
        scores = np.concatenate([obj_scores, group_scores, fill_scores])
        keep = nms(boxes, scores, self.nms_iou)
        boxes, scores = boxes[keep], scores[keep]
        n_conf = int((scores >= self.conf_thresh).sum())
        n = min(max(n_conf, self.min_boxes), self.max_boxes, len(boxes))
        if n < self.min_boxes:  # tiny images: repeat the whole-image box rather than return too few regions
            pad = self.min_boxes - n
            boxes = np.concatenate([boxes[:n], np.repeat(fill[:1], pad, axis=0)])
            scores = np.concatenate([scores[:n], np.full(pad, 0.1)])
            return boxes, scores
        return boxes[:n], scores[:n]


def _check_image(image_bgr: np.ndarray) -> np.ndarray:
    if not isinstance(image_bgr, np.ndarray) or image_bgr.dtype != np.uint8:
        raise ValueError("image must be a uint8 numpy array (as cv2.imread returns)")
    if image_bgr.ndim == 2:
        image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
    elif image_bgr.ndim == 3 and image_bgr.shape[2] == 4:
        image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_BGRA2BGR)
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"image must be HxWx3 BGR, got shape {image_bgr.shape}")
    if min(image_bgr.shape[:2]) < 4:
        raise ValueError(f"image too small for region extraction: {image_bgr.shape[1]}x{image_bgr.shape[0]}")
    return np.ascontiguousarray(image_bgr)


class _ImageContext:
    """Per-image arrays shared by proposals and descriptors (computed once)."""

    def __init__(self, img: np.ndarray) -> None:
        self.img = img
        self.h, self.w = img.shape[:2]
        self.lab = cv2.cvtColor(img, cv2.COLOR_BGR2LAB).astype(np.float32)
        self.hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        self.gray = gray.astype(np.float32)
        self.edges = cv2.Canny(gray, 50, 150)
        # hue statistics as float images so cv2.mean(mask=...) gives them per region in C:
        # channel 0..2 = s*cos(h), s*sin(h), s ; channel 3 = v (all in [0, 1])
        hue = self.hsv[:, :, 0].astype(np.float32) * (2.0 * np.pi / 180.0)
        sat = self.hsv[:, :, 1].astype(np.float32) / 255.0
        self.hue_stats = cv2.merge([sat * np.cos(hue), sat * np.sin(hue), sat,
                                    self.hsv[:, :, 2].astype(np.float32) / 255.0])
        self.hue_bin = (self.hsv[:, :, 0].astype(np.int64) * 12 // 180).clip(0, 11)
        self.sat = sat
        # integral images: Lab (contrast scores), gradient magnitude per orientation bin (texture), grey moments
        self._lab_int = cv2.integral(self.lab)  # [h+1, w+1, 3] float64
        gx = cv2.Sobel(self.gray, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(self.gray, cv2.CV_32F, 0, 1, ksize=3)
        mag, ang = cv2.cartToPolar(gx, gy)
        grad_bin = np.minimum((ang % np.pi) * (8.0 / np.pi), 7).astype(np.int64)  # unsigned, 8 bins
        planes = [np.where(grad_bin == k, mag, 0.0).astype(np.float32) for k in range(8)]
        planes += [self.gray, self.gray * self.gray]
        # cv2.integral takes at most 4 channels: three calls, stacked to [h+1, w+1, 10] float64
        self._tex_int = np.concatenate([cv2.integral(cv2.merge(planes[i:i + 4]), sdepth=cv2.CV_64F)
                                        .reshape(self.h + 1, self.w + 1, -1) for i in (0, 4, 8)], axis=2)

    def box_sum(self, x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray) -> np.ndarray:
        s = self._lab_int
        return s[y2, x2] - s[y1, x2] - s[y2, x1] + s[y1, x1]

    def contrast_scores(self, boxes: np.ndarray) -> np.ndarray:
        """Objectness in [0, 1): Lab distance between a box's mean colour and the ring around it."""
        if len(boxes) == 0:
            return np.zeros(0)
        b = np.round(boxes).astype(np.int64)
        x1, y1 = np.clip(b[:, 0], 0, self.w), np.clip(b[:, 1], 0, self.h)
        x2, y2 = np.clip(b[:, 2], 0, self.w), np.clip(b[:, 3], 0, self.h)
        mx = np.maximum(2, (x2 - x1) // 4)
        my = np.maximum(2, (y2 - y1) // 4)
        ox1, oy1 = np.clip(x1 - mx, 0, self.w), np.clip(y1 - my, 0, self.h)
        ox2, oy2 = np.clip(x2 + mx, 0, self.w), np.clip(y2 + my, 0, self.h)
        inner = self.box_sum(x1, y1, x2, y2)
        outer = self.box_sum(ox1, oy1, ox2, oy2)
        n_in = np.maximum((x2 - x1) * (y2 - y1), 1)[:, None]
        n_ring = ((ox2 - ox1) * (oy2 - oy1))[:, None] - n_in
        mean_in = inner / n_in
        mean_ring = (outer - inner) / np.maximum(n_ring, 1)
        dist = np.linalg.norm(mean_in - mean_ring, axis=1)
        score = 1.0 - np.exp(-dist / 25.0)
        return np.where(n_ring[:, 0] > 0, score, 0.0)


def _component_boxes(mask: np.ndarray, min_area: int, limit: int = 40) -> list[list[float]]:
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    out = []
    if n <= 1:
        return out
    st = stats[1:]
    big = st[st[:, cv2.CC_STAT_AREA] >= min_area]
    if len(big) > limit:  # keep the largest; textured images give many small pieces
        big = big[np.argsort(-big[:, cv2.CC_STAT_AREA], kind="stable")[:limit]]
    for x, y, w, h, _ in big:
        out.append([float(x), float(y), float(x + w), float(y + h)])
    return out


def _foreground_components(ctx: _ImageContext, min_area: int) -> list[list[float]]:
    lab = ctx.lab
    border = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
    bg = np.median(border, axis=0)
    dist = np.sqrt(((lab - bg) ** 2).sum(axis=2))
    fg = (dist > _otsu(dist, _MIN_CONTRAST)).astype(np.uint8)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    return _component_boxes(fg, min_area)


def _colour_components(ctx: _ImageContext, min_area: int) -> list[list[float]]:
    hue = ctx.hsv[:, :, 0].astype(np.int32)  # 0..179
    sat, val = ctx.hsv[:, :, 1], ctx.hsv[:, :, 2]
    saturated = (sat >= 70) & (val >= 50)
    out: list[list[float]] = []
    grey = (val.astype(np.int32) // 64) + 100  # 4 brightness bins for grey pixels
    for offset in (0, 8):  # two quantisations offset by half a 15-degree bin
        q = np.where(saturated, ((hue + offset) % 180) // 15, grey)
        labels, counts = np.unique(q, return_counts=True)
        for label, count in zip(labels, counts):
            if count < min_area or (offset and label >= 100):  # grey bins are identical in both passes
                continue
            out += _component_boxes((q == label).astype(np.uint8), min_area, limit=10)
    return out


def _edge_contours(ctx: _ImageContext, min_area: int) -> list[list[float]]:
    dil = cv2.dilate(ctx.edges, np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(dil, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for c in contours:
        x, y, w, h = cv2.boundingRect(c)
        if w * h >= min_area and not (w >= ctx.w - 2 and h >= ctx.h - 2):
            out.append([float(x), float(y), float(x + w), float(y + h)])
    return out[:40]


def _unions(boxes: np.ndarray, scores: np.ndarray, ctx: _ImageContext, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes around pairs of confident, non-nested proposals (object groups)."""
    if limit <= 0 or len(boxes) < 2:
        return np.zeros((0, 4)), np.zeros(0)
    top = np.argsort(-scores, kind="stable")[:6]
    pairs = []
    for i_pos, i in enumerate(top):
        for j in top[i_pos + 1:]:
            a, b = boxes[i], boxes[j]
            u = np.array([min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])])
            area_u = (u[2] - u[0]) * (u[3] - u[1])
            area_ab = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
            if area_u >= 0.9 * ctx.w * ctx.h or box_iou(u[None], a[None])[0, 0] > 0.8 \
                    or box_iou(u[None], b[None])[0, 0] > 0.8:
                continue  # nested pairs and whole-image unions add nothing
            # prefer compact groups (objects close together)
            pairs.append((0.5 * min(scores[i], scores[j]) * min(1.0, 2.0 * area_ab / area_u), u))
    pairs.sort(key=lambda p: -p[0])
    pairs = pairs[:limit]
    if not pairs:
        return np.zeros((0, 4)), np.zeros(0)
    return np.stack([p[1] for p in pairs]), np.array([p[0] for p in pairs])


def _fillers(w: int, h: int) -> np.ndarray:
    out = [[0, 0, w, h]]
    for g in (2, 3):
        xs = np.linspace(0, w, g + 1)
        ys = np.linspace(0, h, g + 1)
        for r in range(g):
            for c in range(g):
                out.append([xs[c], ys[r], xs[c + 1], ys[r + 1]])
    return np.asarray(out, dtype=np.float64)


def _int_boxes(ctx: _ImageContext, boxes: np.ndarray) -> np.ndarray:
    """Pixel-aligned boxes (outward rounding, at least 1 px, inside the image) as int64 [N,4]."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1 = np.clip(np.floor(b[:, 0]), 0, ctx.w - 1)
    y1 = np.clip(np.floor(b[:, 1]), 0, ctx.h - 1)
    x2 = np.clip(np.ceil(b[:, 2]), x1 + 1, ctx.w)
    y2 = np.clip(np.ceil(b[:, 3]), y1 + 1, ctx.h)
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.int64)


def _geometry_texture(ctx: _ImageContext, ib: np.ndarray) -> np.ndarray:
    """Geometry (9) and texture (34) of all boxes at once, from integral images."""
    x1, y1, x2, y2 = ib.T
    bw, bh = (x2 - x1).astype(np.float64), (y2 - y1).astype(np.float64)
    geo = np.stack([x1 / ctx.w, y1 / ctx.h, x2 / ctx.w, y2 / ctx.h, bw / ctx.w, bh / ctx.h,
                    np.sqrt(bw * bh / (ctx.w * ctx.h)), (x1 + x2) / (2.0 * ctx.w), (y1 + y2) / (2.0 * ctx.h)], 1)
    s = ctx._tex_int
    xm, ym = (x1 + x2 + 1) // 2, (y1 + y2 + 1) // 2  # cell split (a 1-px box puts everything in one cell)

    def rect(a, b, c, d):  # sums over [b:d, a:c] -> [N, 10]
        return s[d, c] - s[b, c] - s[d, a] + s[b, a]

    cells = [rect(x1, y1, xm, ym), rect(xm, y1, x2, ym), rect(x1, ym, xm, y2), rect(xm, ym, x2, y2)]
    hist = np.concatenate([c[:, :8] for c in cells], axis=1)  # [N, 32]
    total = hist.sum(1, keepdims=True)
    hist = np.divide(hist, total, out=np.zeros_like(hist), where=total > 0)
    whole = rect(x1, y1, x2, y2)
    area = bw * bh
    mean_mag = whole[:, :8].sum(1) / area
    mean_g = whole[:, 8] / area
    std_g = np.sqrt(np.maximum(whole[:, 9] / area - mean_g ** 2, 0.0))
    tex = np.concatenate([hist, np.minimum(1.0, mean_mag / 200.0)[:, None], (std_g / 64.0)[:, None]], 1)
    return np.concatenate([geo, tex], axis=1)


def _describe_all(ctx: _ImageContext, boxes: np.ndarray) -> np.ndarray:
    """Raw [N, RAW_DIM] descriptors of ``boxes`` (see the module docstring for the layout)."""
    ib = _int_boxes(ctx, boxes)
    out = np.zeros((len(ib), RAW_DIM), dtype=np.float32)
    for i, box in enumerate(ib):
        _colour_shape(ctx, box, out[i])
    out[:, 109:] = _geometry_texture(ctx, ib)
    return out


def _largest_contour(mask: np.ndarray) -> np.ndarray | None:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    return max(contours, key=cv2.contourArea)


def _colour_shape(ctx: _ImageContext, box: np.ndarray, out: np.ndarray) -> None:
    """Fill the colour (0..25) and shape (26..108) entries of ``out`` for one pixel-aligned box."""
    x1, y1, x2, y2 = (int(v) for v in box)
    bw, bh = x2 - x1, y2 - y1
    lab = ctx.lab[y1:y2, x1:x2]
    # foreground: pixels far (Otsu) from the median colour of the box's own border
    if bw >= 3 and bh >= 3:
        border = np.concatenate([lab[0], lab[-1], lab[1:-1, 0], lab[1:-1, -1]])
        diff = lab - np.median(border, axis=0)
        dist = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
        fg = (dist > _otsu(dist, _MIN_CONTRAST)).astype(np.uint8)
    else:
        fg = np.zeros((bh, bw), dtype=np.uint8)
    n_fg = int(cv2.countNonZero(fg))
    sel = fg if n_fg >= 4 else np.ones_like(fg)  # no foreground: describe the whole box

    # --- colour (26)
    mean, std = cv2.meanStdDev(lab, mask=sel)
    out[0:3] = mean.ravel() / 255.0
    out[3:6] = std.ravel() / 64.0
    s_cos, s_sin, s_mean, v_mean = cv2.mean(ctx.hue_stats[y1:y2, x1:x2], mask=sel)
    out[6] = s_mean
    out[7] = v_mean
    if n_fg < bw * bh:
        out[8:11] = np.asarray(cv2.mean(lab, mask=1 - fg)[:3]) / 255.0
    else:
        out[8:11] = out[0:3]
    on = sel.view(bool)
    n_sel = max(int(on.sum()), 1)
    out[11:23] = np.bincount(ctx.hue_bin[y1:y2, x1:x2][on], weights=ctx.sat[y1:y2, x1:x2][on], minlength=12) / n_sel
    # circular mean hue weighted by saturation, damped for grey regions (hue is noise there)
    damp = min(1.0, 4.0 * s_mean) / max(s_mean, 1e-6)
    out[23] = s_cos * damp
    out[24] = s_sin * damp
    out[25] = n_fg / float(bw * bh)

    # --- shape (83)
    out[26:90] = cv2.resize(fg.astype(np.float32), (8, 8), interpolation=cv2.INTER_AREA).ravel()
    if n_fg >= 4:
        hu = cv2.HuMoments(cv2.moments(fg, binaryImage=True)).ravel()
        # signed log scale: |hu| spans 1e-1..1e-20 across shapes
        out[90:97] = np.clip(np.sign(hu) * np.log10(np.abs(hu) + 1e-30) / 10.0, -3.0, 3.0)
        contour = _largest_contour(fg)
        if contour is not None and len(contour) >= 3:
            area = max(cv2.contourArea(contour), 1.0)
            perim = max(cv2.arcLength(contour, True), 1.0)
            hull_area = max(cv2.contourArea(cv2.convexHull(contour)), 1.0)
            out[97] = n_fg / float(bw * bh)  # extent
            out[98] = min(1.0, area / hull_area)  # solidity
            out[99] = min(1.0, 4.0 * math.pi * area / perim ** 2)  # circularity
            vertices = len(cv2.approxPolyDP(contour, 0.04 * perim, True))
            out[101 + min(max(vertices, 3), 10) - 3] = 1.0
    out[100] = math.log(bw / bh)
