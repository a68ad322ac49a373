"""Object tags for captioning (Oscar-style, official COCO recipe): the tag file and tags from a feature store.

The official COCO recipe feeds ``[regions ; object tags ; caption]`` (spec section 1.2: "a second text sequence
``emb_obj_ids`` (word+pos, same shared ``word_embedding``/``pos_embedding``, same ``pre_encoder`` LN params)") and
decodes from ``[regions ; object tags]``. Its tags come from a file (spec section 4.4: "Object-tag file
(``coco_object_0.35_tot.ids`` base, ``0.2`` large): ``image_id;token_ids;sent_ids;pos_ids``, truncated to
``max_obj_len``=100").

* :func:`read_tag_file` reads such a file (model ids, ``;``-separated, one image per line); errors name
  ``file:line: field``. ``sent_ids`` are checked and dropped (the model has no segment embedding, spec 1.1).
* :func:`store_tag_words` / :func:`tag_sequence` / :func:`StoreTags` make tags from a feature store's object
  predictions (``obj_id``/``obj_conf``, or derived from ``cls_prob``), which is what ``python -m
  preprocess.object_tags`` writes and what inference needs for an image that has no line in a tag file.

Tag order and duplicates (our decision; the official files were made offline and their generator is not public):
the detected class names of one image in descending confidence (ties: box order), as Oscar feeds its detector's
labels; duplicates are kept, one word per box above the threshold, as in Oscar (repetition carries the count:
"circle circle" for two circles) and as ``max_obj_len`` = 100 = the 100 boxes of a BUTD image suggests. The token
sequence is the BPE of the words (each after a space) followed by ``[SEP]`` (Oscar ends its tag segment with [SEP]),
positions 2, 3, ... (positions start at 2 in every text segment, spec 1.1). No paddle, no model here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..tokenizer import SEP_ID
from ..utils.errors import DataError, UserError
from ..utils.io import atomic_write, iter_lines

MODEL_VOCAB_SIZE = 50265
MAX_POSITIONS = 514  # pos_embedding rows (spec 1.1)
TAG_FIELDS = ("image_id", "token_ids", "sent_ids", "pos_ids")


@dataclass(frozen=True)
class TagSequence:
    """One image's object tags as model input: token ids and their position ids (equal lengths)."""

    token_ids: tuple[int, ...]
    pos_ids: tuple[int, ...]

    def truncated(self, max_len: int) -> "TagSequence":
        return TagSequence(self.token_ids[:max_len], self.pos_ids[:max_len])

    def __len__(self) -> int:
        return len(self.token_ids)


EMPTY = TagSequence((), ())


def normalise_image_id(raw: str) -> str:
    """The key an image id is looked up by: decimal ids lose leading zeros (``"000391895"`` -> ``"391895"``, as the
    feature stores key COCO images); an official 9-character prefix + digits (the img2txt reader keeps
    ``int(image_id[9:])``) gives the digits; anything else is kept as written."""
    raw = raw.strip()
    if raw.isdigit():
        return str(int(raw))
    if len(raw) > 9 and raw[9:].isdigit():
        return str(int(raw[9:]))
    return raw


def _ints(text: str, path: str, line: int, field: str, upper: int) -> list[int]:
    out = []
    for tok in text.split():
        if not (tok.isascii() and tok.isdigit()):
            raise DataError(path, line, field, f"not a non-negative integer: {tok[:20]!r}", "bad_token_id")
        v = int(tok)
        if v >= upper:
            raise DataError(path, line, field, f"{v} outside [0, {upper})", "bad_token_id")
        out.append(v)
    return out


def read_tag_file(path: str, max_obj_len: int | None = None) -> dict[str, TagSequence]:
    """``{image id: TagSequence}`` of an official tag file, each truncated to ``max_obj_len`` tokens.

    A line is ``image_id;token_ids;sent_ids;pos_ids`` (space-separated model ids; empty fields = no tags). Raises
    :class:`DataError` (``file:line: field '...': ...``) for a wrong field count, a bad id, fields of different
    lengths, positions outside ``pos_embedding`` or an image listed twice."""
    if not os.path.isfile(path):
        raise UserError("object tag file not found", file=path, field="object_tag_file",
                        hint="python -m preprocess.object_tags --features STORE --vocab objects_vocab.txt "
                             "--output tags.ids")
    out: dict[str, TagSequence] = {}
    first: dict[str, int] = {}
    for n, text in iter_lines(path):
        if not text.strip():
            continue
        fields = text.split(";")
        if len(fields) != len(TAG_FIELDS):
            raise DataError(path, n, None, f"expected {len(TAG_FIELDS)} ';'-separated fields "
                            f"({';'.join(TAG_FIELDS)}), got {len(fields)}", "bad_field_count")
        key = normalise_image_id(fields[0])
        if not key:
            raise DataError(path, n, "image_id", "empty", "bad_id")
        if key in first:
            raise DataError(path, n, "image_id", f"image {key!r} is listed twice (first at line {first[key]})",
                            "duplicate_id")
        ids = _ints(fields[1], path, n, "token_ids", MODEL_VOCAB_SIZE)
        sent = _ints(fields[2], path, n, "sent_ids", 2 ** 31)
        pos = _ints(fields[3], path, n, "pos_ids", MAX_POSITIONS)
        for name, values in (("sent_ids", sent), ("pos_ids", pos)):
            if len(values) != len(ids):
                raise DataError(path, n, name, f"{len(values)} values for {len(ids)} token_ids", "length_mismatch")
        seq = TagSequence(tuple(ids), tuple(pos))
        out[key] = seq if max_obj_len is None else seq.truncated(max_obj_len)
        first[key] = n
    return out


