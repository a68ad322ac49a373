"""Run configuration: a YAML file of hyper-parameters (the official values) overridden from the command line,
parsed into a typed dataclass.

A run's configuration class is composed of one dataclass per concern (``unimo.training.config``: optimisation and
run loop, model, VILLA; ``unimo.finetune.config``: data; each task module: its task's keys), each field declared
once with its type and its one default. The YAML stays flat, as the official ``model_conf`` files are.

Overrides are ``KEY=value`` or ``--key value`` / ``--key=value``; values are parsed as YAML scalars (``3e-5`` -> float,
``true`` -> bool). Unknown keys - in any YAML of the ``base:`` chain or on the command line - are an error naming the
file and line and suggesting the closest known key; values are checked against the field's type (an ``int`` field
rejects 1.5, a ``bool`` field rejects "yes please"), then each concern's ``validate`` checks ranges and cross-field
rules, naming the file and line the offending value came from. So a typo never silently does nothing.
"""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from typing import Any, Sequence, TypeVar, Union

import yaml


def _parse_value(text: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:  # YAML 1.1 reads "3e-5" as a string
            return float(value) if any(c in value for c in "eE.") else value
        except ValueError:
            return value
    return value


def parse_overrides(argv: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    i = 0
    argv = list(argv)
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            key = arg[2:]
            if "=" in key:
                key, value = key.split("=", 1)
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value = argv[i + 1]
                i += 1
            else:
                value = "true"
        elif "=" in arg:
            key, value = arg.split("=", 1)
        else:
            raise ValueError(f"cannot parse argument {arg!r}: use KEY=value or --key value")
        out[key.replace("-", "_")] = _parse_value(value)
        i += 1
    return out


def _key_line(path: str, key: str) -> int | None:
    """Line of ``key:`` at the top level of a YAML file (for error messages)."""
    import re

    pattern = re.compile(rf"^{re.escape(key)}\s*:")
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if pattern.match(line):
                return n
    return None


def _suggest(key: str, known: Sequence[str]) -> str | None:
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def _read_yaml_chain(path: str) -> list[tuple[str, dict[str, Any]]]:
    """[(file, mapping)] from the root ``base:`` ancestor to ``path``."""
    from .errors import ConfigError

    if not os.path.isfile(path):
        raise ConfigError("config not found", file=path)
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            raise ConfigError(f"invalid YAML ({getattr(e, 'problem', e)})", file=path,
                              line=None if mark is None else mark.line + 1) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of hyper-parameters", file=path)
    base = data.pop("base", None)
    chain = _read_yaml_chain(os.path.join(os.path.dirname(path), base)) if base else []
    return chain + [(path, data)]


def load_config(path: str) -> dict[str, Any]:
    """The raw YAML chain (``base:`` followed, later files win), untyped: for tools that only read a few keys of a
    task YAML (predict, tests). Runs parse it into their typed configuration with ``ConfigBase.load``."""
    cfg: dict[str, Any] = {}
    for _, data in _read_yaml_chain(path):
        cfg.update(data)
    return cfg


# ------------------------------------------------------------------------------------------------------------------
# typed configuration
# ------------------------------------------------------------------------------------------------------------------
_NONE = type(None)


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp) if a is not _NONE) + " (or null)"
    if origin in (list, tuple):
        return "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def coerce_value(key: str, value: Any, tp: Any, where: str, line: int | None = None) -> Any:
    """``value`` checked against the annotation ``tp`` (``int``, ``float``, ``bool``, ``str``, ``list[X]``,
    ``dict[K, V]``, ``Optional[X]``, ``Any``); ints are accepted for floats, integral floats for ints and "1e-5"
    strings for floats (YAML 1.1 reads an exponent without a dot as a string). Returns the converted value."""
    from .errors import ConfigError

    def bad() -> ConfigError:
        return ConfigError(f"expected {_describe(tp)}, got {value!r}", file=where, line=line, field=key)

    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if _NONE in args:
                return None
            raise bad()
        for arg in args:
            if arg is _NONE:
                continue
            try:
                return coerce_value(key, value, arg, where, line)
            except ConfigError:
                continue
        raise bad()
    if value is None:
        raise bad()
    if origin is list or tp is list:
        if not isinstance(value, list):
            raise bad()
        (item,) = typing.get_args(tp) or (Any,)
        return [coerce_value(f"{key}[{i}]", v, item, where, line) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise bad()
        kt, vt = typing.get_args(tp) or (Any, Any)
        return {coerce_value(key, k, kt, where, line): coerce_value(f"{key}.{k}", v, vt, where, line)
                for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise bad()
        return value
    if tp is int:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int):
            raise bad()
        return value
    if tp is float:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad() from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad()
        return value
    return value


C = TypeVar("C", bound="ConfigBase")


def check_sweep(value: Any, types_: dict[str, Any], where: str, line: int | None) -> dict[str, list[Any]]:
    """A ``sweep:`` section: a mapping of declared keys to non-empty lists of values of the key's type. Keys that
    vary together are one entry ``"a,b": [[a1, b1], [a2, b2]]`` (e.g. the per-device batch and the global batch
    of the official GLUE grid); their values are returned as tuples."""
    from .errors import ConfigError

    if not isinstance(value, dict) or not value:
        raise ConfigError("expected a mapping of keys to lists of values", file=where, line=line, field="sweep")
    out: dict[str, list[Any]] = {}
    for entry, values in value.items():
        entry = str(entry)
        keys = [k.strip() for k in entry.split(",")]
        for key in keys:
            if key not in types_:
                raise ConfigError("unknown config key in the sweep", file=where, line=line, field=f"sweep.{key}",
                                  hint=_suggest(key, sorted(types_)))
            if key in ("output_dir", "resume_from_checkpoint"):
                raise ConfigError("set by the sweep for each point, not swept", file=where, line=line,
                                  field=f"sweep.{key}")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"expected a non-empty list of values, got {values!r}", file=where, line=line,
                              field=f"sweep.{entry}")
        if len(keys) == 1:
            out[entry] = [coerce_value(f"sweep.{entry}", v, types_[entry], where, line) for v in values]
            continue
        tied = []
        for v in values:
            if not isinstance(v, (list, tuple)) or len(v) != len(keys):
                raise ConfigError(f"expected lists of {len(keys)} values ({', '.join(keys)}), got {v!r}", file=where,
                                  line=line, field=f"sweep.{entry}")
            tied.append(tuple(coerce_value(f"sweep.{k}", x, types_[k], where, line) for k, x in zip(keys, v)))
        out[",".join(keys)] = tied
    return out


