"""Input readers (pairs, corpus) and the resumable JSONL writer."""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable


class InputError(ValueError):
    pass


@dataclass(slots=True)  # millions of these live in memory
class Pair:
    image_id: str
    caption_id: str
    caption: str


@dataclass
class ReadReport:
    bad: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, msg: str) -> None:
        self.bad += 1
        if len(self.examples) < 20:
            self.examples.append(msg)


def _id_field(rec: dict, name: str, where: str) -> str | None:
    val = rec.get(name)
    if val is None:
        return None
    if isinstance(val, bool) or not isinstance(val, (str, int)):
        raise InputError(f"{where}: field {name!r} must be a string or an integer, got {type(val).__name__}")
    val = str(val).strip()
    if not val:
        raise InputError(f"{where}: field {name!r} is empty")
    return val


def _caption_field(rec: dict, name: str, where: str) -> str:
    cap = rec.get(name)
    if cap is None:
        raise InputError(f"{where}: field {name!r} missing")
    if not isinstance(cap, str):
        raise InputError(f"{where}: field {name!r} must be a string, got {type(cap).__name__}")
    cap = " ".join(cap.split())
    if not cap:
        raise InputError(f"{where}: field {name!r} is empty")
    return cap


def _read_jsonl(path: Path, skip_bad: bool, report: ReadReport) -> list[Pair]:
    pairs: list[Pair] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{where}: malformed JSON ({exc.msg} at column {exc.colno})") from None
                if not isinstance(rec, dict):
                    raise InputError(f"{where}: expected a JSON object, got {type(rec).__name__}")
                image_id = _id_field(rec, "image_id", where)
                if image_id is None:
                    raise InputError(f"{where}: field 'image_id' missing")
                caption = _caption_field(rec, "caption", where)
                caption_id = _id_field(rec, "caption_id", where)
            except InputError as exc:
                if not skip_bad:
                    raise
                report.add(str(exc))
                continue
            # Without an id the line number identifies the pair (stable across resumed runs of the same file).
            pairs.append(Pair(image_id, caption_id if caption_id is not None else f"line{lineno}", caption))
    return pairs


def _read_karpathy(path: Path, data: object, skip_bad: bool, report: ReadReport,
                   splits: set[str] | None) -> list[Pair]:
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise InputError(f"{path}: not a Karpathy-format file (expected an object with an 'images' list)")
    pairs: list[Pair] = []
    for i, img in enumerate(data["images"]):
        where = f"{path}: images[{i}]"
        try:
            if not isinstance(img, dict):
                raise InputError(f"{where}: expected an object")
            if splits is not None and img.get("split") not in splits:
                continue
            image_id = _id_field(img, "cocoid", where) or _id_field(img, "imgid", where) \
                or _id_field(img, "filename", where)
            if image_id is None:
                raise InputError(f"{where}: no 'cocoid', 'imgid' or 'filename'")
            sents = img.get("sentences")
            if not isinstance(sents, list):
                raise InputError(f"{where}: field 'sentences' missing or not a list")
        except InputError as exc:
            if not skip_bad:
                raise
            report.add(str(exc))
            continue
        for j, sent in enumerate(sents):
            swhere = f"{where}.sentences[{j}]"
            try:
                if not isinstance(sent, dict):
                    raise InputError(f"{swhere}: expected an object")
                caption = _caption_field(sent, "raw", swhere)
                sid = _id_field(sent, "sentid", swhere)
            except InputError as exc:
                if not skip_bad:
                    raise
                report.add(str(exc))
                continue
            pairs.append(Pair(image_id, sid if sid is not None else f"{image_id}_{j}", caption))
    return pairs


