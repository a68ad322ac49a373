"""Task configuration: a YAML file of hyper-parameters (the official values) overridden from the command line.

Overrides are ``KEY=value`` or ``--key value`` / ``--key=value``; values are parsed as YAML scalars (``3e-5`` -> float,
``true`` -> bool). Unknown keys are an error, so a typo never silently does nothing.
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


def load_config(path: str, overrides: dict[str, Any] | None = None, defaults: dict[str, Any] | None = None
                ) -> dict[str, Any]:
    """YAML (with an optional ``base: other.yaml`` it extends) + defaults + overrides; unknown override keys raise."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config not found: {path}")
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of hyper-parameters")
    base = data.pop("base", None)
    if base:
        data = {**load_config(os.path.join(os.path.dirname(path), base)), **data}
    cfg = {**(defaults or {}), **data}
    for key, value in (overrides or {}).items():
        if key not in cfg:
            raise KeyError(f"unknown config key {key!r} (not in {path}); known: {', '.join(sorted(cfg))}")
        cfg[key] = value
    return cfg
