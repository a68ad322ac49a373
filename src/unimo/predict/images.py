"""Region features for a folder of raw images, extracted on demand with a registered extractor backend.

:class:`ImageFolderFeatures` looks like a :class:`~unimo.reader.features.FeatureStore` to
:class:`~unimo.reader.image_batch.ImageBatcher` (``id in source``, ``source[id]``, ``feature_dim``,
``image_ids()``). :meth:`ImageFolderFeatures.prepare` runs the backend (``preprocess.extractors``) on the images
not seen yet and writes them into a new small feature store under a temporary folder -- exactly what
``python -m preprocess.extract_features`` writes, so predictions from ``--images`` equal those from ``--features``
on a store extracted from the same files. The folder is removed by :meth:`close`.
"""
from __future__ import annotations

import importlib
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Iterator

from tqdm import tqdm

from ..reader.features import FeatureStore, FeatureStoreWriter, RegionFeatures
from .errors import PredictError, UnknownImageError


def extraction_module() -> ModuleType:
    """``preprocess.extract_features`` (a top-level folder of the repository, not an installed package)."""
    try:
        return importlib.import_module("preprocess.extract_features")
    except ModuleNotFoundError as exc:
        if exc.name not in ("preprocess", "preprocess.extract_features"):
            raise
    root = Path(__file__).resolve().parents[3]  # src/unimo/predict/images.py -> repository root
    if not (root / "preprocess" / "extractors").is_dir():
        raise PredictError("--images needs the repository's `preprocess` package (preprocess/extractors); run from "
                           "the repository root or put it on PYTHONPATH, or extract a feature store first with "
                           "`python -m preprocess.extract_features` and pass --features")
    sys.path.insert(0, str(root))
    return importlib.import_module("preprocess.extract_features")


class ImageFolderFeatures:
    """Image id -> :class:`RegionFeatures` for the images of ``images_dir`` (see the module docstring).

    Ids follow ``preprocess.extract_features``: the file stem, or group 1 of ``image_id_regex`` on it (all-digit
    ids normalised with ``int``). ``backend_options`` go to ``create_extractor`` (max_boxes, min_boxes, weights,
    random_init, arch, grid_size, input_size, conf_thresh; ``None`` values are dropped so backend defaults apply).
    """

    def __init__(self, images_dir: str | os.PathLike, backend: str = "classic", feature_dim: int = 2048,
                 image_id_regex: str | None = None, recursive: bool = False, work_dir: str | None = None,
                 **backend_options: Any) -> None:
        ef = extraction_module()
        self._ef = ef
        self.images_dir = Path(images_dir)
        files, _ignored = ef.list_images(self.images_dir, recursive)
        if not files:
            raise FileNotFoundError(f"no image files ({', '.join(ef.IMAGE_EXTENSIONS)}) in {self.images_dir}")
        pattern = re.compile(image_id_regex) if image_id_regex else None
        self.paths: dict[str, Path] = {}
        for path in files:
            image_id = ef.image_id_for(path, pattern)
            if image_id in self.paths:
                raise PredictError(f"{path}: image id {image_id!r} already used by {self.paths[image_id]} "
                                   "(use --image-id-regex to derive distinct ids)")
            self.paths[image_id] = path
        from preprocess.extractors import ExtractorError, create_extractor

        options = {k: v for k, v in backend_options.items() if v is not None}
        try:
            self.extractor = create_extractor(backend, feature_dim=feature_dim, **options)
        except ExtractorError as exc:
            raise PredictError(f"extractor backend {backend!r}: {exc}") from None
        self.backend = backend
        self._tmp = tempfile.mkdtemp(prefix="unimo-predict-features-", dir=work_dir)
        self._stores: list[FeatureStore] = []
        self._where: dict[str, FeatureStore] = {}
        self.unreadable: dict[str, str] = {}  # image id -> the read error, for images skipped by prepare(skip_bad)

    # -- the FeatureStore-like interface ImageBatcher uses ---------------------------------------------------
    @property
    def feature_dim(self) -> int:
        return int(self.extractor.feature_dim)

    def __contains__(self, image_id: object) -> bool:
        return str(image_id) in self.paths

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)

    def image_ids(self) -> list[str]:
        return list(self.paths)

    def __getitem__(self, image_id: str | int) -> RegionFeatures:
        key = str(image_id)
        if key not in self._where:
            self.prepare([key], progress=False)
        return self._where[key][key]

    def __repr__(self) -> str:
        return f"ImageFolderFeatures({str(self.images_dir)!r}, images={len(self)}, backend={self.backend!r})"

    # -- extraction -------------------------------------------------------------------------------------------
    @property
    def extracted(self) -> int:
        """Number of images extracted so far."""
        return len(self._where)

    def prepare(self, image_ids: Iterable[str], progress: bool = True, skip_bad: bool = False) -> int:
        """Extract the images of ``image_ids`` not extracted yet (one new store); returns how many were new. An
        image OpenCV cannot decode raises ``ImageReadError`` naming the file, or with ``skip_bad`` is left out and
        recorded in :attr:`unreadable` (it then stays unavailable: reading it raises the same error)."""
        if self._tmp is None:
            raise PredictError(f"{self!r} is closed")
        todo = [i for i in dict.fromkeys(str(i) for i in image_ids) if i not in self._where]
        for image_id in todo:
            if image_id in self.unreadable:
                raise self._ef.ImageReadError(self.paths[image_id], "unreadable", self.unreadable[image_id])
        missing = [i for i in todo if i not in self.paths]
        if missing:
            raise UnknownImageError(missing, f"image folder {self.images_dir}", len(todo))
        if not todo:
            return 0
        path = os.path.join(self._tmp, f"store_{len(self._stores)}")
        done = []
        with FeatureStoreWriter(path, feature_dim=self.extractor.feature_dim,
                                num_classes=self.extractor.num_classes) as writer:
            for image_id in tqdm(todo, desc=f"extract[{self.backend}]", unit="img", disable=not progress,
                                 file=sys.stderr):
                try:
                    image = self._ef.read_image(self.paths[image_id])  # raises naming the file
                except self._ef.ImageReadError as exc:
                    if not skip_bad:
                        raise
                    self.unreadable[image_id] = exc.message
                    continue
                done.append(image_id)
                regions = self.extractor.extract(image)
                h, w = image.shape[:2]
                # the same record preprocess.extract_features writes
                writer.add(RegionFeatures(image_id, w, h, regions.boxes, regions.features, cls_prob=regions.cls_prob,
                                          obj_conf=regions.obj_conf))
        if not done:  # every image unreadable (skipped): no store
            shutil.rmtree(path, ignore_errors=True)
            return 0
        store = FeatureStore.open(path)
        self._stores.append(store)
        for image_id in done:
            self._where[image_id] = store
        return len(done)

    def close(self) -> None:
        """Delete the temporary stores."""
        for store in self._stores:
            store.close()
        self._stores, self._where = [], {}
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> "ImageFolderFeatures":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # best effort: a forgotten close() must not leave feature folders behind
        try:
            self.close()
        except Exception:  # noqa: BLE001  (interpreter shutdown)
            pass