def read_pairs(path: str | Path, skip_bad: bool = False,
               splits: Iterable[str] | None = None) -> tuple[list[Pair], ReadReport]:
    """Image-caption pairs from JSONL ``{"image_id", "caption"[, "caption_id"]}`` or a Karpathy json."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: pairs file not found")
    report = ReadReport()
    with path.open(encoding="utf-8") as f:
        head = f.read(4096)
    stripped = head.lstrip()
    karpathy = path.suffix == ".json" or (stripped.startswith("{") and '"images"' in stripped.split("\n", 1)[0])
    if karpathy:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})") from None
        pairs = _read_karpathy(path, data, skip_bad, report, set(splits) if splits else None)
    else:
        pairs = _read_jsonl(path, skip_bad, report)
    seen: dict[str, int] = {}
    for k, p in enumerate(pairs):
        if p.caption_id in seen:
            raise InputError(f"{path}: caption_id {p.caption_id!r} appears twice (pairs {seen[p.caption_id] + 1} "
                             f"and {k + 1}); ids must be unique for --resume")
        seen[p.caption_id] = k
    if not pairs:
        raise InputError(f"{path}: no image-caption pairs")
    return pairs, report


def read_corpus(path: str | Path) -> tuple[list[str], int]:
    """One document per line; returns (documents, number of blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: corpus file not found")
    docs, blank = [], 0
    with path.open(encoding="utf-8") as f:
        for line in f:
            line = " ".join(line.split())
            if line:
                docs.append(line)
            else:
                blank += 1
    if not docs:
        raise InputError(f"{path}: corpus has no non-empty line")
    return docs, blank


# --------------------------------------------------------------------------- output

_PREFIX_RE = re.compile(r'^\{"image_id": "(?:[^"\\]|\\.)*", "caption_id": ("(?:[^"\\]|\\.)*")')


class ResumableWriter:
    """Appends JSONL records to ``OUT.partial`` (flushed per chunk) and renames it to ``OUT`` when complete.

    A run that stops leaves only ``OUT.partial``; ``--resume`` continues it (or re-opens a finished ``OUT``
    to add new pairs). A final line cut mid-write is dropped and reported.
    """

    def __init__(self, out: str | Path, resume: bool, overwrite: bool):
        self.out = Path(out)
        self.partial = self.out.with_name(self.out.name + ".partial")
        self.done: set[str] = set()
        self.done_order: list[str] = []  # caption ids of the lines already in the file, in file order
        self.truncated_bytes = 0
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if resume:
            if not self.partial.exists() and self.out.exists():
                os.replace(self.out, self.partial)
            if self.partial.exists():
                self._scan()
        else:
            if self.out.exists() and not overwrite:
                raise InputError(f"{self.out}: exists; pass --resume to continue/extend it or --overwrite")
            if self.partial.exists() and not overwrite:
                raise InputError(f"{self.partial}: an unfinished run is there; pass --resume or --overwrite")
            self.partial.unlink(missing_ok=True)
        self._fh = None

    def _scan(self) -> None:
        good_end = 0
        with self.partial.open("rb") as f:
            for lineno, raw in enumerate(f, 1):
                if not raw.endswith(b"\n"):
                    break  # interrupted write: dropped below
                line = raw.decode("utf-8")
                m = _PREFIX_RE.match(line)
                try:
                    cid = json.loads(m.group(1)) if m else json.loads(line)["caption_id"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise InputError(f"{self.partial}:{lineno}: not a record of this tool; cannot resume") from None
                self.done.add(str(cid))
                self.done_order.append(str(cid))
                good_end += len(raw)
        size = self.partial.stat().st_size
        if size > good_end:
            self.truncated_bytes = size - good_end
            with self.partial.open("r+b") as f:
                f.truncate(good_end)

    def write_lines(self, lines: list[str]) -> None:
        if self._fh is None:
            self._fh = self.partial.open("a", encoding="utf-8")
        self._fh.write("".join(line + "\n" for line in lines))
        self._fh.flush()

    def finish(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if not self.partial.exists():
            self.partial.touch()
        os.replace(self.partial, self.out)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def write_json_atomic(path: Path, obj: object) -> None:
    """The project's atomic JSON writer (:func:`unimo.utils.io.write_json_atomic`), indented by 2."""
    from unimo.utils.io import write_json_atomic as _write

    _write(path, obj, indent=2)
