"""The canonical region-feature store: random access by image id without loading the dump.

Layout of a store directory (all little-endian, row-major)::

    meta.json        format name/version, dtype, feature_dim, num_classes, num_attr_classes, counts, field table
    image_ids.json   list of image ids (str), row i of the index
    index.npy        int64 [num_images, 2]: first box row, number of boxes
    sizes.npy        int32 [num_images, 2]: image_w, image_h
    <field>.bin      one raw array per field, [total_boxes, width] (or [total_boxes]), opened with np.memmap
    order.npy        (shard stores only) int64 [num_images]: each image's position in the whole, unsharded input

A *sharded* store (issue 13) is a directory of shard stores ``shard-IIIII-of-NNNNN/`` (what ``--num-shards N
--shard I`` writes under ``--output``), or a JSON manifest ``{"format": "unimo-feature-store-shards", "version": 1,
"shards": [paths relative to the manifest]}`` listing any stores. :meth:`FeatureStore.open` opens either as one
store (:class:`ShardedFeatureStore`): the same random access by image id, and -- when the shards are the N shards
of one run -- the images in the order of the unsharded run (else shard after shard). A duplicate image id across
shards, or shards whose dtype, feature dimension or fields differ, is an error naming both shards.
:func:`merge_feature_stores` (``python -m preprocess.features merge``) writes one store from them, byte for byte
the store the unsharded run writes.

Fields: ``features`` and the class distributions (``cls_prob``, ``attr_prob``) use the store dtype (float32 or
float16); ``boxes``/``obj_conf``/``attr_conf`` stay float32 (pixel coordinates lose precision in float16) and
``obj_id``/``attr_id`` are int32. Writing is streamed (one image at a time, appended to the field files) into a
temporary sibling directory that :meth:`FeatureStoreWriter.close` moves into place
(:func:`unimo.utils.io.atomic_directory`), so a failed or interrupted conversion leaves nothing at the target path. ``overwrite=True`` replaces only the files a store consists of
(:data:`STORE_FILES`) and refuses a directory that holds anything else.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import weakref
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from ..utils.errors import UserError
from ..utils.io import atomic_directory
from ..utils.shards import PARTITION_RULE, find_shards, parse_shard_name
from .feature_formats import RegionFeatures, box_problems

STORE_FORMAT = "unimo-feature-store"
STORE_VERSION = 1
_META = "meta.json"
_IDS = "image_ids.json"
_INDEX = "index.npy"
_SIZES = "sizes.npy"
_ORDER = "order.npy"
MANIFEST_FORMAT = "unimo-feature-store-shards"

# field -> (dtype; None = the store dtype, width key in meta or a fixed int; 0 = one value per box)
_FIELD_SPECS: dict[str, tuple[str | None, str | int]] = {
    "features": (None, "feature_dim"),
    "boxes": ("float32", 4),
    "cls_prob": (None, "num_classes"),
    "obj_conf": ("float32", 0),
    "obj_id": ("int32", 0),
    "attr_prob": (None, "num_attr_classes"),
    "attr_id": ("int32", 0),
    "attr_conf": ("float32", 0),
}
_OPTIONAL = ("cls_prob", "obj_conf", "obj_id", "attr_prob", "attr_id", "attr_conf")
_DTYPES = ("float32", "float16")
# every name a store directory consists of: the only entries ``overwrite=True`` may replace
STORE_FILES = frozenset({_META, _IDS, _INDEX, _SIZES, _ORDER, *(f"{name}.bin" for name in _FIELD_SPECS)})
_INT32_MAX = 2 ** 31 - 1


class StoreExistsError(UserError, FileExistsError):
    """The output of a store exists (without ``overwrite``) or holds files that are not a store's."""


class StoreFormatError(UserError, ValueError):
    """A directory that is not a (complete) feature store."""


class _Aborted(Exception):
    pass