class ConfigBase:
    """Base of every run-configuration dataclass.

    Concerns are dataclasses deriving from this class; a run's class derives from several of them (flat fields, one
    YAML namespace). ``validate`` is cooperative: each concern checks its own fields and calls ``super().validate()``.
    Mapping-style reads (``cfg["key"]``, ``cfg.get("key")``) are kept for the readers that take any mapping; a key
    that is not a field raises ``KeyError`` (``get`` returns its default only for the declared extra keys, e.g. an
    extra split's ``<split>_file``)."""

    # ------------------------------------------------------------------ construction
    @classmethod
    def field_types(cls) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}

    @classmethod
    def field_defaults(cls) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                out[f.name] = f.default_factory()  # type: ignore[misc]
        return out

    @classmethod
    def load(cls: type[C], path: str, overrides: dict[str, Any] | None = None,
             extra_keys: Sequence[str] = ()) -> C:
        """Parse a YAML (``base:`` chain included) and command-line overrides into ``cls``, then validate."""
        from .errors import ConfigError

        types_ = cls.field_types()
        known = set(types_) | set(extra_keys)
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        sources: dict[str, tuple[str, int | None]] = {}

        def put(key: str, value: Any, where: str, line: int | None) -> None:
            if key not in known:
                raise ConfigError("unknown config key", file=where, line=line, field=key,
                                  hint=_suggest(key, sorted(known)) or "see the README's configuration section")
            if key in types_:
                values[key] = coerce_value(key, value, types_[key], where, line)
            else:
                extra[key] = value
            sources[key] = (where, line)

        sweep: dict[str, list[Any]] = {}
        for file, data in _read_yaml_chain(path):
            for key, value in data.items():
                if key == "sweep":  # the hyper-parameter grid (python -m unimo.sweep); a child file's keys win
                    sweep.update(check_sweep(value, types_, file, _key_line(file, "sweep")))
                    continue
                put(str(key), value, file, _key_line(file, str(key)))
        for key, value in (overrides or {}).items():
            put(key, value, "command line", None)
        cfg = cls(**values)  # type: ignore[call-arg]
        cfg._extra, cfg._sources, cfg._path, cfg._sweep = extra, sources, path, sweep
        cfg.validate()
        cfg.check_files()
        return cfg

    @classmethod
    def from_values(cls: type[C], values: dict[str, Any] | None = None, **kwargs: Any) -> C:
        """Build from Python values (tests, the inference API), with the same type and range checks."""
        from .errors import ConfigError

        types_ = cls.field_types()
        merged = {**(values or {}), **kwargs}
        unknown = sorted(set(merged) - set(types_))
        if unknown:
            raise ConfigError("unknown config key", file=cls.__name__, field=unknown[0],
                              hint=_suggest(unknown[0], sorted(types_)))
        cfg = cls(**{k: coerce_value(k, v, types_[k], cls.__name__) for k, v in merged.items()})  # type: ignore
        cfg._extra, cfg._sources, cfg._path, cfg._sweep = {}, {k: ("values", None) for k in merged}, cls.__name__, {}
        cfg.validate()
        return cfg

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Range and cross-field checks of this concern (subclasses extend and call ``super().validate()``)."""

    def check_files(self) -> None:
        """Checks that read files named by the configuration (the model config's position table, ...); run by
        ``load`` after ``validate``, not by ``from_values`` (whose caller holds the model already)."""

    def error(self, key: str, message: str, hint: str | None = None):
        """A ConfigError naming where ``key``'s value came from (its file and line, the command line, or the default
        of the configuration file being loaded)."""
        from .errors import ConfigError

        where, line = getattr(self, "_sources", {}).get(key, (getattr(self, "_path", None), None))
        return ConfigError(message, file=where, line=line, field=key, hint=hint)

    def require(self, ok: bool, key: str, message: str, hint: str | None = None) -> None:
        if not ok:
            raise self.error(key, f"{message}, got {getattr(self, key, None)!r}", hint)

    # ------------------------------------------------------------------ mapping-style access
    def _has_field(self, key: str) -> bool:
        return key in {f.name for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def __getitem__(self, key: str) -> Any:
        if self._has_field(key):
            return getattr(self, key)
        extra = getattr(self, "_extra", {})
        if key in extra:
            return extra[key]
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        if not self._has_field(key):
            raise KeyError(f"{key} is not a field of {type(self).__name__}")
        setattr(self, key, value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (self._has_field(key) or key in getattr(self, "_extra", {}))

    def get(self, key: str, default: Any = None) -> Any:
        try:
            value = self[key]
        except KeyError:
            return default
        return default if value is None else value

    def sweep_grid(self) -> dict[str, list[Any]]:
        """The ``sweep:`` section of the YAML chain (key -> values), empty for a single-point configuration."""
        return dict(getattr(self, "_sweep", {}))

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration (every field, defaults included, and the extra keys), as written to
        ``results.json``."""
        return {**dataclasses.asdict(self), **getattr(self, "_extra", {})}  # type: ignore[call-overload]
