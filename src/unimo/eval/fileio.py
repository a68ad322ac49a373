"""Small I/O helpers shared by the metric modules: strict readers with located errors and atomic writers."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


class EvalInputError(ValueError):
    """Bad evaluation input; the message names the file and the offending line / id / field."""


def read_lines(path: str | os.PathLike) -> list[str]:
    """Read a UTF-8 text file as one entry per line (trailing newline stripped, nothing else touched).

    A single trailing empty line (file ending in "\\n") is not an entry; empty lines elsewhere are kept, because
    an empty prediction is a legitimate (bad) model output and must stay aligned with its reference.
    """
    p = Path(path)
    if not p.is_file():
        raise EvalInputError(f"{p}: file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise EvalInputError(f"{p}: not valid UTF-8 ({e})") from e
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def load_json(path: str | os.PathLike) -> Any:
    p = Path(path)
    if not p.is_file():
        raise EvalInputError(f"{p}: file not found")
    try:
        with p.open(encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise EvalInputError(f"{p}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from e
    except UnicodeDecodeError as e:
        raise EvalInputError(f"{p}: not valid UTF-8 ({e})") from e


def check_same_length(pred_name: str, n_pred: int, ref_name: str, n_ref: int) -> None:
    if n_pred != n_ref:
        first_missing = min(n_pred, n_ref) + 1
        raise EvalInputError(
            f"length mismatch: {pred_name} has {n_pred} entries but {ref_name} has {n_ref} "
            f"(first unmatched line: {first_missing})")


def finite_or_none(x: float) -> float | None:
    """JSON has no NaN: undefined statistics are reported as null (with a reason next to them)."""
    return None if x is None or not math.isfinite(float(x)) else float(x)


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Write JSON to a temp file in the target directory, then rename: no partial file is ever left behind."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=str(p.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=indent, ensure_ascii=False, allow_nan=False)
            f.write("\n")
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