def check_store_destination(path: str | os.PathLike, overwrite: bool) -> None:
    """Refuse an existing ``path`` unless ``overwrite``; even then refuse one that is not a directory or holds
    anything a store does not consist of (other files, sub-folders): ``--overwrite`` never deletes those."""
    p = Path(path)
    if not (p.exists() or p.is_symlink()):
        return
    if not overwrite:
        raise StoreExistsError("already exists", file=str(p), hint="pass --overwrite to replace the feature store "
                               "there, or choose another output")
    if not p.is_dir():
        raise StoreExistsError("exists and is not a directory; refusing to overwrite it", file=str(p),
                               hint="choose another output")
    foreign = sorted(name + ("/" if (p / name).is_dir() else "") for name in os.listdir(p) if name not in STORE_FILES)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f", ... ({len(foreign)} entries)" if len(foreign) > 5 else "")
        raise StoreExistsError(f"holds entries a feature store does not consist of ({shown}); refusing to "
                               "overwrite it", file=str(p),
                               hint="--overwrite only replaces a store's own files: move the others away or "
                                    "choose another output")


def _cleanup_tmp(tmp: str, handles: list[IO[bytes]]) -> None:
    for fh in handles:
        try:
            fh.close()
        except OSError:
            pass
    shutil.rmtree(tmp, ignore_errors=True)


def _with_predictions(rec: RegionFeatures) -> RegionFeatures:
    """Add object/attribute ids+confidences derived from the class distributions when missing, so they survive
    even when the distributions themselves are not stored (``class_probs=False``). The caller's object is kept."""
    updates = {}
    if rec.obj_conf is None or rec.obj_id is None:
        pred = rec.object_predictions()
        if pred is not None:
            updates["obj_id"], updates["obj_conf"] = pred
    if rec.attr_conf is None or rec.attr_id is None:
        pred = rec.attribute_predictions()
        if pred is not None:
            updates["attr_id"], updates["attr_conf"] = pred
    return dataclasses.replace(rec, **updates) if updates else rec


