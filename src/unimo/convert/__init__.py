"""Weight conversion: official Paddle 1.x checkpoints <-> ours, and HuggingFace RoBERTa -> UNIMO.

CLI: ``python -m unimo.convert {legacy,export-legacy,roberta} ...`` (see ``__main__``).
``legacy_format`` (the numpy reader/writer of legacy tensor files) needs only numpy.
"""
from .core import ConversionError, ConversionReport
from .legacy import convert_legacy, export_legacy
from .legacy_format import LegacyFormatError, TensorHeader, read_header, read_lod_tensor, read_tensor, write_tensor
from .roberta import config_from_hf, convert_roberta

__all__ = ["ConversionError", "ConversionReport", "LegacyFormatError", "TensorHeader", "read_header", "read_tensor",
           "read_lod_tensor", "write_tensor", "convert_legacy", "export_legacy", "convert_roberta", "config_from_hf"]
