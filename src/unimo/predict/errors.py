"""Errors of the inference CLI/API: each message names what is wrong and where (file, image id, model folder)."""
from __future__ import annotations


class PredictError(Exception):
    """Base class: a prediction cannot run as asked. The CLI prints the message and exits with status 2."""


class ModelLoadError(PredictError):
    """The model folder is missing, incomplete, or holds another task's model."""


class UnknownImageError(PredictError, KeyError):
    """Image ids that the feature store / image folder does not have."""

    def __init__(self, missing: list[str], source: object, total: int | None = None) -> None:
        self.missing = list(missing)
        shown = ", ".join(repr(m) for m in self.missing[:10])
        more = f" and {len(self.missing) - 10} more" if len(self.missing) > 10 else ""
        of = f" ({len(self.missing)} of {total} requested)" if total is not None else ""
        super().__init__(f"unknown image id(s) {shown}{more}{of}: not in {source}")

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])
