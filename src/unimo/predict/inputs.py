"""Query files of the inference CLI: image id lists, questions, hypotheses and captions.

* image ids (``--image-ids FILE``): one id per line; blank lines and lines starting with ``#`` are ignored.
* texts (``--questions`` / ``--hypotheses`` / ``--captions FILE``): a ``.txt`` file holds one text per line (blank
  lines ignored); any other file is JSON lines with the text field (``question`` / ``hypothesis`` / ``caption``,
  or a ``captions`` list for retrieval, as in the converters' ``retrieval_*.jsonl``), an optional ``image_id`` and
  an optional id (``question_id`` / ``pair_id`` / ``caption_id``). The converters' normalised files
  (``vqa_*.jsonl``, ``ve_*.jsonl``) work as they are. A record without ``image_id`` is asked of every selected image.

A bad record raises :class:`~unimo.reader.datasets.DataError` (``file:line: field 'f': message``), or with
``skip_bad`` is counted by reason in the returned :class:`~unimo.reader.datasets.IssueLog`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from ..reader.datasets import DataError, IssueLog, iter_lines


@dataclass
class TextQuery:
    """One text of a query file; ``image_id`` None = ask it of every selected image."""

    text: str
    image_id: str | None = None
    query_id: Any = None


def read_image_ids(path: str) -> list[str]:
    """Ids of ``path`` in file order (duplicates kept once)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image id file not found: {path}")
    ids: dict[str, None] = {}
    for _lineno, text in iter_lines(path):
        value = text.strip()
        if value and not value.startswith("#"):
            ids[value] = None
    if not ids:
        raise DataError(path, None, None, "no image ids (one id per line expected)", "empty_file")
    return list(ids)


def _id_value(rec: dict, key: str, path: str, line: int) -> str | None:
    value = rec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, str) and not value.strip()):
        raise DataError(path, line, key, f"expected a non-empty string or an integer, got {value!r:.60}", "bad_type")
    return str(value)


def _text_value(value: Any, path: str, line: int, field: str) -> str:
    if not isinstance(value, str):
        raise DataError(path, line, field, f"expected a string, got {value!r:.60}", "bad_type")
    if not value.strip():
        raise DataError(path, line, field, "empty text", "empty_text")
    return value


def read_text_queries(path: str, field: str, id_field: str, list_field: str | None = None,
                      skip_bad: bool = False) -> tuple[list[TextQuery], IssueLog]:
    """Texts of ``path`` (see the module docstring); ``list_field`` also accepts a list of texts per record."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{field} file not found: {path}")
    log = IssueLog(skip_bad)
    out: list[TextQuery] = []
    plain = path.endswith(".txt") or path.endswith(".txt.gz")
    for lineno, raw in iter_lines(path):
        if not raw.strip():
            continue
        if plain:
            out.append(TextQuery(raw.strip()))
            continue
        try:
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise DataError(path, lineno, None, f"not valid JSON ({exc.msg} at column {exc.colno}); "
                                "a .txt file holds one plain text per line", "bad_json") from None
            if not isinstance(rec, dict):
                raise DataError(path, lineno, None, f"expected a JSON object, got {type(rec).__name__}", "bad_type")
            image_id = _id_value(rec, "image_id", path, lineno)
            query_id = rec.get(id_field)
            if query_id is not None:
                query_id = _id_value(rec, id_field, path, lineno) if not isinstance(query_id, int) else query_id
            if field in rec:
                texts = [_text_value(rec[field], path, lineno, field)]
            elif list_field and list_field in rec:
                values = rec[list_field]
                if not isinstance(values, list) or not values:
                    raise DataError(path, lineno, list_field, "expected a non-empty list of strings", "bad_type")
                texts = [_text_value(v, path, lineno, f"{list_field}[{i}]") for i, v in enumerate(values)]
                query_id = None  # one id cannot name several texts
            else:
                want = f"'{field}'" + (f" or '{list_field}'" if list_field else "")
                raise DataError(path, lineno, field, f"missing (each line needs {want})", "missing_field")
        except DataError as err:
            log.report(err)
            continue
        out.extend(TextQuery(t, image_id, query_id) for t in texts)
    if not out and not log.total_skipped:
        raise DataError(path, None, None, f"no {field}s in the file", "empty_file")
    return out, log
