"""Shared plumbing of the converters: atomic output files, JSON input with located errors, split names, summaries."""
from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from typing import Any, Iterable, Iterator

from unimo.reader.datasets import DataError, IssueLog, iter_lines

__all__ = ["DataError", "IssueLog", "AtomicOutputs", "file_mode", "load_json", "iter_jsonl_objects", "split_from_name",
           "make_summary", "clean_text", "list_inputs"]


def file_mode() -> int:
    """Permissions a plain ``open(..., "w")`` would give under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


class _JsonlWriter:
    def __init__(self, f):
        self._f = f
        self.count = 0

    def write(self, obj: dict) -> None:
        self._f.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self.count += 1


class AtomicOutputs:
    """Write every output under a temporary name in the output folder; rename all of them only on success.

    On any exception the temporary files are deleted (and the output folder too if this run created it and it is
    empty), so a failed conversion leaves nothing behind and never clobbers earlier results.
    """

    def __init__(self, out_dir: str):
        self.out_dir = str(out_dir)
        self._created_dir = not os.path.isdir(self.out_dir)
        os.makedirs(self.out_dir, exist_ok=True)
        self._files: dict[str, tuple[str, Any]] = {}
        self.counts: dict[str, int] = {}
        self._writers: dict[str, _JsonlWriter] = {}

    def _open(self, name: str):
        if name in self._files:
            raise ValueError(f"output {name} opened twice")
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.out_dir)
        f = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        self._files[name] = (tmp, f)
        return f

    def jsonl(self, name: str) -> _JsonlWriter:
        """A writer of one JSON object per line (opened once per name; later calls return the same writer)."""
        if name not in self._writers:
            self._writers[name] = _JsonlWriter(self._open(name))
        return self._writers[name]

    def json(self, name: str, obj: Any, indent: int | None = None) -> None:
        f = self._open(name)
        json.dump(obj, f, ensure_ascii=False, indent=indent)
        f.write("\n")

    def __enter__(self) -> "AtomicOutputs":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for tmp, f in self._files.values():
            f.close()
        if exc_type is None:
            mode = file_mode()
            for name, (tmp, _) in self._files.items():
                os.chmod(tmp, mode)  # mkstemp creates 0600; give the final file the usual permissions
                os.replace(tmp, os.path.join(self.out_dir, name))
            self.counts = {name: w.count for name, w in self._writers.items()}
            return
        for tmp, _ in self._files.values():
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if self._created_dir:
            try:
                os.rmdir(self.out_dir)
            except OSError:
                pass


def load_json(path: str) -> Any:
    """Parse a whole JSON document; syntax errors name the file, line and column."""
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"input file not found: {path}")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(path, line, None, f"not valid UTF-8 ({e.reason})", "bad_utf8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, e.lineno, None, f"invalid JSON ({e.msg} at column {e.colno})", "bad_json") from None


def iter_jsonl_objects(path: str, log: IssueLog, progress: bool = False) -> Iterator[tuple[int, dict]]:
    """``(lineno, object)`` for every non-blank line; unparsable lines go to ``log`` (raise or count)."""
    from unimo.utils.io import iter_jsonl

    return iter_jsonl(str(path), log, progress)


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
    summary.update(extra)
    return summary