class FeatureStoreWriter:
    """Stream :class:`RegionFeatures` into a new store at ``path``.

    ``num_classes`` / ``num_attr_classes``: ``None`` takes them (and the presence of every optional field) from
    the first image that has boxes; an int requires every image to carry ``cls_prob`` of that width.
    ``class_probs=False`` drops ``cls_prob``/``attr_prob`` explicitly (they are ~40x the size of the rest for the
    1601-class BUTD detector); derived object ids/confidences are kept. Images must all carry the same optional
    fields (images with zero boxes are exempt). A duplicate image id, a dimension mismatch or NaN/inf raises
    ``ValueError``. Use as a context manager: an exception inside the block removes the partial store.
    ``shard=(I, N)`` writes shard I of N of a sharded run: every :meth:`add` then gives the image's ``position``
    in the whole input (stored in ``order.npy``, so readers and the merge restore the unsharded order).
    """

    def __init__(self, path: str | os.PathLike, feature_dim: int, num_classes: int | None = None,
                 dtype: str = "float32", overwrite: bool = False, num_attr_classes: int | None = None,
                 class_probs: bool = True, shard: tuple[int, int] | None = None) -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"store dtype must be one of {_DTYPES}, got {dtype!r}")
        if int(feature_dim) <= 0:
            raise ValueError(f"feature_dim must be positive, got {feature_dim}")
        self.path = Path(path)
        check_store_destination(self.path, overwrite)
        self.dtype = dtype
        self.feature_dim = int(feature_dim)
        self.num_classes = num_classes if class_probs else None
        self.num_attr_classes = num_attr_classes if class_probs else None
        self.class_probs = class_probs
        self.overwrite = overwrite
        self.shard = shard
        self._positions: list[int] = []
        # the temporary sibling directory; its entries replace the store's own files at close()
        self._install_ctx = atomic_directory(self.path, STORE_FILES)
        self._tmp = self._install_ctx.__enter__()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self._tmp, 0o777 & ~umask)  # mkdtemp makes it private; a store is as readable as a plain mkdir
        self._handles: list[IO[bytes]] = []
        self._files: dict[str, IO[bytes]] = {}
        # None until the first image with boxes fixes which optional fields the store holds.
        self._fields: tuple[str, ...] | None = None
        self._ids: list[str] = []
        self._id_set: set[str] = set()
        self._index: list[tuple[int, int]] = []
        self._sizes: list[tuple[int, int]] = []
        self._rows = 0
        self._state = "open"
        # Removes the temporary directory if the writer is dropped without close()/abort().
        self._finalizer = weakref.finalize(self, _cleanup_tmp, self._tmp, self._handles)

    def _open_fields(self, rec: RegionFeatures) -> None:
        fields = ["features", "boxes"]
        for name in _OPTIONAL:
            if name in ("cls_prob", "attr_prob") and not self.class_probs:
                continue
            if getattr(rec, name) is not None:
                fields.append(name)
        for name, attr in (("cls_prob", "num_classes"), ("attr_prob", "num_attr_classes")):
            if not self.class_probs:
                continue
            if name in fields and getattr(self, attr) is None:
                setattr(self, attr, getattr(rec, name).shape[1])
            elif name not in fields and getattr(self, attr) is not None:
                raise ValueError(f"feature store {self.path}: image {rec.image_id!r} has no '{name}' but "
                                 f"{attr}={getattr(self, attr)} was requested")
        self._fields = tuple(fields)

    def _width(self, name: str) -> int:
        width = _FIELD_SPECS[name][1]
        return int(getattr(self, width)) if isinstance(width, str) else width

    def _dtype(self, name: str) -> str:
        return _FIELD_SPECS[name][0] or self.dtype

    def _check(self, rec: RegionFeatures) -> None:
        where = f"feature store {self.path}: image {rec.image_id!r}"
        if rec.image_id in self._id_set:
            raise ValueError(f"{where}: duplicate image id")
        if not (0 < rec.image_w <= _INT32_MAX and 0 < rec.image_h <= _INT32_MAX):
            raise ValueError(f"{where}: image size {rec.image_w}x{rec.image_h} is not positive (or too large)")
        if rec.num_boxes == 0:
            return
        problem = box_problems(rec.boxes, rec.image_w, rec.image_h)
        if problem is not None:
            raise ValueError(f"{where}: field 'boxes': {problem[1]}")
        for name in ("obj_id", "attr_id"):
            ids = getattr(rec, name)
            if ids is not None and ids.size and not (0 <= int(ids.min()) and int(ids.max()) <= _INT32_MAX):
                raise ValueError(f"{where}: field '{name}': class ids must be in [0, {_INT32_MAX}], got "
                                 f"[{int(ids.min())}, {int(ids.max())}]")
        if rec.feature_dim != self.feature_dim:
            raise ValueError(f"{where}: feature dimension {rec.feature_dim}, store expects {self.feature_dim}")
        bad = rec.non_finite_field()
        if bad is not None:
            raise ValueError(f"{where}: field '{bad}' has NaN/inf values")
        assert self._fields is not None
        for name in _OPTIONAL:
            has = getattr(rec, name) is not None
            if name in self._fields and not has:
                hint = (" (drop class distributions with class_probs=False / --no-class-probs)"
                        if name in ("cls_prob", "attr_prob") else "")
                raise ValueError(f"{where}: lacks '{name}', which this store holds for every image{hint}")
            dropped = name in ("cls_prob", "attr_prob") and not self.class_probs
            if name not in self._fields and has and not dropped:
                raise ValueError(f"{where}: has '{name}', which the first image lacked (store fields: "
                                 f"{', '.join(self._fields)})")
        for name in ("cls_prob", "attr_prob"):
            if name in self._fields and getattr(rec, name).shape[1] != self._width(name):
                raise ValueError(f"{where}: '{name}' has {getattr(rec, name).shape[1]} classes, store expects "
                                 f"{self._width(name)}")

    def add(self, regions: RegionFeatures, position: int | None = None) -> None:
        """Append one image. Raises ``ValueError`` (duplicate id, wrong dimension, NaN/inf, missing field).
        ``position``: the image's index in the whole input, required for (and only for) a shard writer."""
        if self._state != "open":
            raise RuntimeError(f"feature store writer for {self.path} is {self._state}")
        if (position is None) != (self.shard is None):
            raise ValueError(f"feature store {self.path}: a position is given with, and only with, shard=(I, N)")
        if position is not None and self._positions and position <= self._positions[-1]:
            raise ValueError(f"feature store {self.path}: positions must increase ({position} after "
                             f"{self._positions[-1]})")
        regions = _with_predictions(regions)
        if self._fields is None and regions.num_boxes:
            self._open_fields(regions)
        self._check(regions)
        n = regions.num_boxes
        if n:
            assert self._fields is not None
            encoded = {}
            for name in self._fields:
                with np.errstate(over="ignore"):  # float16 overflow is reported just below, with the image id
                    arr = np.ascontiguousarray(getattr(regions, name),
                                               dtype=np.dtype(self._dtype(name)).newbyteorder("<"))
                if self.dtype == "float16" and arr.dtype.kind == "f" and arr.itemsize == 2 \
                        and not np.isfinite(arr).all():
                    raise ValueError(f"feature store {self.path}: image {regions.image_id!r} field '{name}' exceeds "
                                     "the float16 range (use a float32 store)")
                encoded[name] = arr
            for name, arr in encoded.items():
                fh = self._files.get(name)
                if fh is None:
                    fh = open(os.path.join(self._tmp, f"{name}.bin"), "wb")
                    self._files[name] = fh
                    self._handles.append(fh)
                fh.write(arr.tobytes())
        self._ids.append(regions.image_id)
        self._id_set.add(regions.image_id)
        self._index.append((self._rows, n))
        self._sizes.append((regions.image_w, regions.image_h))
        if position is not None:
            self._positions.append(int(position))
        self._rows += n

    def __len__(self) -> int:
        return len(self._ids)

    def close(self) -> None:
        """Finish the store: write index and metadata, then rename the temporary directory to ``path``."""
        if self._state != "open":
            if self._state == "closed":
                return
            raise RuntimeError(f"feature store writer for {self.path} was aborted")
        try:
            fields = self._fields or ("features", "boxes")
            for name in fields:  # fields with no rows yet (all images empty) still get their (empty) file
                if name not in self._files:
                    fh = open(os.path.join(self._tmp, f"{name}.bin"), "wb")
                    self._files[name] = fh
                    self._handles.append(fh)
            for fh in self._handles:
                fh.flush()
                os.fsync(fh.fileno())
                fh.close()
            np.save(os.path.join(self._tmp, _INDEX), np.asarray(self._index, dtype=np.int64).reshape(-1, 2))
            np.save(os.path.join(self._tmp, _SIZES), np.asarray(self._sizes, dtype=np.int32).reshape(-1, 2))
            with open(os.path.join(self._tmp, _IDS), "w", encoding="utf-8") as fh:
                json.dump(self._ids, fh)
            if self.shard is not None:
                np.save(os.path.join(self._tmp, _ORDER), np.asarray(self._positions, dtype=np.int64))
            meta = {
                "format": STORE_FORMAT, "version": STORE_VERSION, "dtype": self.dtype,
                "feature_dim": self.feature_dim,
                "num_classes": self.num_classes if "cls_prob" in fields else None,
                "num_attr_classes": self.num_attr_classes if "attr_prob" in fields else None,
                "num_images": len(self._ids), "num_boxes": self._rows,
                "fields": {name: {"dtype": self._dtype(name), "width": self._width(name)} for name in fields},
            }
            if self.shard is not None:
                meta["shard"] = {"index": int(self.shard[0]), "count": int(self.shard[1]), "partition": PARTITION_RULE}
            with open(os.path.join(self._tmp, _META), "w", encoding="utf-8") as fh:
                json.dump(meta, fh, indent=1)
            self._install()
        except BaseException:
            self.abort()
            raise
        self._state = "closed"
        self._finalizer.detach()

    def _install(self) -> None:
        check_store_destination(self.path, self.overwrite)  # again: something may have appeared while writing
        written = set(os.listdir(self._tmp))
        ctx, self._install_ctx = self._install_ctx, None
        ctx.__exit__(None, None, None)  # atomic_directory: the written entries replace the same-named ones
        for name in STORE_FILES - written:  # a field file of the replaced store that this one does not have
            stale = self.path / name
            if stale.is_file():
                stale.unlink()

    def abort(self) -> None:
        """Drop everything written so far; nothing is left at ``path`` (an existing store there is untouched)."""
        if self._state == "closed":
            return
        self._state = "aborted"
        self._finalizer()
        ctx, self._install_ctx = self._install_ctx, None
        if ctx is not None:
            try:
                ctx.__exit__(_Aborted, _Aborted(), None)  # removes the temporary directory
            except _Aborted:
                pass

    def __enter__(self) -> "FeatureStoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class FeatureStore:
    """Read-only random access to a store written by :class:`FeatureStoreWriter`.

    ``store[image_id]`` returns a :class:`RegionFeatures` of writable float32 copies (float16 stores are widened);
    only that image's rows are read from disk. Picklable (reopens by path), so it can go to DataLoader workers.
    """

    def __init__(self, path: Path, meta: dict, ids: list[str], index: np.ndarray, sizes: np.ndarray,
                 arrays: dict[str, np.ndarray]) -> None:
        self.path = path
        self.meta = meta
        self._ids = ids
        self._row = {image_id: i for i, image_id in enumerate(ids)}
        self._index = index
        self._sizes = sizes
        self._arrays = arrays

    @classmethod
    def open(cls, path: str | os.PathLike) -> "FeatureStore":
        """Open a store directory, a directory of shard stores or a shard manifest (see the module docstring)."""
        path = Path(path)
        if path.is_file():
            return ShardedFeatureStore.from_manifest(path)
        if path.is_dir() and not (path / _META).exists() and _has_shard_entries(path):
            return ShardedFeatureStore.from_directory(path)
        return cls._open_single(path)

    @classmethod
    def _open_single(cls, path: Path) -> "FeatureStore":
        meta_path = path / _META
        if not meta_path.is_file():
            if not path.exists():
                raise FileNotFoundError(f"feature store not found: {path}")
            raise StoreFormatError(f"not a feature store (no {_META}, no shard-IIIII-of-NNNNN stores)",
                                   file=str(path))
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise StoreFormatError(f"corrupt metadata ({exc})", file=str(meta_path)) from None
        if meta.get("format") != STORE_FORMAT or meta.get("version") != STORE_VERSION:
            raise StoreFormatError(f"not a {STORE_FORMAT} v{STORE_VERSION} store (format={meta.get('format')!r}, "
                                   f"version={meta.get('version')!r})", file=str(meta_path))
        ids = json.loads((path / _IDS).read_text(encoding="utf-8"))
        index = np.load(path / _INDEX)
        sizes = np.load(path / _SIZES)
        n_img, n_box = int(meta["num_images"]), int(meta["num_boxes"])
        if len(ids) != n_img or index.shape != (n_img, 2) or sizes.shape != (n_img, 2):
            raise StoreFormatError(f"index holds {len(ids)} ids / {index.shape} rows, meta says {n_img} images",
                                   file=str(path))
        if n_img and int((index[:, 0] + index[:, 1]).max()) > n_box:
            raise StoreFormatError(f"index points past {n_box} boxes", file=str(path))
        arrays: dict[str, np.ndarray] = {}
        for name, spec in meta["fields"].items():
            dtype = np.dtype(spec["dtype"]).newbyteorder("<")
            width = int(spec["width"])
            shape = (n_box, width) if width else (n_box,)
            fpath = path / f"{name}.bin"
            expected = n_box * max(width, 1) * dtype.itemsize
            actual = fpath.stat().st_size if fpath.exists() else -1
            if actual != expected:
                raise StoreFormatError(f"{actual} bytes, expected {expected} (store incomplete or corrupt)",
                                       file=str(fpath))
            arrays[name] = np.memmap(fpath, dtype=dtype, mode="r", shape=shape) if n_box else np.zeros(shape, dtype)
        return cls(path, meta, ids, index, sizes, arrays)

    # -- mapping interface -------------------------------------------------------------------------------------
    def __getitem__(self, image_id: str | int) -> RegionFeatures:
        key = str(image_id)
        row = self._row.get(key)
        if row is None:
            raise KeyError(f"image id {key!r} is not in feature store {self.path}")
        return self._record(row)

    def _record(self, row: int) -> RegionFeatures:
        key = self._ids[row]
        start, count = (int(v) for v in self._index[row])
        w, h = (int(v) for v in self._sizes[row])
        out: dict[str, np.ndarray] = {}
        for name, arr in self._arrays.items():
            part = arr[start:start + count]
            # np.array copies out of the memmap (and widens float16), so callers may modify the result.
            out[name] = np.array(part, dtype=np.float32 if part.dtype.kind == "f" else np.int64)
        if "features" not in out or out["features"].ndim != 2:
            raise ValueError(f"{self.path}: store has no features field")
        return RegionFeatures(key, w, h, **out)

    def get(self, image_id: str | int, default: RegionFeatures | None = None) -> RegionFeatures | None:
        return self[image_id] if str(image_id) in self._row else default

    def __contains__(self, image_id: object) -> bool:
        return str(image_id) in self._row

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def image_ids(self) -> list[str]:
        return list(self._ids)

    def num_boxes(self, image_id: str | int) -> int:
        row = self._row.get(str(image_id))
        if row is None:
            raise KeyError(f"image id {str(image_id)!r} is not in feature store {self.path}")
        return int(self._index[row, 1])

    @property
    def feature_dim(self) -> int:
        return int(self.meta["feature_dim"])

    @property
    def num_classes(self) -> int | None:
        return self.meta.get("num_classes")

    @property
    def dtype(self) -> str:
        return str(self.meta["dtype"])

    @property
    def fields(self) -> list[str]:
        return list(self.meta["fields"])

    def close(self) -> None:
        """Release the memory maps (the store stays usable only after reopening)."""
        self._arrays = {}

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict) -> None:
        other = FeatureStore.open(state["path"])
        self.__dict__.update(other.__dict__)

    def __repr__(self) -> str:
        return (f"FeatureStore({str(self.path)!r}, images={len(self)}, boxes={self.meta['num_boxes']}, "
                f"dim={self.feature_dim}, dtype={self.dtype}, fields={self.fields})")