def load_object_vocab(path: str) -> list[str]:
    """Class names of a detector vocabulary (one class per line, synonyms comma-separated, the first is used):
    entry ``i`` names object id ``i`` (class column ``i + 1``; column 0 = background), as BUTD's
    ``objects_vocab.txt``."""
    if not os.path.isfile(path):
        raise UserError("object vocabulary not found", file=path, field="vocab",
                        hint="Visual Genome 1600 objects: bottom-up-attention data/genome/1600-400-20/objects_vocab.txt")
    names = []
    for n, text in iter_lines(path):
        name = text.split(",")[0].strip()
        if not name:
            raise DataError(path, n, None, "empty class name", "bad_value")
        names.append(name)
    if not names:
        raise DataError(path, None, None, "no class names", "bad_value")
    return names


def store_tag_words(record: Any, class_names: Sequence[str], conf: float) -> list[str]:
    """Class names of the boxes whose object confidence is >= ``conf``, in descending confidence (ties: box order),
    duplicates kept. ``record`` is a :class:`~unimo.reader.feature_formats.RegionFeatures` with object predictions
    (``obj_id``/``obj_conf``, or ``cls_prob`` to derive them from). ``obj_id`` is 0-based without background (the
    store convention, as LXMERT writes it): ``obj_id == i`` is ``class_names[i]``, line i + 1 of objects_vocab.txt."""
    pred = record.object_predictions()
    if pred is None:
        raise UserError(f"image {record.image_id!r} has no object predictions (obj_id/obj_conf or cls_prob)",
                        field="features", hint="object tags need a store converted with its detector's classes")
    obj_id, obj_conf = (np.asarray(x).reshape(-1) for x in pred)
    obj_conf = obj_conf.astype(np.float32)
    order = np.argsort(-obj_conf, kind="stable")
    threshold = np.float32(conf)  # compared at the stored precision: a float32 0.35 passes --conf 0.35
    words = []
    for i in order:
        if not obj_conf[i] >= threshold:
            break
        c = int(obj_id[i])
        if not 0 <= c < len(class_names):
            raise UserError(f"image {record.image_id!r}: object class {c} outside the vocabulary's "
                            f"0..{len(class_names) - 1}", field="vocab")
        words.append(class_names[c])
    return words


def tag_sequence(words: Sequence[str], tokenizer: Any) -> TagSequence:
    """BPE of the words, each after a space, + ``[SEP]``, positions 2, 3, ...; no words -> no tokens. The leading
    space gives every tag the BPE it has inside a caption (" star", not "star"), so a tag and the caption word it
    names are the same token."""
    if not words:
        return EMPTY
    ids = list(tokenizer.encode(" " + " ".join(words))) + [SEP_ID]
    return TagSequence(tuple(ids), tuple(range(2, 2 + len(ids))))


class StoreTags:
    """Tags computed on demand from a feature store's object predictions (``image id -> TagSequence``), for images
    that have no tag file (a fresh store at inference)."""

    def __init__(self, store: Any, class_names: Sequence[str], tokenizer: Any, conf: float = 0.35,
                 max_obj_len: int | None = None):
        self.store, self.class_names, self.tokenizer = store, list(class_names), tokenizer
        self.conf, self.max_obj_len = float(conf), max_obj_len

    def __getitem__(self, image_id: str) -> TagSequence:
        seq = tag_sequence(store_tag_words(self.store[image_id], self.class_names, self.conf), self.tokenizer)
        return seq if self.max_obj_len is None else seq.truncated(self.max_obj_len)

    def get(self, image_id: str, default: Any = None) -> Any:
        return self[image_id] if image_id in self.store else default

    def __contains__(self, image_id: object) -> bool:
        return image_id in self.store


def tags_for(source: Mapping[str, TagSequence] | StoreTags, image_ids: Iterable[str], where: str) -> list[TagSequence]:
    """The tags of each image (``where`` names the tag source in the error for an image it does not list)."""
    out = []
    for image_id in image_ids:
        key = normalise_image_id(str(image_id))
        seq = source.get(key)
        if seq is None:
            seq = source.get(str(image_id))
        if seq is None:
            raise UserError(f"no object tags for image {image_id!r}", file=where, field="object_tag_file",
                            hint="every captioned image needs a line (an empty one when nothing was detected)")
        out.append(seq)
    return out


def format_tag_line(image_id: str, seq: TagSequence) -> str:
    """One line of the official tag format (sent_ids all 0)."""
    return ";".join([image_id, " ".join(map(str, seq.token_ids)), " ".join("0" for _ in seq.token_ids),
                     " ".join(map(str, seq.pos_ids))])


def write_tag_file(path: str, lines: Iterable[tuple[str, TagSequence]]) -> int:
    """Write ``(image id, tags)`` lines atomically; returns the number of lines."""
    count = 0
    with atomic_write(path) as f:
        for image_id, seq in lines:
            if ";" in image_id or "\n" in image_id:
                raise UserError(f"image id {image_id!r} contains ';' or a newline", field="image_id")
            f.write(format_tag_line(image_id, seq) + "\n")
            count += 1
    return count
