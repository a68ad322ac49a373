"""Readers and writers for the region-feature dumps of the vision-language ecosystem.

Every reader yields :class:`RegionFeatures` (boxes in pixels, float32 arrays) one image at a time, streaming:
a dump is never held in memory. Supported layouts (see ``/shared/docs/formats.md``):

* ``butd``            -- bottom-up-attention ``generate_tsv.py``: 6 tab fields
                         ``image_id, image_w, image_h, num_boxes, boxes, features`` (base64 float32).
* ``lxmert``          -- LXMERT: 10 tab fields ``img_id, img_h, img_w, objects_id (b64 int64), objects_conf,
                         attrs_id (b64 int64), attrs_conf, num_boxes, boxes, features`` (note h before w).
* ``unimo-img2txt``   -- official UNIMO caption lines, 16 ``;`` fields; the image fields repeat on every caption
                         line of an image, so each image is yielded once (repeats are checked to be identical).
* ``unimo-ve``        -- official UNIMO SNLI-VE lines, 14 ``;`` fields (``image_w`` before ``image_h``); deduplicated
                         like ``unimo-img2txt``.
* ``unimo-retrieval`` -- official UNIMO retrieval image shards: 7 tab fields
                         ``img_filename, image_w, image_h, number_box, boxes, image_embeddings, probs``.
* ``uniter-npz``      -- UNITER/VILLA per-image ``.npz`` (``features``, ``norm_bb``, ``conf``, ``soft_labels``).

Class conventions: ``cls_prob`` columns follow the BUTD detector (column 0 = background, 1601 for Visual Genome);
``obj_id`` is 0-based *without* background (as LXMERT writes it), i.e. ``obj_id = argmax(cls_prob[:, 1:])`` and
``obj_id == i`` names line ``i`` of ``vg_1600_400_20/objects_vocab.txt``.

This module must stay free of paddle and of the model (data workers import it).
"""
from __future__ import annotations

import base64
import binascii
import os
import re
import zipfile
import zlib
from dataclasses import dataclass, field as dc_field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from ..utils.errors import DataError, UserError

try:  # SIMD base64 (~15x faster than the standard library on feature lines); same API and errors
    import pybase64 as _b64
except ImportError:  # pragma: no cover - optional speed-up
    _b64 = base64

FORMATS: tuple[str, ...] = ("butd", "lxmert", "unimo-img2txt", "unimo-ve", "unimo-retrieval", "uniter-npz")

_F32 = np.dtype("<f4")
_I64 = np.dtype("<i8")


