"""Fine-tuning tasks: ``task`` in a YAML selects the reader + head + metric (the names live in
:mod:`unimo.registry`, shared with the data checks, the converter and predict)."""
from __future__ import annotations

from ...registry import get_task_class, register, task_names

__all__ = ["get_task_class", "register", "task_names"]
