"""The project's one set of file helpers: atomic writes (no partial file is ever left behind), strict JSONL and
header-TSV readers whose errors name file, line and field."""
from __future__ import annotations

import contextlib
import csv
import gzip
import json
import os
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import IO, Any, Iterator, Optional

from .errors import DataError, IssueLog


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; renamed onto ``path`` on success, removed on any error.
    Text mode writes UTF-8 with ``\\n`` newlines; a name ending in ``.gz`` is gzip-compressed."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if path.name.endswith(".gz"):
            fh = gzip.open(tmp, "wt", encoding="utf-8", newline="\n") if mode == "w" else gzip.open(tmp, "wb")
        else:
            fh = open(tmp, "w", encoding="utf-8", newline="\n") if mode == "w" else open(tmp, "wb")
        with fh:
            yield fh
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600: give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: Optional[int] = 1) -> str:
    """JSON (no NaN: ``allow_nan=False``) written atomically; returns the path."""
    with atomic_write(path) as f:
        json.dump(obj, f, indent=indent, ensure_ascii=False, allow_nan=False, default=_json_default)
        f.write("\n")
    return str(path)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@contextlib.contextmanager
def atomic_directory(dst: str | os.PathLike, owned_names: Optional[set[str]] = None) -> Iterator[str]:
    """Yield a temporary directory next to ``dst``; on success its entries replace the same-named entries of
    ``dst`` (or it becomes ``dst``), on any error it is removed. Only names the tool writes are ever replaced:
    ``owned_names`` (if given) must contain every entry written."""
    dst = os.path.abspath(os.fspath(dst))
    parent = os.path.dirname(dst) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(dst)}.tmp-", dir=parent)
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700: give the folder the mode mkdir would
        yield tmp
        written = set(os.listdir(tmp))
        if owned_names is not None and not written <= set(owned_names):
            raise RuntimeError(f"atomic_directory: wrote {sorted(written - set(owned_names))} outside its owned names")
        if os.path.isdir(dst):
            for name in written:
                target = os.path.join(dst, name)
                if os.path.isdir(target) and not os.path.islink(target):
                    shutil.rmtree(target)
                os.replace(os.path.join(tmp, name), target)
            os.rmdir(tmp)
        else:
            os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _open_binary(path: str):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file not found: {path}")
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def iter_lines(path: str, progress: bool = False, desc: str | None = None,
               with_offsets: bool = False) -> Iterator[tuple]:
    """Yield ``(lineno, text)`` (or ``(lineno, offset, text)``) for every line, newline stripped.

    Lines are decoded one by one so a bad UTF-8 byte is reported with its line number; a BOM on line 1 is dropped.
    """
    from tqdm import tqdm

    size = os.path.getsize(path) if os.path.isfile(path) else None
    with _open_binary(path) as f, tqdm(total=size, unit="B", unit_scale=True, desc=desc or os.path.basename(path),
                                       disable=not progress, leave=False) as bar:
        offset = 0
        lineno = 0
        lines = iter(f)
        while True:
            try:
                raw = next(lines)
            except StopIteration:
                break
            except (EOFError, gzip.BadGzipFile, OSError, zlib.error) as e:  # truncated or damaged compressed file
                raise DataError(path, lineno + 1, None, f"compressed data is truncated or damaged after line {lineno} "
                                f"({type(e).__name__}: {e})", "bad_gzip") from None
            lineno += 1
            n = len(raw)
            bar.update(n)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(path, lineno, None, f"not valid UTF-8 ({e.reason} at byte {e.start})", "bad_utf8")
            if lineno == 1 and text.startswith("\ufeff"):
                text = text[1:]
            text = text.rstrip("\n").rstrip("\r")
            yield (lineno, offset, text) if with_offsets else (lineno, text)
            offset += n


def parse_json_object(text: str, path: str, line: int) -> dict:
    """One JSONL line that must hold a JSON object (else a :class:`DataError` naming file and line)."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, line, None, f"invalid JSON ({e.msg} at column {e.colno})", "bad_json") from None
    except (ValueError, RecursionError) as e:  # an integer of > 4300 digits, nesting deeper than the recursion limit
        raise DataError(path, line, None, f"invalid JSON ({type(e).__name__}: {str(e)[:80]})", "bad_json") from None
    if not isinstance(obj, dict):
        raise DataError(path, line, None, f"expected a JSON object, got {type(obj).__name__}", "bad_json")
    return obj


def iter_jsonl(path: str | os.PathLike, log: Optional[IssueLog] = None,
               progress: bool = False) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for every non-blank line of a JSONL file (``.gz`` allowed). A line that is not a
    JSON object is a :class:`DataError` (or, with a skipping ``log``, counted and skipped)."""
    path = os.fspath(path)
    log = log or IssueLog(skip_bad=False)
    for n, text in iter_lines(path, progress):
        if not text.strip():
            continue
        try:
            obj = parse_json_object(text, path, n)
        except DataError as err:
            log.report(err)
            continue
        yield n, obj


def iter_header_tsv(path: str | os.PathLike, required: tuple[str, ...] = (),
                    log: Optional[IssueLog] = None) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line number, {column: value})`` for every row of a TSV whose first line names the columns (the official
    classification / seq2seq files). A row with the wrong number of fields is a :class:`DataError`."""
    path = os.fspath(path)
    log = log or IssueLog(skip_bad=False)
    header: Optional[list[str]] = None
    for n, text in iter_lines(path):
        if header is None:
            header = next(csv.reader([text], delimiter="\t", quoting=csv.QUOTE_NONE))
            missing = [c for c in required if c not in header]
            if missing:
                raise DataError(path, n, missing[0], f"header lacks column(s) {missing}; has {header}",
                                "bad_header")
            continue
        if not text.strip():
            continue
        fields = text.split("\t")
        if len(fields) != len(header):
            log.report(DataError(path, n, None, f"{len(fields)} tab-separated fields, the header has {len(header)}",
                                 "bad_field_count"))
            continue
        yield n, dict(zip(header, fields))
