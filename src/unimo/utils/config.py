"""Task configuration: a YAML file of hyper-parameters (the official values) overridden from the command line.

Overrides are ``KEY=value`` or ``--key value`` / ``--key=value``; values are parsed as YAML scalars (``3e-5`` -> float,
``true`` -> bool). Unknown keys - in any YAML of the ``base:`` chain or on the command line - are an error naming the
file and line and suggesting the closest known key, and values must have the type of their default (an integer
field rejects 1.5), so a typo never silently does nothing.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

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


def check_value_type(key: str, value: Any, default: Any, where: str, line: int | None = None) -> Any:
    """The value of ``key`` checked against the type of its default (int rejects 1.5, bool rejects 'abc', float
    accepts ints); ``None`` defaults accept anything. Returns the (possibly converted) value."""
    from .errors import ConfigError

    if default is None or value is None:
        return value
    def bad(kind: str) -> ConfigError:
        return ConfigError(f"expected {kind}, got {value!r}", file=where, line=line, field=key)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool):
            raise bad("an integer")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int):
            raise bad("an integer")
        return value
    if isinstance(default, float):
        if isinstance(value, str):  # YAML 1.1 reads "1e-5" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise bad("a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise bad("a string")
    return value


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


def load_config(path: str, overrides: dict[str, Any] | None = None, defaults: dict[str, Any] | None = None,
                extra_keys: Sequence[str] = ()) -> dict[str, Any]:
    """YAML (with an optional ``base: other.yaml`` it extends) + defaults + overrides.

    With ``defaults`` given, every key of every YAML of the chain and every override must be a default's key (or in
    ``extra_keys``), else a :class:`~unimo.utils.errors.ConfigError` names the file and line and suggests the
    closest known key; values are checked against the type of their default. Without ``defaults`` the YAML chain
    is returned as is (and unknown override keys are errors)."""
    from .errors import ConfigError

    chain = _read_yaml_chain(path)
    known = None if defaults is None else set(defaults) | set(extra_keys)
    cfg: dict[str, Any] = dict(defaults or {})
    for file, data in chain:
        for key, value in data.items():
            line = _key_line(file, key)
            if known is not None and key not in known:
                raise ConfigError("unknown config key", file=file, line=line, field=key,
                                  hint=_suggest(key, sorted(known)) or "see the README's configuration section")
            cfg[key] = check_value_type(key, value, (defaults or {}).get(key), file, line)
    for key, value in (overrides or {}).items():
        if key not in cfg and (known is None or key not in known):
            raise ConfigError("unknown config key", file="command line", field=key,
                              hint=_suggest(key, sorted(known if known is not None else cfg)) or f"not in {path}")
        cfg[key] = check_value_type(key, value, (defaults or {}).get(key), "command line")
    return cfg