def _has_shard_entries(path: Path) -> bool:
    return any(parse_shard_name(entry.name) is not None for entry in path.iterdir())


def _read_manifest(path: Path) -> list[Path]:
    size = path.stat().st_size
    if size > 16 * 2 ** 20:  # a manifest lists paths; this is some other file (a dump?): do not read it all
        raise StoreFormatError(f"not a feature store or shard manifest (a {size / 2 ** 20:.0f} MB file)",
                               file=str(path), hint="a store is a directory; convert a dump with "
                               "python -m preprocess.features convert")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreFormatError(f"not a feature store or shard manifest (not JSON: {exc})", file=str(path)) from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or data.get("version") != 1:
        raise StoreFormatError(f"not a shard manifest (expected {{\"format\": \"{MANIFEST_FORMAT}\", \"version\": 1, "
                               "\"shards\": [...]})", file=str(path))
    shards = data.get("shards")
    if not isinstance(shards, list) or not shards or not all(isinstance(s, str) and s for s in shards):
        raise StoreFormatError("field 'shards' must be a non-empty list of store paths", file=str(path))
    return [path.parent / s for s in shards]


def write_manifest(path: str | os.PathLike, stores: list[str | os.PathLike]) -> Path:
    """Write a shard manifest listing ``stores`` (stored relative to the manifest's folder when below it)."""
    from ..utils.io import write_json_atomic

    path = Path(path)
    base = path.parent.resolve()
    names = []
    for store in stores:
        p = Path(store).resolve()
        names.append(os.path.relpath(p, base) if p.is_relative_to(base) else str(p))
    write_json_atomic(path, {"format": MANIFEST_FORMAT, "version": 1, "shards": names})
    return path


