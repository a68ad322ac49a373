"""Shared machinery of the converters: the report, the lazily-built target model, the streaming checkpoint writer
and atomic output directories.

Memory: the target model is built under ``paddle.LazyGuard`` (parameters have names and shapes but no storage),
and the weights are written one array at a time (``model.safetensors``: header first, then each array;
``model_state.pdparams``: a pickler that materialises one array at a time and keeps no memo), so
converting a checkpoint needs about one tensor's worth of memory beyond the interpreter instead of two full copies
of the weights (model + ``paddle.save``'s numpy copy). The file is the same pickle ``paddle.save`` writes for a
state dict (``{key: ndarray, ..., "StructuredToParameterName@@": {key: param name}}``, protocol 4), so
``paddle.load`` and ``from_pretrained`` read it unchanged.
"""
from __future__ import annotations

import contextlib
import json
import os
import pickle
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Optional

import numpy as np

from ..model.configuration import CONFIG_NAME, UnimoConfig
from ..model.modeling import SAFE_WEIGHTS_NAME, WEIGHTS_NAME, WEIGHTS_FORMATS
from ..utils.errors import UserError
from ..utils.io import atomic_directory as _atomic_directory

REPORT_NAME = "conversion_report.json"
_NAME_TABLE_KEY = "StructuredToParameterName@@"


class ConversionError(UserError, ValueError):
    """The input cannot be converted; the message lists every problem found (nothing was written)."""


