"""Shared plumbing of the converters: atomic output files, JSON input with located errors, split names, summaries,
and the checks every conversion ends with (no split left empty, a warning when many records were skipped)."""
from __future__ import annotations

import gzip
import json
import os
import re
import sys
import zlib
from collections import Counter
from typing import Any, Iterable, Iterator

from unimo.reader.datasets import DataError, IssueLog, iter_lines
from unimo.utils.errors import UserError
from unimo.utils.io import atomic_directory

__all__ = ["DataError", "IssueLog", "UsageError", "OutputExistsError", "AtomicOutputs", "file_mode", "load_json",
           "iter_jsonl_objects", "split_from_name", "make_summary", "clean_text", "list_inputs", "check_input_dir",
           "check_kept", "read_lines", "MAX_SKIP_FRACTION"]

# A conversion that skips more than this fraction of an input file's records (with --skip-bad) warns on stderr.
MAX_SKIP_FRACTION = 0.10


class UsageError(UserError, ValueError):
    """A bad option combination or value (a ``ValueError`` too, for callers of the Python API)."""


class OutputExistsError(UserError, FileExistsError):
    """An output file exists and ``overwrite`` was not given."""


def file_mode() -> int:
    """Permissions a plain ``open(..., "w")`` would give under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _dir_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o777 & ~umask


class _JsonlWriter:
    def __init__(self, f):
        self._f = f
        self.count = 0

    def write(self, obj: dict) -> None:
        self._f.write(json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n")
        self.count += 1


class AtomicOutputs:
    """Write every output into a temporary folder next to the output folder; on success each file replaces the
    same-named file of the output folder (which is created if missing), on any exception nothing is written
    (:func:`unimo.utils.io.atomic_directory`). Only the converter's own file names are ever replaced, and an
    existing one only with ``overwrite`` (else :class:`OutputExistsError` before anything is converted further).
    """

    def __init__(self, out_dir: str, overwrite: bool = False):
        self.out_dir = str(out_dir)
        if os.path.exists(self.out_dir) and not os.path.isdir(self.out_dir):
            raise UserError("exists and is not a directory", file=self.out_dir, hint="--output is a folder")
        self.overwrite = overwrite
        self._owned: set[str] = set()
        self._files: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.warnings: list[str] = []
        self._writers: dict[str, _JsonlWriter] = {}
        self._ctx = None
        self._tmp: str | None = None

    def _open(self, name: str):
        if self._tmp is None:
            raise RuntimeError("AtomicOutputs used outside its with-block")
        if name in self._files:
            raise ValueError(f"output {name} opened twice")
        target = os.path.join(self.out_dir, name)
        if os.path.lexists(target) and not self.overwrite:
            raise OutputExistsError("exists", file=target,
                                    hint="pass --overwrite to replace the converter's outputs; other files in the "
                                         "folder are never touched")
        self._owned.add(name)
        f = open(os.path.join(self._tmp, name), "w", encoding="utf-8", newline="\n")
        self._files[name] = f
        return f

    def jsonl(self, name: str) -> _JsonlWriter:
        """A writer of one JSON object per line (opened once per name; later calls return the same writer)."""
        if name not in self._writers:
            self._writers[name] = _JsonlWriter(self._open(name))
        return self._writers[name]

    def json(self, name: str, obj: Any, indent: int | None = None) -> None:
        f = self._open(name)
        json.dump(obj, f, ensure_ascii=False, indent=indent, allow_nan=False)
        f.write("\n")

    def __enter__(self) -> "AtomicOutputs":
        self._ctx = atomic_directory(self.out_dir, self._owned)
        self._tmp = self._ctx.__enter__()
        os.chmod(self._tmp, _dir_mode())  # it becomes the output folder when that does not exist yet
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        for f in self._files.values():
            f.close()
        ctx, self._ctx, self._tmp = self._ctx, None, None
        if exc_type is None:
            ctx.__exit__(None, None, None)
            self.counts = {name: w.count for name, w in self._writers.items()}
            return False
        return bool(ctx.__exit__(exc_type, exc, tb))


def check_kept(path: str, what: str, kept: int, log: IssueLog, before: Counter,
               out: "AtomicOutputs | None" = None) -> None:
    """End-of-file check of a conversion: an input that leaves ``what`` (a split) with no example fails (nothing
    is written); one whose skipped share (records counted in ``log`` since ``before``) exceeds
    :data:`MAX_SKIP_FRACTION` warns on stderr (and in ``out.warnings``, which the summary lists)."""
    delta = Counter(log.skipped)
    delta.subtract(before)
    delta = +delta
    skipped = sum(delta.values())
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(delta.items()))
    if kept == 0:
        detail = (f"every record was skipped ({skipped}: {reasons})" if skipped else
                  "the input holds no record")
        raise DataError(path, None, None, f"no example of {what} is left: {detail}", "empty_split",
                        hint="nothing was written; fix the input: --skip-bad never writes an empty split")
    total = kept + skipped
    if skipped and skipped / total > MAX_SKIP_FRACTION:
        message = (f"{path}: {skipped} of {total} records of {what} skipped ({100 * skipped / total:.1f}%, more "
                   f"than {MAX_SKIP_FRACTION:.0%}): {reasons}; check the input")
        print(f"warning: {message}", file=sys.stderr, flush=True)
        if out is not None:
            out.warnings.append(message)


def check_input_dir(path: str, what: str) -> str:
    """A folder given as input: missing -> FileNotFoundError, not a folder -> one clear error."""
    path = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"input folder not found: {path}")
    if not os.path.isdir(path):
        raise UserError("not a directory", file=path, hint=what)
    return path


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _lone_surrogate(obj: Any) -> str | None:
    """The first string (or key) of a parsed JSON value holding an unpaired UTF-16 surrogate, which no UTF-8 file
    can hold (json accepts the escape "\\ud800"); None when there is none."""
    stack = [obj]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if any("\ud800" <= ch <= "\udfff" for ch in v):
                return v
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return None


def _check_surrogates(obj: Any, text: str, path: str, line: int | str | None) -> None:
    if _SURROGATE_ESCAPE.search(text) is None:  # no escape of a surrogate: nothing to walk (the usual case)
        return
    bad = _lone_surrogate(obj)
    if bad is not None:
        raise DataError(path, line, None, f"a string holds an unpaired UTF-16 surrogate escape, which is not text: "
                        f"{bad.encode('utf-8', 'backslashreplace').decode()[:60]!r}", "bad_text")


def load_json(path: str) -> Any:
    """Parse a whole JSON document; syntax errors name the file, line and column."""
    path = str(path)
    _check_input_file(path)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(path, line, None, f"not valid UTF-8 ({e.reason})", "bad_utf8") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, e.lineno, None, f"invalid JSON ({e.msg} at column {e.colno})", "bad_json") from None
    except (ValueError, RecursionError) as e:  # an integer of > 4300 digits, nesting deeper than Python's stack
        raise DataError(path, None, None, f"invalid JSON ({str(e)[:100]})", "bad_json") from None
    _check_surrogates(obj, text, path, None)
    return obj


def _check_input_file(path: str) -> None:
    if os.path.isdir(path):
        raise UserError("is a directory, expected a file", file=path,
                        hint="give the data file itself (see --help for the expected names)")
    if not os.path.exists(path):
        raise FileNotFoundError(f"input file not found: {path}")
    if not os.path.isfile(path):
        raise UserError("not a regular file (a device, pipe or socket)", file=path, hint="give the data file itself")


def read_lines(path: str, progress: bool = False) -> Iterator[tuple[int, str]]:
    """:func:`unimo.utils.io.iter_lines` with a truncated or corrupt ``.gz`` file reported as a data error that
    names the line reached (instead of a raw EOFError / zlib.error)."""
    path = str(path)
    _check_input_file(path)
    it = iter_lines(path, progress)
    n = 0
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except (EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise DataError(path, n + 1, None, f"unreadable after line {n}: truncated or corrupt gzip data ({e})",
                            "bad_file", hint="the file was cut short or damaged: fetch or compress it again") from None
        n = item[0]
        yield item


def iter_jsonl_objects(path: str, log: IssueLog, progress: bool = False) -> Iterator[tuple[int, dict]]:
    """``(lineno, object)`` for every non-blank line; unparsable lines go to ``log`` (raise or count)."""
    from unimo.utils.io import parse_json_object

    path = str(path)
    _check_input_file(path)
    for n, text in read_lines(path, progress):
        if not text.strip():
            continue
        try:
            try:
                obj = parse_json_object(text, path, n)
            except (ValueError, RecursionError) as e:
                if isinstance(e, DataError):
                    raise
                raise DataError(path, n, None, f"invalid JSON ({str(e)[:100]})", "bad_json") from None
            _check_surrogates(obj, text, path, n)
        except DataError as err:
            log.report(err)
            continue
        yield n, obj


def split_from_name(path: str, known: Iterable[str] = ("train", "dev", "val", "test")) -> str:
    """Split name of a data file: its stem when that is a known split, else the first known split in the stem
    (``coqa-dev-v1.0.json`` -> dev, ``snli_ve_train.jsonl`` -> train), else the bare stem."""
    base = os.path.basename(str(path))
    for ext in (".gz", ".jsonl", ".json", ".tsv", ".src", ".tgt", ".source", ".target", ".txt"):
        if base.endswith(ext):
            base = base[: -len(ext)]
    known = list(known)
    if base in known:
        return base
    tokens = base.replace("-", "_").replace(".", "_").split("_")
    for k in known:
        if k in tokens:
            return k
    return base


def list_inputs(inputs: Iterable[str], patterns: tuple[str, ...]) -> list[str]:
    """Expand folders to the files in them ending with one of ``patterns`` (sorted); files are kept as given."""
    out: list[str] = []
    for p in inputs:
        p = str(p)
        if os.path.isdir(p):
            found = sorted(os.path.join(p, f) for f in os.listdir(p) if f.endswith(patterns))
            if not found:
                raise FileNotFoundError(f"no input file ending with {'/'.join(patterns)} in {p}")
            out += found
        elif os.path.isfile(p):
            out.append(p)
        elif os.path.exists(p):
            raise UserError("not a regular file or a directory", file=p, hint="give data files or a folder of them")
        else:
            raise FileNotFoundError(f"input not found: {p}")
    return out


def clean_text(text: str) -> str:
    """Collapse runs of whitespace (captions carry stray newlines and double spaces) and strip the ends."""
    return " ".join(text.split())


def make_summary(name: str, inputs: Iterable[str], out: AtomicOutputs, log: IssueLog, **extra: Any) -> dict:
    """The JSON summary every converter returns (and the CLI prints / saves)."""
    summary = {"converter": name, "inputs": [os.path.abspath(str(p)) for p in inputs],
               "output_dir": os.path.abspath(out.out_dir), "outputs": dict(sorted(out.counts.items())),
               "skipped": dict(sorted(Counter(log.skipped).items())), "skipped_total": log.total_skipped}
    if log.messages:
        summary["skipped_examples"] = list(log.messages)
    if out.warnings:
        summary["warnings"] = list(out.warnings)
    summary.update(extra)
    return summary