class FeatureFormatError(DataError):
    """A record that cannot be read: ``file[:line]: field 'f': message (hint)``, the project's one data-error
    format (:class:`unimo.utils.errors.DataError`); ``reason`` is a short category used for ``--skip-bad``
    counting. ``field_kind`` is "key" for npz arrays."""

    def __init__(self, source: str, reason: str, message: str, line: int | None = None, field: str | None = None,
                 field_kind: str = "field", hint: str | None = None) -> None:
        self.source = str(source)
        self.field_kind = field_kind
        self._field_name = field
        super().__init__(str(source), line, field, message, reason, hint)

    def format(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else str(self.file)
        what = f" {self.field_kind} '{self._field_name}':" if self._field_name else ""
        text = f"{where}:{what} {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


# ---------------------------------------------------------------------------------------------------------------
# The record type
# ---------------------------------------------------------------------------------------------------------------

_OPTIONAL_2D = ("cls_prob", "attr_prob")
# Dump fields holding base64 arrays (kept as bytes while parsing).
_B64_FIELDS = frozenset({"boxes", "features", "objects_id", "objects_conf", "attrs_id", "attrs_conf", "probs",
                         "attr_probs", "image_embeddings"})
_OPTIONAL_1D = {"obj_conf": np.float32, "obj_id": np.int64, "attr_id": np.int64, "attr_conf": np.float32}


@dataclass
class RegionFeatures:
    """Detector output for one image. ``boxes`` are pixel ``x1, y1, x2, y2``; all arrays have ``N`` rows.

    ``image_id`` is always a ``str`` (COCO integer ids become ``"391895"``). Shapes and dtypes are checked and
    normalised on construction (float32 arrays, int64 ids); a mismatch raises ``ValueError`` naming the image.
    """

    image_id: str
    image_w: int
    image_h: int
    boxes: np.ndarray
    features: np.ndarray
    cls_prob: np.ndarray | None = None
    obj_conf: np.ndarray | None = None
    obj_id: np.ndarray | None = None
    attr_prob: np.ndarray | None = None
    attr_id: np.ndarray | None = None
    attr_conf: np.ndarray | None = None
    # where the record was read (``(file, line)``; line None for npz files); set by read_features, not compared
    location: tuple[str, int | None] | None = dc_field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.image_id = str(self.image_id)
        self.image_w = int(self.image_w)
        self.image_h = int(self.image_h)
        self.boxes = np.asarray(self.boxes, dtype=np.float32)
        self.features = np.asarray(self.features, dtype=np.float32)
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"image {self.image_id!r}: boxes must be [N, 4], got shape {self.boxes.shape}")
        n = self.boxes.shape[0]
        if self.features.ndim != 2 or self.features.shape[0] != n:
            raise ValueError(f"image {self.image_id!r}: features must be [{n}, D] (one row per box), "
                             f"got shape {self.features.shape}")
        for name in _OPTIONAL_2D:
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value, dtype=np.float32)
                if value.ndim != 2 or value.shape[0] != n:
                    raise ValueError(f"image {self.image_id!r}: {name} must be [{n}, C], got shape {value.shape}")
                setattr(self, name, value)
        for name, dtype in _OPTIONAL_1D.items():
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value, dtype=dtype)
                if value.shape != (n,):
                    raise ValueError(f"image {self.image_id!r}: {name} must be [{n}], got shape {value.shape}")
                setattr(self, name, value)

    @property
    def num_boxes(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def feature_dim(self) -> int:
        return int(self.features.shape[1])

    def object_predictions(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(obj_id, obj_conf)``: stored values, else derived from ``cls_prob`` (column 0 = background); or None."""
        if self.obj_id is not None and self.obj_conf is not None:
            return self.obj_id, self.obj_conf
        derived = _argmax_without_background(self.cls_prob)
        if derived is None:
            return None
        ids, conf = derived
        return (self.obj_id if self.obj_id is not None else ids), (self.obj_conf if self.obj_conf is not None else conf)

    def attribute_predictions(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(attr_id, attr_conf)``: stored values, else derived from ``attr_prob`` (column 0 = no attribute)."""
        if self.attr_id is not None and self.attr_conf is not None:
            return self.attr_id, self.attr_conf
        derived = _argmax_without_background(self.attr_prob)
        if derived is None:
            return None
        ids, conf = derived
        return (self.attr_id if self.attr_id is not None else ids), \
            (self.attr_conf if self.attr_conf is not None else conf)

    def box_problem(self) -> str | None:
        """Why the boxes do not fit the image (outside it or inverted, see :func:`box_problems`), or None."""
        problem = box_problems(self.boxes, self.image_w, self.image_h)
        return None if problem is None else problem[1]

    def non_finite_field(self) -> str | None:
        """Name of the first float field holding NaN/inf, or None."""
        for name in ("boxes", "features", "cls_prob", "obj_conf", "attr_prob", "attr_conf"):
            value = getattr(self, name)
            if value is not None and value.size and not np.isfinite(value).all():
                return name
        return None


# A box may stick out of the image by this fraction of the image side (rounding of rescaled detector boxes).
BOX_TOLERANCE = 1e-3


def box_problems(boxes: np.ndarray, image_w: float, image_h: float) -> tuple[np.ndarray, str] | None:
    """``(bad row mask, description of the first bad box)`` for boxes that lie outside the ``image_w x image_h``
    image (by more than :data:`BOX_TOLERANCE` of its side) or are inverted (``x2 < x1`` or ``y2 < y1``); None when
    every box fits. Boxes are pixel ``x1, y1, x2, y2`` (normalised ones with a 1 x 1 image)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not b.size:
        return None
    tw, th = BOX_TOLERANCE * image_w, BOX_TOLERANCE * image_h
    outside = ((b[:, 0] < -tw) | (b[:, 2] > image_w + tw) | (b[:, 2] < -tw) | (b[:, 0] > image_w + tw)
               | (b[:, 1] < -th) | (b[:, 3] > image_h + th) | (b[:, 3] < -th) | (b[:, 1] > image_h + th))
    inverted = (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
    bad = outside | inverted
    if not bad.any():
        return None
    i = int(np.flatnonzero(bad)[0])
    coords = "[" + ", ".join(f"{v:g}" for v in b[i]) + "]"
    if inverted[i]:
        what = "x2 < x1" if b[i, 2] < b[i, 0] else "y2 < y1"
        text = f"box {i} {coords} is inverted ({what})"
    else:
        text = f"box {i} {coords} lies outside the {image_w:g}x{image_h:g} image"
    more = int(bad.sum()) - 1
    if more:
        text += f" (and {more} more box{'es' if more > 1 else ''})"
    return bad, text


def clip_boxes_to_image(boxes: np.ndarray, image_w: float, image_h: float) -> tuple[np.ndarray, int]:
    """Clamp every coordinate into the image (``[0, W] x [0, H]``) and raise an inverted box's ``x2`` (``y2``) to
    its ``x1`` (``y1``), i.e. to zero width (height). Returns the new float32 boxes and how many boxes changed
    (boxes within :data:`BOX_TOLERANCE` of the border are kept exactly as they are)."""
    problem = box_problems(boxes, image_w, image_h)
    if problem is None:
        return boxes, 0
    bad = problem[0]
    out = np.array(boxes, dtype=np.float32, copy=True)
    rows = out[bad]
    rows[:, [0, 2]] = np.clip(rows[:, [0, 2]], 0, image_w)
    rows[:, [1, 3]] = np.clip(rows[:, [1, 3]], 0, image_h)
    rows[:, 2] = np.maximum(rows[:, 2], rows[:, 0])
    rows[:, 3] = np.maximum(rows[:, 3], rows[:, 1])
    out[bad] = rows
    return out, int(bad.sum())


def _argmax_without_background(prob: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    if prob is None or prob.ndim != 2 or prob.shape[1] < 2:
        return None
    fg = prob[:, 1:]
    ids = fg.argmax(axis=1).astype(np.int64)
    conf = fg[np.arange(fg.shape[0]), ids].astype(np.float32)
    return ids, conf


# ---------------------------------------------------------------------------------------------------------------
# Field decoding
# ---------------------------------------------------------------------------------------------------------------

def _decode_b64(text: str | bytes, dtype: np.dtype, src: str, line: int, field: str) -> np.ndarray:
    s = text.strip()
    if isinstance(s, str):
        try:
            s = s.encode("ascii")
        except UnicodeEncodeError:
            raise FeatureFormatError(src, "bad_base64", "bad base64 (non-ASCII characters)", line, field) from None
    # Python-3 ports of generate_tsv.py sometimes wrote str(bytes): "b'AAAA'". Accept that wrapper.
    if len(s) >= 3 and s[:1] == b"b" and s[1:2] in (b"'", b'"') and s[-1:] == s[1:2]:
        s = s[2:-1]
    try:
        raw = _b64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FeatureFormatError(src, "bad_base64", f"bad base64 ({exc})", line, field) from None
    if len(raw) % dtype.itemsize:
        raise FeatureFormatError(src, "dimension", f"{len(raw)} bytes is not a whole number of {dtype.name} values",
                                 line, field)
    # bytearray makes the array writable for callers without a second copy later.
    return np.frombuffer(bytearray(raw), dtype=dtype).astype(dtype.newbyteorder("="), copy=False)


_INT32_MAX = 2 ** 31 - 1  # image sizes and class ids are stored as int32


def _parse_int(text: str, src: str, line: int, field: str, minimum: int = 0, maximum: int = _INT32_MAX) -> int:
    s = text.strip()
    try:
        value = int(s)
    except ValueError:
        try:
            as_float = float(s)
        except ValueError:
            raise FeatureFormatError(src, "bad_value", f"{s[:40]!r} is not an integer", line, field) from None
        if not np.isfinite(as_float) or as_float != int(as_float):
            raise FeatureFormatError(src, "bad_value", f"{s[:40]!r} is not an integer", line, field) from None
        value = int(as_float)
    if value < minimum:
        raise FeatureFormatError(src, "bad_value", f"{value} is below the minimum {minimum}", line, field)
    if value > maximum:
        raise FeatureFormatError(src, "bad_value", f"{str(value)[:40]} is above the maximum {maximum}", line, field)
    return value


def _per_box(arr: np.ndarray, n: int, src: str, line: int, field: str, width: int | None = None,
             expected_width: int | None = None) -> np.ndarray:
    """Reshape a flat decoded field to ``[n, width]`` (or ``[n]`` when width == 0), with clear errors."""
    if width == 0:
        if arr.size != n:
            raise FeatureFormatError(src, "num_boxes_mismatch", f"{arr.size} values for num_boxes={n}", line, field)
        return arr
    if width is not None:
        if arr.size != n * width:
            raise FeatureFormatError(src, "num_boxes_mismatch",
                                     f"{arr.size} values for num_boxes={n} (expected {n * width})", line, field)
        return arr.reshape(n, width)
    if n == 0:
        if arr.size:
            raise FeatureFormatError(src, "num_boxes_mismatch", f"{arr.size} values for num_boxes=0", line, field)
        return arr.reshape(0, expected_width or 0)
    if not arr.size:
        raise FeatureFormatError(src, "dimension", f"no values for num_boxes={n}", line, field)
    if arr.size % n:
        raise FeatureFormatError(src, "dimension", f"{arr.size} values are not divisible by num_boxes={n}",
                                 line, field)
    out = arr.reshape(n, arr.size // n)
    if expected_width is not None and out.shape[1] != expected_width:
        raise FeatureFormatError(src, "dimension", f"dimension {out.shape[1]} per box, expected {expected_width}",
                                 line, field)
    return out


def _finite(arr: np.ndarray, src: str, line: int | None, field: str, field_kind: str = "field") -> np.ndarray:
    if arr.size and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise FeatureFormatError(src, "non_finite", f"{bad} NaN/inf values", line, field, field_kind)
    return arr


def _class_ids(arr: np.ndarray, src: str, line: int | None, field: str, field_kind: str = "field") -> np.ndarray:
    """Object / attribute ids are 0-based class indices without background: negative (or beyond int32) is bad."""
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0:
            raise FeatureFormatError(src, "bad_value", f"negative class id {lo} (ids are 0-based class indices "
                                     "without background)", line, field, field_kind)
        if hi > _INT32_MAX:
            raise FeatureFormatError(src, "bad_value", f"class id {hi} is beyond any class vocabulary", line,
                                     field, field_kind)
    return arr


@dataclass
class _Ctx:
    """Reading options and running state shared by the parsers of one read_features call."""

    skip_bad: bool
    summary: dict
    dim: int | None                 # --feature-dim (None: the first image with boxes fixes it)
    clip_boxes: bool
    first_dim: tuple[int, str, int | None] | None = None  # (dimension, file, line) of the first image with boxes
    clipped: int = 0                # boxes clipped in the record being parsed (counted once it is accepted)
    keep: Callable[[str], bool] | None = None  # image ids this reader yields (a shard's); None = every id


_BOX_HINT = "pass --clip-boxes to clip boxes to the image (counted), or --skip-bad to skip such images"


def _checked_boxes(boxes: np.ndarray, w: float, h: float, src: str, line: int | None, field: str, ctx: _Ctx,
                   field_kind: str = "field") -> np.ndarray:
    """Boxes outside the image or inverted are an error, or with ``clip_boxes`` clipped (and counted)."""
    problem = box_problems(boxes, w, h)
    if problem is None:
        return boxes
    if ctx.clip_boxes:
        boxes, ctx.clipped = clip_boxes_to_image(boxes, w, h)
        return boxes
    raise FeatureFormatError(src, "bad_box", problem[1], line, field, field_kind, hint=_BOX_HINT)


def _check_dimension(rec: RegionFeatures, ctx: _Ctx, src: str, line: int | None, field: str,
                     field_kind: str = "field") -> None:
    """Every image of a dump has one feature dimension (the first image with boxes fixes it)."""
    if rec.num_boxes and ctx.dim is None and ctx.first_dim is not None and rec.feature_dim != ctx.first_dim[0]:
        dim, first_src, first_line = ctx.first_dim
        where = first_src if first_line is None else f"{first_src}:{first_line}"
        raise FeatureFormatError(src, "dimension", f"{rec.feature_dim} values per box, but the first image with "
                                 f"boxes ({where}) has {dim}", line, field, field_kind,
                                 hint="every image of a dump has one feature dimension; --feature-dim D fixes it")


def _accept(rec: RegionFeatures, ctx: _Ctx, src: str, line: int | None) -> RegionFeatures:
    """Book-keeping for a record that is yielded."""
    summary = ctx.summary
    summary["images"] += 1
    summary["boxes"] += rec.num_boxes
    if ctx.clipped:
        summary["clipped_boxes"] += ctx.clipped
        summary["clipped_images"] += 1
    if rec.num_boxes and ctx.first_dim is None:
        ctx.first_dim = (rec.feature_dim, src, line)
    rec.location = (src, line)
    return rec


# ---------------------------------------------------------------------------------------------------------------
# Text formats
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _TextFormat:
    sep: str
    fields: tuple[str, ...]
    id_field: str
    image_fields: tuple[str, ...]   # fields that must repeat identically on every line of one image
    repeats: bool                   # one line per caption: the same image is expected on many lines
    parse: Callable[..., RegionFeatures]
    feature_field: str = "features"


def _parse_butd(p: dict[str, str | bytes], image_id: str, src: str, line: int, ctx: _Ctx) -> RegionFeatures:
    w = _parse_int(p["image_w"], src, line, "image_w", 1)
    h = _parse_int(p["image_h"], src, line, "image_h", 1)
    n = _parse_int(p["num_boxes"], src, line, "num_boxes")
    boxes = _per_box(_decode_b64(p["boxes"], _F32, src, line, "boxes"), n, src, line, "boxes", 4)
    feats = _per_box(_decode_b64(p["features"], _F32, src, line, "features"), n, src, line, "features",
                     expected_width=ctx.dim)
    _finite(boxes, src, line, "boxes")
    _finite(feats, src, line, "features")
    boxes = _checked_boxes(boxes, w, h, src, line, "boxes", ctx)
    return RegionFeatures(image_id, w, h, boxes, feats)


def _parse_lxmert(p: dict[str, str | bytes], image_id: str, src: str, line: int, ctx: _Ctx) -> RegionFeatures:
    h = _parse_int(p["img_h"], src, line, "img_h", 1)
    w = _parse_int(p["img_w"], src, line, "img_w", 1)
    n = _parse_int(p["num_boxes"], src, line, "num_boxes")
    obj_id = _per_box(_decode_b64(p["objects_id"], _I64, src, line, "objects_id"), n, src, line, "objects_id", 0)
    obj_conf = _per_box(_decode_b64(p["objects_conf"], _F32, src, line, "objects_conf"), n, src, line,
                        "objects_conf", 0)
    attr_id = _per_box(_decode_b64(p["attrs_id"], _I64, src, line, "attrs_id"), n, src, line, "attrs_id", 0)
    attr_conf = _per_box(_decode_b64(p["attrs_conf"], _F32, src, line, "attrs_conf"), n, src, line, "attrs_conf", 0)
    boxes = _per_box(_decode_b64(p["boxes"], _F32, src, line, "boxes"), n, src, line, "boxes", 4)
    feats = _per_box(_decode_b64(p["features"], _F32, src, line, "features"), n, src, line, "features",
                     expected_width=ctx.dim)
    _class_ids(obj_id, src, line, "objects_id")
    _class_ids(attr_id, src, line, "attrs_id")
    for name, arr in (("objects_conf", obj_conf), ("attrs_conf", attr_conf), ("boxes", boxes), ("features", feats)):
        _finite(arr, src, line, name)
    boxes = _checked_boxes(boxes, w, h, src, line, "boxes", ctx)
    return RegionFeatures(image_id, w, h, boxes, feats, obj_conf=obj_conf, obj_id=obj_id, attr_id=attr_id,
                          attr_conf=attr_conf)


def _optional_probs(text: str | bytes, n: int, src: str, line: int, field: str) -> np.ndarray | None:
    if not text.strip():
        return None
    if n == 0:
        _per_box(_decode_b64(text, _F32, src, line, field), 0, src, line, field)
        return None
    return _finite(_per_box(_decode_b64(text, _F32, src, line, field), n, src, line, field), src, line, field)


def _unimo_record(image_id: str, w: int, h: int, n: int, p: dict[str, str | bytes], src: str, line: int,
                  ctx: _Ctx, feat_field: str, probs_field: str | None, attr_field: str | None) -> RegionFeatures:
    boxes = _finite(_per_box(_decode_b64(p["boxes"], _F32, src, line, "boxes"), n, src, line, "boxes", 4),
                    src, line, "boxes")
    feats = _finite(_per_box(_decode_b64(p[feat_field], _F32, src, line, feat_field), n, src, line, feat_field,
                             expected_width=ctx.dim), src, line, feat_field)
    cls_prob = _optional_probs(p[probs_field], n, src, line, probs_field) if probs_field else None
    attr_prob = _optional_probs(p[attr_field], n, src, line, attr_field) if attr_field else None
    boxes = _checked_boxes(boxes, w, h, src, line, "boxes", ctx)
    rec = RegionFeatures(image_id, w, h, boxes, feats, cls_prob=cls_prob, attr_prob=attr_prob)
    _fill_predictions(rec)
    return rec


def _fill_predictions(rec: RegionFeatures) -> None:
    """Store derived object/attribute predictions so thresholding and tags need no class-prob pass later."""
    obj = rec.object_predictions()
    if obj is not None:
        rec.obj_id, rec.obj_conf = obj
    attr = rec.attribute_predictions()
    if attr is not None:
        rec.attr_id, rec.attr_conf = attr


def _parse_img2txt(p: dict[str, str | bytes], image_id: str, src: str, line: int, ctx: _Ctx) -> RegionFeatures:
    h = _parse_int(p["image_h"], src, line, "image_h", 1)
    w = _parse_int(p["image_w"], src, line, "image_w", 1)
    n = _parse_int(p["number_box"], src, line, "number_box")
    return _unimo_record(image_id, w, h, n, p, src, line, ctx, "image_embeddings", "probs", "attr_probs")


def _parse_ve(p: dict[str, str | bytes], image_id: str, src: str, line: int, ctx: _Ctx) -> RegionFeatures:
    w = _parse_int(p["image_w"], src, line, "image_w", 1)
    h = _parse_int(p["image_h"], src, line, "image_h", 1)
    n = _parse_int(p["number_box"], src, line, "number_box")
    return _unimo_record(image_id, w, h, n, p, src, line, ctx, "image_embeddings", None, None)


def _parse_retrieval(p: dict[str, str | bytes], image_id: str, src: str, line: int, ctx: _Ctx) -> RegionFeatures:
    # The official train parser reads (w, h) and the test parser (h, w) (spec 4.4); we follow the train parser,
    # which matches how UNIMO's image TSV (like BUTD) is written.
    w = _parse_int(p["image_w"], src, line, "image_w", 1)
    h = _parse_int(p["image_h"], src, line, "image_h", 1)
    n = _parse_int(p["number_box"], src, line, "number_box")
    return _unimo_record(image_id, w, h, n, p, src, line, ctx, "image_embeddings", "probs", None)


_TEXT_FORMATS: dict[str, _TextFormat] = {
    "butd": _TextFormat("\t", ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features"), "image_id",
                        (), False, _parse_butd),
    "lxmert": _TextFormat("\t", ("img_id", "img_h", "img_w", "objects_id", "objects_conf", "attrs_id", "attrs_conf",
                                 "num_boxes", "boxes", "features"), "img_id", (), False, _parse_lxmert),
    "unimo-img2txt": _TextFormat(";", ("image_id", "caption_id", "token_ids", "sent_ids", "pos_ids", "seg_labels",
                                       "node_attr_b", "node_attr_e", "image_h", "image_w", "number_box", "boxes",
                                       "probs", "attr_probs", "image_embeddings", "label"), "image_id",
                                 ("image_h", "image_w", "number_box", "boxes", "probs", "attr_probs",
                                  "image_embeddings"), True, _parse_img2txt, "image_embeddings"),
    "unimo-ve": _TextFormat(";", ("image_id", "data_id", "label", "token_ids", "sent_ids", "pos_ids", "unused_6",
                                  "image_w", "image_h", "number_box", "boxes", "image_embeddings", "unused_12",
                                  "unused_13"), "image_id",
                            ("image_w", "image_h", "number_box", "boxes", "image_embeddings"), True, _parse_ve,
                            "image_embeddings"),
    "unimo-retrieval": _TextFormat("\t", ("img_filename", "image_w", "image_h", "number_box", "boxes",
                                          "image_embeddings", "probs"), "img_filename", (), False, _parse_retrieval,
                                   "image_embeddings"),
}

# Official img2txt reader: ``int(image_id[9:])`` (a fixed 9-character prefix, then the COCO integer id).
UNIMO_IMG2TXT_ID_PREFIX_LEN = 9


def _image_id_fn(fmt: str, image_id_regex: str | None) -> Callable[[str, str, int | None], str]:
    try:
        pattern = re.compile(image_id_regex) if image_id_regex else None
    except re.error as exc:
        raise UserError(f"not a valid regular expression ({exc})", field="--image-id-regex",
                        hint=f"got {image_id_regex!r}") from None

    def convert(raw: str, src: str, line: int | None) -> str:
        raw = raw.strip()
        field = _TEXT_FORMATS[fmt].id_field if fmt in _TEXT_FORMATS else "image_id"
        if pattern is not None:
            m = pattern.search(raw)
            if m is None:
                raise FeatureFormatError(src, "bad_image_id", f"{raw[:60]!r} does not match --image-id-regex "
                                         f"{pattern.pattern!r}", line, field)
            # the first group that took part in the match (alternatives allowed), else the whole match
            value = next((g for g in m.groups() if g is not None), m.group(0))
            if not value:
                raise FeatureFormatError(src, "bad_image_id", f"--image-id-regex {pattern.pattern!r} matches an "
                                         f"empty id in {raw[:60]!r}", line, field)
            # all-digit ids are int-normalised ("000042" -> "42"); lstrip is int() without its 4300-digit limit
            return (value.lstrip("0") or "0") if value.isdigit() and value.isascii() else value
        if fmt == "unimo-img2txt":
            rest = raw[UNIMO_IMG2TXT_ID_PREFIX_LEN:]
            if not (rest.isdigit() and rest.isascii()):
                raise FeatureFormatError(src, "bad_image_id", f"{raw[:60]!r} is not a 9-character prefix followed by "
                                         "an integer (official rule int(image_id[9:])); pass image_id_regex",
                                         line, field)
            return rest.lstrip("0") or "0"
        if not raw:
            raise FeatureFormatError(src, "bad_image_id", "empty image id", line, field)
        return raw

    return convert


def _expand_inputs(path: str | os.PathLike, suffix: str | None = None) -> list[Path]:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"feature input not found: {p}")
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                       and (suffix is None or f.name.endswith(suffix)))
        if not files:
            what = f"*{suffix} files" if suffix else "files"
            raise FileNotFoundError(f"feature input directory {p} holds no {what}")
        return files
    if p.is_file():
        return [p]
    raise UserError("not a regular file or a directory", file=str(p),
                    hint="give a feature dump file, a .gz file or a directory of them")


_READ_BUFFER = 1 << 22  # feature lines are ~1 MB; a small buffer makes readline() re-join many chunks
_GZ_CHUNK = 1 << 20     # compressed bytes read at a time
_GZ_OUT = 1 << 24       # most decompressed bytes produced per step (a highly compressible file cannot blow up memory)
_GZ_HINT = "the file was cut short or damaged, e.g. by an interrupted download or copy: fetch or compress it again"


def _iter_raw_lines(path: Path, src: str) -> Iterator[tuple[int, bytes]]:
    """``(line number, line bytes)`` of a plain or gzip file; a truncated or corrupt gzip file is an error naming
    the line that could not be read completely."""
    if path.name.endswith(".gz"):
        yield from _iter_gzip_lines(path, src)
        return
    with open(path, "rb", buffering=_READ_BUFFER) as fh:
        lineno = 0
        while True:
            try:
                raw = fh.readline()
            except OSError as exc:
                raise FeatureFormatError(src, "bad_file", f"read error ({exc.strerror or exc})", lineno + 1) from None
            if not raw:
                return
            lineno += 1
            yield lineno, raw


def _iter_gzip_lines(path: Path, src: str) -> Iterator[tuple[int, bytes]]:
    """Lines of a (multi-member) gzip file, decompressed incrementally with zlib so that every complete line
    before a truncation or corruption is still yielded and the error names the line reached."""
    lineno = 0
    pending: list[bytes] = []

    def failure(what: str, detail: str = "") -> FeatureFormatError:
        inside = bool(pending) and bool(b"".join(pending).strip())
        where = (f"inside line {lineno + 1}" if inside else
                 f"after line {lineno}" if lineno else "before the first line")
        return FeatureFormatError(src, "bad_file", f"{what} {where}{f' ({detail})' if detail else ''}", lineno + 1,
                                  hint=_GZ_HINT)

    def lines(data: bytes) -> Iterator[tuple[int, bytes]]:
        nonlocal lineno
        start = 0
        while True:
            i = data.find(b"\n", start)
            if i < 0:
                break
            piece = data[start:i + 1]
            if pending:
                piece = b"".join(pending) + piece
                pending.clear()
            lineno += 1
            yield lineno, piece
            start = i + 1
        if start < len(data):
            pending.append(data[start:])

    with open(path, "rb") as fh:
        d = zlib.decompressobj(wbits=31)  # gzip wrapper: the header and the CRC-32 / size trailer are checked
        in_member = False                 # compressed bytes of an unfinished member were fed
        while True:
            try:
                chunk = fh.read(_GZ_CHUNK)
            except OSError as exc:
                raise failure("read error", str(exc.strerror or exc)) from None
            if not chunk:
                break
            while chunk:
                if not in_member and not chunk.strip(b"\x00"):
                    chunk = b""  # zero padding after the last member (tape / block devices) is allowed
                    break
                in_member = True
                try:
                    out = d.decompress(chunk, _GZ_OUT)
                    while True:
                        yield from lines(out)
                        if not d.unconsumed_tail:
                            break
                        out = d.decompress(d.unconsumed_tail, _GZ_OUT)
                except zlib.error as exc:
                    what = "not gzip data" if "header" in str(exc) else "corrupt gzip data"
                    raise failure(what, str(exc)) from None
                if d.eof:  # a member ended: the rest (if any) starts the next member
                    chunk = d.unused_data
                    d = zlib.decompressobj(wbits=31)
                    in_member = False
                else:
                    chunk = b""
        if in_member:
            raise failure("truncated gzip data: the compressed stream ends")
    if pending:
        lineno += 1
        yield lineno, b"".join(pending)


def _new_summary(summary: dict | None) -> dict:
    summary = {} if summary is None else summary
    for key in ("files", "lines", "images", "boxes", "repeated_lines", "clipped_boxes", "clipped_images"):
        summary.setdefault(key, 0)
    summary.setdefault("skipped", {})
    summary.setdefault("skipped_examples", [])
    return summary


def _count_skip(summary: dict, err: FeatureFormatError) -> None:
    summary["skipped"][err.reason] = summary["skipped"].get(err.reason, 0) + 1
    if len(summary["skipped_examples"]) < 10:
        summary["skipped_examples"].append(str(err))


def _read_text(files: list[Path], fmt: str, ctx: _Ctx,
               id_fn: Callable[[str, str, int | None], str]) -> Iterator[RegionFeatures]:
    spec = _TEXT_FORMATS[fmt]
    nfields = len(spec.fields)
    sep = spec.sep.encode()
    summary = ctx.summary
    # image id -> (file, line, checksum of the image fields); catches duplicates and inconsistent repeats.
    seen: dict[str, tuple[str, int, int]] = {}
    for path in files:
        src = str(path)
        summary["files"] += 1
        for lineno, raw in _iter_raw_lines(path, src):
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue  # blank lines (e.g. a trailing one) carry no record
            summary["lines"] += 1
            ctx.clipped = 0
            try:
                parts_b = raw.split(sep)
                if len(parts_b) != nfields:
                    raise FeatureFormatError(src, "field_count", f"{len(parts_b)} fields, expected {nfields} "
                                             f"({', '.join(spec.fields)})", lineno)
                # base64 fields stay bytes (no copy of the big payloads); the rest is decoded text.
                p: dict[str, str | bytes] = {}
                for name, value in zip(spec.fields, parts_b):
                    if name in _B64_FIELDS:
                        p[name] = value
                        continue
                    try:
                        p[name] = value.decode("utf-8")
                    except UnicodeDecodeError:
                        raise FeatureFormatError(src, "bad_value", "not UTF-8 text", lineno, name) from None
                image_id = id_fn(p[spec.id_field], src, lineno)
                if ctx.keep is not None and not ctx.keep(image_id):
                    summary["other_shard_lines"] += 1
                    continue  # another shard's image: not decoded (the big base64 fields are never touched)
                first = seen.get(image_id)
                if first is not None:
                    if not spec.repeats:
                        raise FeatureFormatError(src, "duplicate_id", f"duplicate image id {image_id!r} (first at "
                                                 f"{first[0]}:{first[1]})", lineno, spec.id_field)
                    crc = _crc(parts_b, spec)
                    if crc != first[2]:
                        raise FeatureFormatError(src, "repeat_mismatch", f"image {image_id!r} repeats with "
                                                 f"different image fields than at {first[0]}:{first[1]}", lineno)
                    summary["repeated_lines"] += 1
                    continue
                rec = spec.parse(p, image_id, src, lineno, ctx)
                _check_dimension(rec, ctx, src, lineno, spec.feature_field)
            except FeatureFormatError as err:
                if not ctx.skip_bad:
                    raise
                _count_skip(summary, err)
                continue
            seen[image_id] = (src, lineno, _crc(parts_b, spec) if spec.repeats else 0)
            yield _accept(rec, ctx, src, lineno)


def _crc(parts_b: list[bytes], spec: _TextFormat) -> int:
    crc = 0
    for name in spec.image_fields:
        crc = zlib.crc32(parts_b[spec.fields.index(name)].strip(), crc)
        crc = zlib.crc32(b"\x00", crc)
    return crc


# ---------------------------------------------------------------------------------------------------------------
# UNITER npz
# ---------------------------------------------------------------------------------------------------------------

def _read_uniter(files: list[Path], ctx: _Ctx,
                 id_fn: Callable[[str, str, int | None], str]) -> Iterator[RegionFeatures]:
    seen: dict[str, str] = {}
    summary = ctx.summary
    for path in files:
        src = str(path)
        summary["files"] += 1
        summary["lines"] += 1
        ctx.clipped = 0
        try:
            name = path.name[:-len(".npz")] if path.name.endswith(".npz") else path.stem
            image_id = id_fn(name, src, None)
            if ctx.keep is not None and not ctx.keep(image_id):
                summary["other_shard_lines"] += 1
                continue  # another shard's image: its npz is not opened
            if image_id in seen:
                raise FeatureFormatError(src, "duplicate_id",
                                         f"duplicate image id {image_id!r} (also {seen[image_id]})")
            rec = _parse_uniter_npz(path, src, image_id, ctx)
            _check_dimension(rec, ctx, src, None, "features", "key")
        except FeatureFormatError as err:
            if not ctx.skip_bad:
                raise
            _count_skip(summary, err)
            continue
        seen[image_id] = src
        yield _accept(rec, ctx, src, None)


_NPZ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError)


def _npz_get(npz: Mapping[str, np.ndarray], key: str, src: str) -> np.ndarray:
    try:
        arr = np.asarray(npz[key])
    except _NPZ_ERRORS as exc:
        raise FeatureFormatError(src, "bad_npz", f"cannot read array ({exc})", None, key, "key") from None
    if arr.dtype.kind not in "fiu":
        raise FeatureFormatError(src, "bad_npz", f"dtype {arr.dtype} is not numeric", None, key, "key")
    return arr


def _npz_size(npz: Mapping[str, np.ndarray], key: str, src: str) -> int:
    arr = _npz_get(npz, key, src)
    value = arr.reshape(-1)[0] if arr.size == 1 else None
    if value is None or not np.isfinite(value) or value != int(value) or not 1 <= int(value) <= _INT32_MAX:
        raise FeatureFormatError(src, "bad_value", f"expected one positive integer, got {arr.tolist()!r:.60}", None,
                                 key, "key")
    return int(value)


def _parse_uniter_npz(path: Path, src: str, image_id: str, ctx: _Ctx) -> RegionFeatures:
    dim = ctx.dim
    try:
        npz = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise FeatureFormatError(src, "bad_npz", f"not a readable .npz file ({exc})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise FeatureFormatError(src, "bad_npz", "not a readable .npz file (a single .npy array, not an archive)")
    with npz:
        for key in ("features", "norm_bb"):
            if key not in npz.files:
                raise FeatureFormatError(src, "missing_key", f"missing (has {sorted(npz.files)})", None, key, "key")
        feats = _npz_get(npz, "features", src)
        norm_bb = _npz_get(npz, "norm_bb", src)
        if feats.ndim != 2:
            raise FeatureFormatError(src, "dimension", f"expected [N, D], got shape {feats.shape}", None,
                                     "features", "key")
        n = feats.shape[0]
        if n and not feats.shape[1]:
            raise FeatureFormatError(src, "dimension", f"no values for {n} boxes", None, "features", "key")
        if dim is not None and n and feats.shape[1] != dim:
            raise FeatureFormatError(src, "dimension", f"dimension {feats.shape[1]} per box, expected {dim}", None,
                                     "features", "key")
        if norm_bb.ndim != 2 or norm_bb.shape[1] < 4:
            raise FeatureFormatError(src, "dimension", f"expected [N, 6], got shape {norm_bb.shape}", None,
                                     "norm_bb", "key")
        if norm_bb.shape[0] != n:
            raise FeatureFormatError(src, "num_boxes_mismatch", f"{norm_bb.shape[0]} boxes but {n} feature rows",
                                     None, "norm_bb", "key")
        conf = _npz_get(npz, "conf", src) if "conf" in npz.files else None
        soft = _npz_get(npz, "soft_labels", src) if "soft_labels" in npz.files else None
        size = None
        for wk, hk in (("image_w", "image_h"), ("img_w", "img_h")):
            if wk in npz.files and hk in npz.files:
                size = (_npz_size(npz, wk, src), _npz_size(npz, hk, src))
                break
    if conf is not None:
        conf = conf.reshape(-1)
        if conf.shape[0] != n:
            raise FeatureFormatError(src, "num_boxes_mismatch", f"{conf.shape[0]} values for {n} boxes", None,
                                     "conf", "key")
    if soft is not None and (soft.ndim != 2 or soft.shape[0] != n):
        raise FeatureFormatError(src, "num_boxes_mismatch", f"expected [{n}, C], got shape {soft.shape}", None,
                                 "soft_labels", "key")
    with np.errstate(over="ignore", invalid="ignore"):  # values beyond float32 become inf: reported just below
        arrays = {"features": feats.astype(np.float32), "norm_bb": norm_bb[:, :4].astype(np.float32),
                  "conf": None if conf is None else conf.astype(np.float32),
                  "soft_labels": None if soft is None else soft.astype(np.float32)}
    for key, arr in arrays.items():
        if arr is not None:
            _finite(arr, src, None, key, "key")
    boxes = arrays["norm_bb"]
    w = h = 1
    if size is not None:
        w, h = size
        boxes = boxes * np.array([w, h, w, h], dtype=np.float32)
    boxes = _checked_boxes(boxes, w, h, src, None, "norm_bb", ctx, "key")
    rec = RegionFeatures(image_id, w, h, boxes, arrays["features"], cls_prob=arrays["soft_labels"],
                         obj_conf=arrays["conf"])
    _fill_predictions(rec)
    return rec


# ---------------------------------------------------------------------------------------------------------------
# Public reader
# ---------------------------------------------------------------------------------------------------------------

def read_features(path: str | os.PathLike, input_format: str, skip_bad: bool = False, summary: dict | None = None,
                  feature_dim: int | None = None, image_id_regex: str | None = None,
                  clip_boxes: bool = False, keep: Callable[[str], bool] | None = None) -> Iterator[RegionFeatures]:
    """Stream the images of a feature dump (a file, a ``.gz`` file, or a directory of them) in file/line order.

    ``feature_dim`` (optional) rejects records of another dimension; without it the first image with boxes fixes
    the dimension of the dump and a later image of another one is an error. ``image_id_regex`` (optional) maps the
    raw id field (or, for ``uniter-npz``, the file name without ``.npz``) to the image id: the first participating
    group (or the whole match);
    all-digit results are normalised with ``int`` (``COCO_val2014_000000391895`` with ``(\\d+)$`` -> ``"391895"``).
    Without it ids are kept as written, except ``unimo-img2txt`` which applies the official ``int(id[9:])``.

    ``uniter-npz``: the npz files carry no image size, so boxes stay normalised (``norm_bb[:, :4]``) with
    ``image_w = image_h = 1`` -- the 5-d locations of :func:`region_inputs` are then exactly UNITER's. If the npz
    holds ``image_w``/``image_h`` (or ``img_w``/``img_h``) the boxes are scaled back to pixels.

    Boxes outside the image (by more than :data:`BOX_TOLERANCE` of its side) or inverted (``x2 < x1``,
    ``y2 < y1``) are errors; ``clip_boxes=True`` clips them instead (:func:`clip_boxes_to_image`) and counts them
    in ``summary["clipped_boxes"]`` / ``["clipped_images"]``. LXMERT object / attribute ids must be >= 0.

    Bad records raise :class:`FeatureFormatError` (a :class:`~unimo.utils.errors.DataError`) naming file, line and
    field; with ``skip_bad=True`` they are skipped and counted by reason into ``summary`` (``summary["skipped"]``),
    which also receives ``files``, ``lines``, ``images``, ``boxes`` and ``repeated_lines`` (caption lines of an
    image already read: the caption formats repeat the image on every line). Duplicate ids in the other formats are
    errors. A truncated or corrupt ``.gz`` file is an error (also with ``skip_bad``) naming the line reached.
    Missing inputs raise ``FileNotFoundError``. Each record's ``location`` is ``(file, line)``.

    ``keep`` (sharding): only images whose id it accepts are parsed and yielded; the others are counted in
    ``summary["other_shard_lines"]`` (lines, or npz files) without decoding their arrays. ``summary["lines"]``
    still counts every record line read, so its value when a record is yielded is the record's position in the
    whole dump, the same in every shard.
    """
    if input_format not in FORMATS:
        raise ValueError(f"unknown feature format {input_format!r}; choose one of {', '.join(FORMATS)}")
    if feature_dim is not None and int(feature_dim) <= 0:
        raise UserError(f"must be positive, got {feature_dim}", field="--feature-dim")
    ctx = _Ctx(skip_bad=skip_bad, summary=_new_summary(summary), dim=feature_dim, clip_boxes=clip_boxes, keep=keep)
    if keep is not None:
        ctx.summary.setdefault("other_shard_lines", 0)
    id_fn = _image_id_fn(input_format, image_id_regex)
    if input_format == "uniter-npz":
        files = _expand_inputs(path, ".npz")
        return _read_uniter(files, ctx, id_fn)
    files = _expand_inputs(path)
    return _read_text(files, input_format, ctx, id_fn)


# ---------------------------------------------------------------------------------------------------------------
# Writers (atomic: a temporary name renamed at the end)
# ---------------------------------------------------------------------------------------------------------------

def b64_array(arr: np.ndarray, dtype: str = "<f4") -> str:
    """Base64 of the raw little-endian bytes, as the TSV dumps store arrays."""
    return _b64.b64encode(np.ascontiguousarray(arr, dtype=np.dtype(dtype)).tobytes()).decode("ascii")


def atomic_text_file(path: str | os.PathLike):
    """Write text to ``path`` through a temporary sibling; gzip when the name ends in ``.gz``; rename on success."""
    from ..utils.io import atomic_write

    return atomic_write(path, "w")


def _need(value: np.ndarray | None, what: str, rec: RegionFeatures, writer: str) -> np.ndarray:
    if value is None:
        raise ValueError(f"{writer}: image {rec.image_id!r} has no {what}")
    return value


def write_butd_tsv(path: str | os.PathLike, records: Iterable[RegionFeatures]) -> int:
    """BUTD ``generate_tsv.py`` layout (6 tab fields). The layout has no class fields; those are not written."""
    count = 0
    with atomic_text_file(path) as fh:
        for rec in records:
            fh.write("\t".join([rec.image_id, str(rec.image_w), str(rec.image_h), str(rec.num_boxes),
                                b64_array(rec.boxes), b64_array(rec.features)]) + "\n")
            count += 1
    return count


def write_lxmert_tsv(path: str | os.PathLike, records: Iterable[RegionFeatures], fill_missing: bool = False) -> int:
    """LXMERT layout (10 tab fields, h before w). Object/attribute ids and confidences come from the record
    (or its ``cls_prob``/``attr_prob``); a record without them is an error unless ``fill_missing`` writes zeros."""
    count = 0
    with atomic_text_file(path) as fh:
        for rec in records:
            n = rec.num_boxes
            zeros = (np.zeros(n, np.int64), np.zeros(n, np.float32))
            obj = rec.object_predictions() or (zeros if fill_missing else None)
            attr = rec.attribute_predictions() or (zeros if fill_missing else None)
            obj = _need(obj, "object ids/confidences (obj_id/obj_conf or cls_prob)", rec, "write_lxmert_tsv")
            attr = _need(attr, "attribute ids/confidences (attr_id/attr_conf or attr_prob)", rec, "write_lxmert_tsv")
            fh.write("\t".join([rec.image_id, str(rec.image_h), str(rec.image_w), b64_array(obj[0], "<i8"),
                                b64_array(obj[1]), b64_array(attr[0], "<i8"), b64_array(attr[1]), str(n),
                                b64_array(rec.boxes), b64_array(rec.features)]) + "\n")
            count += 1
    return count


def write_unimo_retrieval_tsv(path: str | os.PathLike, records: Iterable[RegionFeatures]) -> int:
    """Official UNIMO retrieval image shard (7 tab fields); ``probs`` is empty when the record has no cls_prob."""
    count = 0
    with atomic_text_file(path) as fh:
        for rec in records:
            probs = b64_array(rec.cls_prob) if rec.cls_prob is not None else ""
            fh.write("\t".join([rec.image_id, str(rec.image_w), str(rec.image_h), str(rec.num_boxes),
                                b64_array(rec.boxes), b64_array(rec.features), probs]) + "\n")
            count += 1
    return count


def _ids(seq: Sequence[int]) -> str:
    return " ".join(str(int(i)) for i in seq)


_EMPTY_CAPTION = (0, 2)  # [CLS] [SEP]


def write_unimo_img2txt(path: str | os.PathLike, records: Iterable[RegionFeatures],
                        captions: Mapping[str, Sequence[Sequence[int]]] | None = None,
                        id_prefix: str = "COCO_val_") -> int:
    """Official UNIMO caption lines (16 ``;`` fields), one line per caption; returns the number of lines.

    ``captions[image_id]`` lists model token ids per caption (with ``[CLS]``/``[SEP]``); images without captions
    get one line with ``[CLS] [SEP]``. The image id field is ``id_prefix`` (9 characters, the official reader strips
    them) + the integer id. ``sent_ids`` are 0, ``pos_ids`` count from 0, ``seg_labels`` are 0 and
    ``node_attr_b``/``node_attr_e``/``label`` are ``0`` placeholders (the fine-tuning readers ignore them).
    """
    if len(id_prefix) != UNIMO_IMG2TXT_ID_PREFIX_LEN:
        raise ValueError(f"id_prefix must have {UNIMO_IMG2TXT_ID_PREFIX_LEN} characters, got {id_prefix!r}")
    count = 0
    with atomic_text_file(path) as fh:
        for rec in records:
            if not rec.image_id.isdigit():
                raise ValueError(f"write_unimo_img2txt: image id {rec.image_id!r} is not an integer (the official "
                                 "reader int()s it)")
            image_part = ";".join([str(rec.image_h), str(rec.image_w), str(rec.num_boxes), b64_array(rec.boxes),
                                   b64_array(rec.cls_prob) if rec.cls_prob is not None else "",
                                   b64_array(rec.attr_prob) if rec.attr_prob is not None else "",
                                   b64_array(rec.features)])
            caps = list((captions or {}).get(rec.image_id, [])) or [_EMPTY_CAPTION]
            for k, tokens in enumerate(caps):
                n = len(tokens)
                fh.write(";".join([f"{id_prefix}{rec.image_id}", f"{rec.image_id}_{k}", _ids(tokens), _ids([0] * n),
                                   _ids(range(n)), _ids([0] * n), "0", "0", image_part, "0"]) + "\n")
                count += 1
    return count


def write_unimo_ve(path: str | os.PathLike, records: Iterable[RegionFeatures],
                   hypotheses: Mapping[str, Sequence[tuple[Sequence[int], int]]] | None = None) -> int:
    """Official UNIMO SNLI-VE lines (14 ``;`` fields, ``image_w`` before ``image_h``); returns the number of lines.

    ``hypotheses[image_id]`` lists ``(token_ids, label)``; images without get one ``[CLS] [SEP]`` line, label 0.
    The three unused fields are written empty.
    """
    count = 0
    with atomic_text_file(path) as fh:
        for rec in records:
            hyps = list((hypotheses or {}).get(rec.image_id, [])) or [(_EMPTY_CAPTION, 0)]
            for k, (tokens, label) in enumerate(hyps):
                n = len(tokens)
                fh.write(";".join([rec.image_id, f"{rec.image_id}#{k}", str(int(label)), _ids(tokens), _ids([0] * n),
                                   _ids(range(n)), "", str(rec.image_w), str(rec.image_h), str(rec.num_boxes),
                                   b64_array(rec.boxes), b64_array(rec.features), "", ""]) + "\n")
                count += 1
    return count


def write_uniter_npz_dir(path: str | os.PathLike, records: Iterable[RegionFeatures], compressed: bool = False) -> int:
    """UNITER per-image npz files ``<image_id>.npz`` in directory ``path`` (created; must not exist).

    ``norm_bb`` = ``[x1/W, y1/H, x2/W, y2/H, w/W, h/H]``; ``conf`` and ``soft_labels`` are written when the record
    has confidences / ``cls_prob``. The directory appears only when every file is written.
    """
    from ..utils.io import atomic_directory

    out = Path(path)
    if out.exists():
        raise FileExistsError(f"write_uniter_npz_dir: {out} already exists")
    save = np.savez_compressed if compressed else np.savez
    count = 0
    with atomic_directory(out) as tmp_dir:  # the directory appears only when every file is written
        tmp = Path(tmp_dir)
        for rec in records:
            if "/" in rec.image_id or rec.image_id.startswith("."):
                raise ValueError(f"write_uniter_npz_dir: image id {rec.image_id!r} is not a usable file name")
            scale = np.array([rec.image_w, rec.image_h, rec.image_w, rec.image_h], dtype=np.float32)
            xyxy = rec.boxes / scale
            norm_bb = np.concatenate([xyxy, xyxy[:, 2:3] - xyxy[:, 0:1], xyxy[:, 3:4] - xyxy[:, 1:2]], axis=1)
            arrays = {"features": rec.features, "norm_bb": norm_bb.astype(np.float32)}
            obj = rec.object_predictions()
            if obj is not None:
                arrays["conf"] = obj[1]
            if rec.cls_prob is not None:
                arrays["soft_labels"] = rec.cls_prob
            target = tmp / f"{rec.image_id}.npz"
            if target.exists():
                raise ValueError(f"write_uniter_npz_dir: duplicate image id {rec.image_id!r}")
            with open(target, "wb") as fh:
                save(fh, **arrays)
            count += 1
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private
    return count


WRITERS: dict[str, Callable[..., int]] = {
    "butd": write_butd_tsv,
    "lxmert": write_lxmert_tsv,
    "unimo-img2txt": write_unimo_img2txt,
    "unimo-ve": write_unimo_ve,
    "unimo-retrieval": write_unimo_retrieval_tsv,
    "uniter-npz": write_uniter_npz_dir,
}