# ---------------------------------------------------------------------------------------------------- report
@dataclass
class ConversionReport:
    kind: str
    src: str
    dst: str
    task: str = ""
    model_class: str = ""
    init_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: Optional[int] = None
    loaded: list[dict[str, Any]] = field(default_factory=list)   # source name -> our key, shape, transform
    ignored: list[dict[str, Any]] = field(default_factory=list)  # name, pattern, reason
    unused: list[dict[str, Any]] = field(default_factory=list)   # known variables the chosen model has no place for
    unknown: list[str] = field(default_factory=list)             # neither used nor matching an ignore pattern
    missing: list[dict[str, Any]] = field(default_factory=list)  # our keys left freshly initialised
    notes: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["counts"] = {k: len(getattr(self, k)) for k in ("loaded", "ignored", "unused", "unknown", "missing")}
        return data

    def write(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2)

    def summary(self) -> str:
        """Human-readable: counts, then every ignored / unused / unknown / missing name (nothing hidden)."""
        lines = [f"{self.kind}: {self.src} -> {self.dst}" + ("  (dry run: nothing written)" if self.dry_run else "")]
        if self.model_class:
            lines.append(f"  model: {self.model_class}({', '.join(f'{k}={v}' for k, v in self.init_kwargs.items())})"
                         f"  task: {self.task}")
        lines.append(f"  loaded {len(self.loaded)}, ignored {len(self.ignored)}, unused {len(self.unused)}, "
                     f"unknown {len(self.unknown)}, missing {len(self.missing)}")
        by_pattern: dict[str, list[str]] = {}
        for item in self.ignored:
            by_pattern.setdefault(f"{item['pattern']} ({item['reason']})", []).append(item["name"])
        for pattern, names in by_pattern.items():
            lines.append(f"  ignored by pattern {pattern}: {len(names)}: {', '.join(sorted(names))}")
        for item in self.unused:
            lines.append(f"  WARNING unused: {item['name']}: {item['reason']}")
        for name in self.unknown:
            lines.append(f"  WARNING unknown variable (not used, matches no ignore pattern): {name}")
        for item in self.missing:
            lines.append(f"  missing (left initialised: {item['init']}): {item['key']} {item['shape']}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- model
def build_lazy_model(cls: type, config: UnimoConfig, kwargs: dict[str, Any]):
    """The model with unallocated parameters: names, shapes and the official-name map cost no memory."""
    import paddle

    with paddle.LazyGuard():
        return cls(config, **kwargs)


def expected_shapes(model) -> dict[str, tuple[int, ...]]:
    return {k: tuple(int(d) for d in v.shape) for k, v in model.state_dict().items()}


def official_to_local(model) -> dict[str, str]:
    """Official variable name -> state-dict key, as the model class itself declares it."""
    mapping = model.official_name_map()
    keys = set(model.state_dict())
    stray = sorted(set(mapping.values()) - keys)
    if stray:  # the table in modeling.py and the model disagree: a programming error, not bad input
        raise RuntimeError(f"{type(model).__name__}.official_name_map() names keys the model lacks: {stray}")
    return mapping


# ---------------------------------------------------------------------------------------------------- writing
class _Deferred:
    """A dict value that the pickler replaces by the array ``produce()`` returns, at the moment it is written."""

    __slots__ = ("key", "produce")

    def __init__(self, key: str, produce: Callable[[], np.ndarray]):
        self.key, self.produce = key, produce


class _StreamingPickler(pickle.Pickler):
    def __init__(self, f, check: Callable[[str, np.ndarray], np.ndarray], progress=None):
        super().__init__(f, protocol=4)
        self.fast = True  # no memo: each array (and its bytes) is freed once written
        self._check, self._progress = check, progress

    def reducer_override(self, obj: Any):
        if isinstance(obj, _Deferred):
            array = self._check(obj.key, obj.produce())
            if self._progress is not None:
                self._progress.update(1)
            return array.__reduce_ex__(4)
        return NotImplemented


def write_state_dict(path: str, producers: dict[str, Callable[[], np.ndarray]], param_names: dict[str, str],
                     shapes: dict[str, tuple[int, ...]], desc: str = "writing") -> None:
    """Write ``model_state.pdparams`` with one array in memory at a time; every array is checked to be a finite
    float32 tensor of the expected shape as it is written (a failure aborts the write)."""
    from tqdm import tqdm

    def check(key: str, array: np.ndarray) -> np.ndarray:
        return _checked(key, array, shapes)

    state: dict[str, Any] = {k: _Deferred(k, fn) for k, fn in producers.items()}
    state[_NAME_TABLE_KEY] = dict(param_names)
    with open(path, "wb") as f, tqdm(total=len(producers), desc=desc, unit="tensor", disable=None) as bar:
        _StreamingPickler(f, check, bar).dump(state)


def write_safetensors(path: str, producers: dict[str, Callable[[], np.ndarray]],
                      shapes: dict[str, tuple[int, ...]], desc: str = "writing") -> None:
    """Write ``model.safetensors`` with one array in memory at a time: every tensor is float32 of a known shape, so
    the header (names, dtypes, shapes, byte offsets) is written first and the arrays follow in its order, each
    checked (dtype, shape, finite) as it is produced. The layout is the safetensors format (8-byte little-endian
    header size, JSON header padded with spaces to a multiple of 8, then the raw little-endian data), read by
    ``safetensors.numpy.load_file`` and ``from_pretrained``."""
    from tqdm import tqdm

    header: dict[str, Any] = {"__metadata__": {"format": "np"}}
    offset = 0
    for key in producers:
        size = 4 * int(np.prod(shapes[key], dtype=np.int64))
        header[key] = {"dtype": "F32", "shape": list(shapes[key]), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f, tqdm(total=len(producers), desc=desc, unit="tensor", disable=None) as bar:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for key, produce in producers.items():
            array = _checked(key, produce(), shapes)
            f.write(array.astype("<f4", copy=False).tobytes())
            bar.update(1)


def _checked(key: str, array: Any, shapes: dict[str, tuple[int, ...]]) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype != np.float32:
        raise ConversionError(f"{key}: dtype {array.dtype}, expected float32")
    if tuple(array.shape) != shapes[key]:
        raise ConversionError(f"{key}: shape {list(array.shape)} does not match the model {list(shapes[key])}")
    bad = array.size - int(np.count_nonzero(np.isfinite(array)))
    if bad:
        raise ConversionError(f"{key}: {bad} non-finite values (NaN/Inf) of {array.size}")
    return np.ascontiguousarray(array)


def save_config(directory: str, model) -> None:
    """``model_config.json`` exactly as ``save_pretrained`` writes it (architecture + constructor kwargs), so
    ``from_pretrained`` rebuilds the same class."""
    config = model.config.copy()
    config.extra = dict(config.extra, architecture=type(model).__name__, init_kwargs=model.init_kwargs())
    config.save_pretrained(directory)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed Paddle's generator for the fresh parameters, restoring the caller's RNG state afterwards."""
    import paddle

    saved = paddle.get_rng_state()
    paddle.seed(seed)
    try:
        yield
    finally:
        paddle.set_rng_state(saved)


def fresh_initializer(param) -> Callable[[], np.ndarray]:
    """Materialise one lazily-created parameter with its own initializer (the official init scheme)."""

    def produce() -> np.ndarray:
        param.initialize()
        return param.numpy()

    return produce


# ---------------------------------------------------------------------------------------------------- output dir
def check_destination(dst: str, overwrite: bool) -> None:
    if os.path.exists(dst) and not os.path.isdir(dst):
        raise ConversionError(f"--output {dst} exists and is not a directory")
    if os.path.isdir(dst) and os.listdir(dst) and not overwrite:
        raise ConversionError(f"--output {dst} exists and is not empty; pass --overwrite to replace its files")


@contextlib.contextmanager
def atomic_directory(dst: str, overwrite: bool = False, owned_names: Optional[set[str]] = None) -> Iterator[str]:
    """Yield a temporary directory next to ``dst``; on success its files replace ``dst``'s same-named files (or it
    becomes ``dst``), on any error it is removed, so a failed conversion leaves nothing behind
    (:func:`unimo.utils.io.atomic_directory`; ``owned_names``: every name the converter may write)."""
    check_destination(dst, overwrite)
    with _atomic_directory(dst, owned_names) as tmp:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # it becomes dst when dst does not exist; mkdtemp makes it private
        yield tmp


def load_config(path: str) -> UnimoConfig:
    """A UNIMO JSON config (file, or directory with ``model_config.json``) with errors that name the file."""
    try:
        return UnimoConfig.from_pretrained(path)
    except TypeError as e:  # a field of the wrong kind that the dataclass constructor rejects
        raise ConversionError(f"{path}: bad config: {e}") from e
    except (ValueError, FileNotFoundError) as e:
        raise ConversionError(f"bad config: {e}") from e


def write_converted(model, producers: dict[str, Callable[[], np.ndarray]], want: dict[str, tuple[int, ...]],
                    report: "ConversionReport", dst: str, overwrite: bool, seed: int, dry_run: bool,
                    weights_format: str = "safetensors") -> "ConversionReport":
    """The common end of every conversion: parameters without a producer are freshly initialised (seeded, listed
    as missing), then config + weights + report are written atomically to ``dst`` (nothing with ``dry_run``).
    ``weights_format``: ``safetensors`` (``model.safetensors``, the default: reading it runs no code) or
    ``pdparams`` (PaddleNLP's ``model_state.pdparams``)."""
    if weights_format not in WEIGHTS_FORMATS:
        raise ConversionError(f"weights format must be one of {sorted(WEIGHTS_FORMATS)}, got {weights_format!r}")
    state = model.state_dict()
    ordered = {}
    for key, param in state.items():
        if key in producers:
            ordered[key] = producers[key]
        else:
            ordered[key] = fresh_initializer(param)
            report.missing.append({"key": key, "shape": list(want[key]), "init": f"fresh (seed {seed})"})
    if dry_run:
        return report
    with atomic_directory(dst, overwrite, {CONFIG_NAME, WEIGHTS_NAME, SAFE_WEIGHTS_NAME, REPORT_NAME}) as tmp:
        save_config(tmp, model)
        with seeded(seed):  # fresh parameters are reproducible
            if weights_format == "safetensors":
                write_safetensors(os.path.join(tmp, SAFE_WEIGHTS_NAME), ordered, want, desc="converting")
            else:
                write_state_dict(os.path.join(tmp, WEIGHTS_NAME), ordered, {k: v.name for k, v in state.items()},
                                 want, desc="converting")
        report.write(os.path.join(tmp, REPORT_NAME))
    return report