def _shard_label(store: FeatureStore) -> str:
    return str(store.path)


class ShardedFeatureStore(FeatureStore):
    """Several stores read as one (a directory of shard stores or a manifest): see the module docstring."""

    def __init__(self, path: Path, shards: list[FeatureStore]) -> None:  # noqa: D107 (no FeatureStore.__init__)
        self.path = path
        self._shards = shards
        self._check_agree(shards)
        counts = [len(s) for s in shards]
        shard_col = np.repeat(np.arange(len(shards), dtype=np.int32), counts)
        local = np.concatenate([np.arange(n, dtype=np.int64) for n in counts]) if shards else np.zeros(0, np.int64)
        infos = [s.meta.get("shard") for s in shards]
        one_run = (all(isinstance(i, dict) for i in infos) and sorted(i["index"] for i in infos) == list(range(len(shards)))
                   and all(i["count"] == len(shards) for i in infos)
                   and all((s.path / _ORDER).is_file() for s in shards))
        if one_run:  # the shards of one run: restore the order of the unsharded run
            positions = np.concatenate([np.load(s.path / _ORDER) for s in shards])
            if len(positions) != len(shard_col):
                raise StoreFormatError(f"{_ORDER} of a shard does not match its image count", file=str(path))
            order = np.argsort(positions, kind="stable")
            shard_col, local = shard_col[order], local[order]
        ids: list[str] = []
        row: dict[str, int] = {}
        for g, (s, r) in enumerate(zip(shard_col.tolist(), local.tolist())):
            image_id = shards[s]._ids[r]
            other = row.setdefault(image_id, g)
            if other != g:
                raise StoreFormatError(f"image id {image_id!r} is in two shards: {_shard_label(shards[shard_col[other]])} "
                                       f"and {_shard_label(shards[s])}", file=str(path),
                                       hint="a sharded store holds every image once")
            ids.append(image_id)
        self._ids, self._row = ids, row
        self._shard_col, self._local = shard_col, local
        ref = next((s for s in shards if s.meta["num_boxes"]), shards[0])
        self.meta = {key: ref.meta[key] for key in ("format", "version", "dtype", "feature_dim", "num_classes",
                                                     "num_attr_classes", "fields")}
        self.meta.update(num_images=len(ids), num_boxes=int(sum(s.meta["num_boxes"] for s in shards)),
                         shards=[str(s.path) for s in shards], shard_order="unsharded run" if one_run else "listed")

    @staticmethod
    def _check_agree(shards: list[FeatureStore]) -> None:
        first = shards[0]
        with_boxes = [s for s in shards if s.meta["num_boxes"]]
        for s in shards[1:]:
            for key in ("dtype", "feature_dim"):
                if s.meta[key] != first.meta[key]:
                    raise StoreFormatError(f"shards disagree on {key}: {first.meta[key]!r} in "
                                           f"{_shard_label(first)}, {s.meta[key]!r} in {_shard_label(s)}",
                                           file=str(s.path))
        for s in with_boxes[1:]:
            ref = with_boxes[0]
            for key in ("fields", "num_classes", "num_attr_classes"):
                if s.meta.get(key) != ref.meta.get(key):
                    what = (sorted(ref.meta[key]), sorted(s.meta[key])) if key == "fields" else \
                        (ref.meta.get(key), s.meta.get(key))
                    raise StoreFormatError(f"shards disagree on {key}: {what[0]} in {_shard_label(ref)}, {what[1]} "
                                           f"in {_shard_label(s)}", file=str(s.path))

    @classmethod
    def from_directory(cls, path: Path) -> "ShardedFeatureStore":
        try:
            entries = find_shards(path)
        except UserError as exc:
            raise StoreFormatError(exc.message, file=exc.file, hint=exc.hint) from None
        return cls(path, [FeatureStore._open_single(e) for e in entries])

    @classmethod
    def from_manifest(cls, path: Path) -> "ShardedFeatureStore":
        stores = []
        for p in _read_manifest(path):
            if not p.exists():
                raise FileNotFoundError(f"feature store not found: {p} (listed in {path})")
            store = FeatureStore.open(p)
            stores.extend(store._shards if isinstance(store, ShardedFeatureStore) else [store])
        return cls(path, stores)

    @property
    def shards(self) -> list[FeatureStore]:
        return list(self._shards)

    def _record(self, row: int) -> RegionFeatures:
        return self._shards[int(self._shard_col[row])]._record(int(self._local[row]))

    def num_boxes(self, image_id: str | int) -> int:
        row = self._row.get(str(image_id))
        if row is None:
            raise KeyError(f"image id {str(image_id)!r} is not in feature store {self.path}")
        return int(self._shards[int(self._shard_col[row])]._index[int(self._local[row]), 1])

    def close(self) -> None:
        for s in self._shards:
            s.close()

    def __repr__(self) -> str:
        return (f"ShardedFeatureStore({str(self.path)!r}, shards={len(self._shards)}, images={len(self)}, "
                f"boxes={self.meta['num_boxes']}, dim={self.feature_dim}, dtype={self.dtype}, fields={self.fields})")


def merge_feature_stores(source: str | os.PathLike, output: str | os.PathLike, overwrite: bool = False,
                         progress: bool = True) -> FeatureStore:
    """Write the images of ``source`` (a sharded store, or any store) into one new store at ``output``, in
    ``source``'s order; for the N shards of one run this is byte for byte the store the unsharded run writes."""
    from tqdm import tqdm

    src = FeatureStore.open(source)
    check_store_destination(output, overwrite)
    meta = src.meta
    with FeatureStoreWriter(output, src.feature_dim, dtype=src.dtype, overwrite=overwrite) as writer:
        for row in tqdm(range(len(src)), desc="merge", unit="img", disable=not progress):
            writer.add(src._record(row))
    merged = FeatureStore.open(output)
    if merged.meta["num_boxes"] != meta["num_boxes"] or len(merged) != len(src):
        raise RuntimeError(f"merge of {source} wrote {len(merged)} images, expected {len(src)}")
    return merged
