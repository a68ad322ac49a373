"""Weight conversion: official Paddle 1.x checkpoints <-> ours, and HuggingFace RoBERTa -> UNIMO.

CLI: ``python -m unimo.convert {legacy,export-legacy,roberta} ...`` (see ``__main__``).
``legacy_format`` (the numpy reader/writer of legacy tensor files) needs only numpy.
"""
from __future__ import annotations

import importlib
from typing import Any

# names -> submodule, imported on first use: `python -m unimo.convert --help` must not import Paddle (its warnings)
_WHERE = {"ConversionError": "core", "ConversionReport": "core", "convert_legacy": "legacy",
          "export_legacy": "legacy", "convert_roberta": "roberta", "config_from_hf": "roberta",
          **{n: "legacy_format" for n in ("LegacyFormatError", "TensorHeader", "read_header", "read_tensor",
                                          "read_lod_tensor", "write_tensor")}}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
