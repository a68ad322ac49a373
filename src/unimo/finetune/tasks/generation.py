"""Generation tasks: text seq2seq (CNN/DM, Gigaword, SQuAD-QG, CoQA dialog) and image captioning (COCO).

Training (official ``seq2seq_reader.py`` / ``img2txt_reader.py``): one sequence [source ; target] with the seq2seq
mask (text) or [image ; object tags ; caption] with the image-to-text mask; the tied LM head predicts target token
j+1 at target position j (``label_positions`` = flattened indices, the official ``tgt_pos``), label-smoothed CE.
Decoding: beam search with the official settings (``unimo.generation``), EOS [MASK] for text and [SEP] for captions.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
from tqdm import tqdm

from ... import masks
from ...generation import BeamSearchConfig, beam_search, ids_to_text
from ...model.modeling import UnimoForGeneration
from ...reader.object_tags import StoreTags, TagSequence, load_object_vocab, read_tag_file, tags_for
from ...tokenizer import CLS_ID, MASK_ID, PAD_ID, SEP_ID
from ...utils.errors import ConfigError
from ..config import DecodingConfig, FinetuneConfig
from .base import Task, pad_2d
from .multimodal import MultimodalConfig, MultimodalTask

SEQ2SEQ_METRICS = {"rouge": "rouge-l", "rouge_cnndm": "rouge-l", "qg": "Bleu_4", "coqa": "f1"}

def _decode_config(cfg: DecodingConfig, eos_id: int, word_start) -> BeamSearchConfig:
    """The evaluation beam search of a run (its :class:`DecodingConfig` keys)."""
    return BeamSearchConfig(eos_id=eos_id, beam_size=cfg.beam_size, max_out_len=cfg.max_out_len,
                            min_out_len=cfg.min_out_len, length_penalty=cfg.length_penalty,
                            trigram_blocking=cfg.trigram_blocking,
                            word_start=word_start if cfg.trigram_blocking else None)


def _pack_targets(examples: Sequence[dict], prefix_lens: Sequence[int], width: int) -> tuple[np.ndarray, np.ndarray]:
    """labels = target[1:], positions = row * width + prefix + j (the token at target position j predicts j+1)."""
    labels, positions = [], []
    for row, (e, start) in enumerate(zip(examples, prefix_lens)):
        tgt = e["tgt_ids"]
        labels += tgt[1:]
        positions += [row * width + start + j for j in range(len(tgt) - 1)]
    return np.array(labels, np.int64), np.array(positions, np.int64)


@dataclass
class Seq2SeqConfig(FinetuneConfig, DecodingConfig):
    max_src_len: int = 512
    max_tgt_len: int = 128
    label_smoothing: float = 0.1
    metric: str = "rouge"  # rouge | rouge_cnndm | qg | coqa
    max_eval_examples: Optional[int] = None  # the first N dev/test examples (CPU-sized evaluation)
    role_type_size: int = 3  # dialog (official CoQA reader)
    turn_type_size: int = 16
    max_turns: int = 15

    def validate(self) -> None:
        super().validate()
        self.require(self.metric in SEQ2SEQ_METRICS, "metric", f"must be one of {', '.join(SEQ2SEQ_METRICS)}")
        self.require(0.0 <= self.label_smoothing < 1.0, "label_smoothing", "must be in [0, 1)")
        self.require(self.max_turns >= 1, "max_turns", "must be >= 1")


class Seq2SeqTask(Task):
    name = "seq2seq"
    config_class = Seq2SeqConfig

    def __init__(self, cfg: Seq2SeqConfig, tokenizer, output_dir):
        super().__init__(cfg, tokenizer, output_dir)
        self.dialog = cfg.task == "dialog"
        self.metric = cfg.metric
        self.key_metric = SEQ2SEQ_METRICS[self.metric]

    # -- reader
    def _segments(self, ex: dict) -> tuple[list[list[int]], list[int], list[int], tuple[int, int]]:
        """Source segments (ids), with role and turn ids per segment and the (role, turn) of the leading [CLS].

        Dialog (official dialog reader, as ``_convert_dialogue_example_to_record``): the last ``max_turns`` turns;
        the [CLS] and the oldest kept turn get role ``len(turns) % 2`` and turn ``len(turns)``, each newer turn
        flips the role and decrements the turn (the current question: turn 1); knowledge gets role 2 / turn 0."""
        enc = self.tokenizer.encode
        segs = ex.get("src_ids") or [enc(s) for s in ex.get("src", [])]
        if not self.dialog:
            return segs, [0] * len(segs), [0] * len(segs), (0, 0)
        turns = segs[-self.cfg.max_turns:]
        knowledge = ex.get("knowledge_ids") or (enc(ex["knowledge"]) if ex.get("knowledge") else None)
        n = len(turns)
        roles = [(n % 2 + i) % 2 for i in range(n)]  # alternate, starting at len(turns) % 2
        turn_ids = [n - i for i in range(n)]           # decreasing turn index, the newest turn = 1
        if knowledge is not None:
            return [knowledge] + turns, [2] + roles, [0] + turn_ids, (n % 2, n)
        return turns, roles, turn_ids, (n % 2, n)

    def load(self, split: str) -> list[dict[str, Any]]:
        out = []
        task = "dialog" if self.dialog else "seq2seq"
        vocab = os.path.join(self.cfg.vocab_dir, "unimo_en.vocab.txt")
        for ex in self.read_examples(split, task, vocab_path=vocab):
            segs, roles, turns, (cls_role, cls_turn) = self._segments(ex)
            target = ex.get("tgt_ids", ex.get("tgt"))
            rec = self.tokenizer.build_seq2seq_inputs(segs, target, self.cfg.max_src_len, self.cfg.max_tgt_len)
            role_ids, turn_ids = [cls_role], [cls_turn]
            for seg_ids, r, t in zip(segs, roles, turns):
                n = min(len(seg_ids), self.cfg.max_src_len - 2) + 1
                role_ids += [r] * n
                turn_ids += [t] * n
            texts = [s for s in ex.get("src", []) if isinstance(s, str)]
            # the source as the official QG evaluation keys it (one line of the source file): the text when the
            # data has it, else the decoded source ids (official TSVs hold ids only)
            source_text = " [SEP] ".join(texts) if texts else " [SEP] ".join(self.tokenizer.decode(s) for s in segs)
            rec.update(role_ids=role_ids, turn_ids=turn_ids, id=ex.get("id", len(out)),
                       reference=ex.get("tgt") if isinstance(ex.get("tgt"), str) else None,
                       source_text=source_text)
            if rec["reference"] is None and ex.get("tgt_ids"):
                rec["reference"] = self.tokenizer.decode([i for i in ex["tgt_ids"] if i not in (SEP_ID, MASK_ID)])
            out.append(rec)
        return out

    def collate(self, examples: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
        seqs = [e["src_ids"] + e["tgt_ids"] for e in examples]
        width = max(len(s) for s in seqs)
        batch = {"input_ids": pad_2d(seqs, PAD_ID, width),
                 "position_ids": pad_2d([e["src_pos"] + e["tgt_pos"] for e in examples], PAD_ID, width),
                 "attention_mask": masks.pad_and_stack(
                     [masks.seq2seq(len(e["src_ids"]), len(e["tgt_ids"])) for e in examples], width)}
        if self.dialog:
            batch["role_ids"] = pad_2d([e["role_ids"] + [0] * len(e["tgt_ids"]) for e in examples], 0, width)
            batch["turn_ids"] = pad_2d([e["turn_ids"] + [0] * len(e["tgt_ids"]) for e in examples], 0, width)
        batch["labels"], batch["label_positions"] = _pack_targets(examples, [len(e["src_ids"]) for e in examples],
                                                                  width)
        return batch

    def build_model(self, config):
        if self.dialog:
            config = config.copy(role_type_size=self.cfg.role_type_size, turn_type_size=self.cfg.turn_type_size)
        return self.load_or_init(UnimoForGeneration, config, label_smoothing=self.cfg.label_smoothing)

    # -- decoding + metric
    def source_batch(self, examples: Sequence[dict]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        srcs = [e["src_ids"] for e in examples]
        width = max(len(s) for s in srcs)
        valid = np.zeros((len(srcs), width), np.float32)
        for i, s in enumerate(srcs):
            valid[i, :len(s)] = 1.0
        source = {"input_ids": pad_2d(srcs, PAD_ID, width),
                  "position_ids": pad_2d([e["src_pos"] for e in examples], PAD_ID, width),
                  "attention_mask": masks.bidirectional_batch(valid)}
        if self.dialog:
            source["role_ids"] = pad_2d([e["role_ids"] for e in examples], 0, width)
            source["turn_ids"] = pad_2d([e["turn_ids"] for e in examples], 0, width)
        return source, valid

    def generate(self, model, examples: Sequence[dict]) -> list[str]:
        dcfg = _decode_config(self.cfg, MASK_ID, self.tokenizer.word_start_table())
        bs = self.cfg.eval_batch_size or self.cfg.batch_size
        out: list[str] = []
        for i in tqdm(range(0, len(examples), bs), desc="decode", disable=self.cfg.disable_tqdm):
            source, valid = self.source_batch(examples[i:i + bs])
            for ids, _score in beam_search(model, source, valid, dcfg):
                out.append(ids_to_text(ids, self.tokenizer, strip=True))
        return out

    def evaluate(self, model, split: str) -> dict[str, float]:
        examples = self.load(split)
        if self.cfg.max_eval_examples:
            examples = examples[:self.cfg.max_eval_examples]
        preds = self.generate(model, examples)
        os.makedirs(self.output_dir, exist_ok=True)
        with open(os.path.join(self.output_dir, f"predictions_{split}.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(p.replace("\n", " ") for p in preds) + "\n")
        refs = [e["reference"] for e in examples]
        if any(r is None for r in refs):
            return {}
        if self.metric in ("rouge", "rouge_cnndm"):
            from ...eval.rouge import rouge_scores

            res = rouge_scores(preds, refs, cnndm=self.metric == "rouge_cnndm")
        elif self.metric == "qg":
            from ...eval.coco import qg_scores

            # references grouped by source sentence, the last prediction of a sentence as its hypothesis, as the
            # official / nqg / UniLM QG evaluation (its key is the source line, lowercased and stripped)
            res = qg_scores(preds, refs, sources=[e["source_text"] for e in examples])
        else:
            from ...eval.coqa import coqa_scores

            res = coqa_scores(preds, [[r] for r in refs])
        return {k: v for k, v in res.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


@dataclass
class CaptionConfig(MultimodalConfig, DecodingConfig):
    """Official COCO captioning values (``script/img2txt/coco``): beam 5, 5-50 tokens, length penalty 0.6.

    ``object_tags: true`` is the official input ``[regions ; object tags ; caption]`` (spec sections 1.2, 3, 5.4):
    tags from ``object_tag_file`` (official format ``image_id;token_ids;sent_ids;pos_ids``), else computed from the
    feature store's object predictions with ``object_vocab`` and ``object_tag_conf`` (what ``python -m
    preprocess.object_tags`` writes); truncated to ``max_obj_len`` tokens."""

    max_tgt_len: int = 50
    max_obj_len: int = 100
    object_tags: bool = False
    object_tag_file: Optional[str] = None  # python -m preprocess.object_tags ... --output FILE (relative: data_dir)
    object_vocab: Optional[str] = None  # without a tag file: detector class names (VG objects_vocab.txt)
    object_tag_conf: float = 0.35  # without a tag file: boxes with object confidence >= this (official base 0.35)
    label_smoothing: float = 0.1
    max_out_len: int = 50
    min_out_len: int = 5
    length_penalty: float = 0.6
    max_eval_images: Optional[int] = None

    def validate(self) -> None:
        super().validate()
        self.require(0.0 <= self.label_smoothing < 1.0, "label_smoothing", "must be in [0, 1)")
        self.require(self.max_obj_len >= 0, "max_obj_len", "must be >= 0")
        self.require(0.0 <= self.object_tag_conf <= 1.0, "object_tag_conf", "must be in [0, 1]")
        if self.object_tags:
            self.require(bool(self.object_tag_file or self.object_vocab), "object_tags",
                         "needs object_tag_file (official tag file) or object_vocab (tags from the feature store)",
                         "python -m preprocess.object_tags --features STORE --vocab objects_vocab.txt "
                         "--output tags.ids, then object_tag_file=tags.ids")
            self.require(self.max_obj_len >= 1, "max_obj_len", "must be >= 1 with object_tags")


def most_frequent_caption(captions: Sequence[str]) -> str:
    """The constant-caption baseline: the most frequent caption; ties go to the alphabetically first (a stated rule:
    ``max(set(...), key=count)`` broke ties by hash order, so the baseline changed from run to run)."""
    counts = Counter(captions)
    if not counts:
        raise ValueError("no reference captions")
    return min(counts, key=lambda c: (-counts[c], c))


class CaptionTask(MultimodalTask):
    """COCO captioning: [image ; object tags ; caption], image-to-text mask, EOS [SEP]; CIDEr-D as key metric.

    Object tags go through the model's own tag input (``obj_input_ids`` / ``obj_position_ids``: word + position
    embeddings and the text LayerNorm, the official ``emb_obj_ids`` path), so VILLA's text delta
    (``text_embedding_delta``, shaped like ``input_ids``) perturbs the caption only, as the official recipe does
    (spec 5.4: "delta added to summed word+pos embeddings of the caption")."""

    name = "img2txt"
    key_metric = "CIDEr-D"
    config_class = CaptionConfig

    def __init__(self, cfg, tokenizer, output_dir):
        super().__init__(cfg, tokenizer, output_dir)
        self._tags: Any = None

    def load(self, split: str) -> list[dict[str, Any]]:
        out = []
        max_len = self.cfg.max_tgt_len
        for ex in self.read_examples(split, "caption"):
            ids = ex.get("caption_ids")
            body = [i for i in ids if i not in (CLS_ID, SEP_ID)] if ids else self.tokenizer.encode(ex["caption"])
            tgt = [CLS_ID] + body[:max_len - 2] + [SEP_ID]  # truncated keeping the final [SEP] (official)
            out.append({"image_id": str(ex["image_id"]), "tgt_ids": tgt,
                        "caption": ex.get("caption") or self.tokenizer.decode(body)})
        return out

    # -- object tags
    def _resolve(self, path: str) -> str:
        if not os.path.isabs(path) and self.cfg.data_dir and not os.path.exists(path):
            return os.path.join(self.cfg.data_dir, path)
        return path

    @property
    def tag_source(self) -> Any:
        """``image id -> TagSequence``: the tag file (read once), else tags from the feature store's object
        predictions (:class:`~unimo.reader.object_tags.StoreTags`); assignable (e.g. by the inference API)."""
        if self._tags is None:
            cfg = self.cfg
            if cfg.object_tag_file:
                self._tags = read_tag_file(self._resolve(cfg.object_tag_file), cfg.max_obj_len)
            else:
                self._tags = StoreTags(self.images.store, load_object_vocab(self._resolve(cfg.object_vocab)),
                                       self.tokenizer, cfg.object_tag_conf, cfg.max_obj_len)
        return self._tags

    @tag_source.setter
    def tag_source(self, value: Any) -> None:
        self._tags = value

    def use_store_tags(self, store: Any, object_vocab: Optional[str] = None) -> None:
        """Take the tags from ``store``'s object predictions (a feature store or anything with ``in`` and
        ``[image_id] -> RegionFeatures``), e.g. at inference on images no tag file lists; the class names from
        ``object_vocab`` (default: the config's). Does nothing when ``object_tags`` is off."""
        if not self.cfg.object_tags:
            return
        vocab = object_vocab or self.cfg.object_vocab
        if not vocab:
            raise ConfigError("tags from object predictions need the detector's class names", field="object_vocab",
                              hint="object_vocab=model_files/vg_1600_400_20/objects_vocab.txt")
        self._tags = StoreTags(store, load_object_vocab(self._resolve(vocab)), self.tokenizer,
                               self.cfg.object_tag_conf, self.cfg.max_obj_len)

    def object_tags(self, image_ids: Sequence[str]) -> list[TagSequence]:
        """Each image's tags (truncated to ``max_obj_len``); empty sequences when ``object_tags`` is off."""
        if not self.cfg.object_tags:
            return [TagSequence((), ()) for _ in image_ids]
        where = self.cfg.object_tag_file or f"{self.cfg.feature_store} (object predictions)"
        return [t.truncated(self.cfg.max_obj_len) for t in tags_for(self.tag_source, image_ids, where)]

    def tag_inputs(self, image_ids: Sequence[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(``obj_input_ids`` / ``obj_position_ids`` [B, No], padded with [PAD] as the official batching; empty dict
        when no image has tags) and the tags' validity [B, No]."""
        tags = self.object_tags(image_ids)
        width = max((len(t) for t in tags), default=0)
        valid = np.zeros((len(tags), width), np.float32)
        for i, t in enumerate(tags):
            valid[i, :len(t)] = 1.0
        if width == 0:
            return {}, valid
        return {"obj_input_ids": pad_2d([list(t.token_ids) for t in tags], PAD_ID, width),
                "obj_position_ids": pad_2d([list(t.pos_ids) for t in tags], PAD_ID, width)}, valid

    def source_batch(self, image_ids: Sequence[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The decoding source [image ; object tags] (official "vo"): bidirectional among its valid positions; and
        its validity [B, Nv + No] (the first row of every decoding step's mask)."""
        img = self.images.batch(list(image_ids))
        tag_arrays, tag_valid = self.tag_inputs(image_ids)
        valid = np.concatenate([img["image_valid"], tag_valid], axis=1)
        source = {"image_features": img["image_features"], "image_locations": img["image_locations"],
                  **tag_arrays, "attention_mask": masks.bidirectional_batch(valid)}
        return source, valid

    def collate(self, examples):
        image_ids = [e["image_id"] for e in examples]
        img = self.images.batch(image_ids)
        tag_arrays, tag_valid = self.tag_inputs(image_ids)
        nv, no = img["image_features"].shape[1], tag_valid.shape[1]
        tgts = [e["tgt_ids"] for e in examples]
        ids = pad_2d(tgts, PAD_ID)
        nt = ids.shape[1]
        mask = np.stack([masks.image_to_text(img["image_valid"][i], tag_valid[i], [1] * len(t) + [0] * (nt - len(t)))
                         for i, t in enumerate(tgts)])
        batch = {"input_ids": ids, "position_ids": pad_2d([list(range(2, 2 + len(t))) for t in tgts], PAD_ID),
                 "image_features": img["image_features"], "image_locations": img["image_locations"],
                 **tag_arrays, "attention_mask": mask}
        batch["labels"], batch["label_positions"] = _pack_targets(examples, [nv + no] * len(examples), nv + no + nt)
        return batch

    def build_model(self, config):
        return self.load_or_init(UnimoForGeneration, config, label_smoothing=self.cfg.label_smoothing)

    def generate(self, model, image_ids: Sequence[str]) -> dict[str, str]:
        dcfg = _decode_config(self.cfg, SEP_ID, self.tokenizer.word_start_table())
        bs = self.cfg.eval_batch_size or self.cfg.batch_size
        out: dict[str, str] = {}
        for i in tqdm(range(0, len(image_ids), bs), desc="caption", disable=self.cfg.disable_tqdm):
            chunk = list(image_ids[i:i + bs])
            source, valid = self.source_batch(chunk)
            for image_id, (ids, _s) in zip(chunk, beam_search(model, source, valid, dcfg)):
                out[image_id] = ids_to_text(ids, self.tokenizer, strip=True)
        return out

    def evaluate(self, model, split: str) -> dict[str, float]:
        from ...eval.coco import caption_scores

        examples = self.load(split)
        refs: dict[str, list[str]] = {}
        for e in examples:
            refs.setdefault(e["image_id"], []).append(e["caption"])
        image_ids = list(refs)
        if self.cfg.max_eval_images:
            image_ids = image_ids[:self.cfg.max_eval_images]
        preds = self.generate(model, image_ids)
        self.write_json(f"captions_{split}_results.json",
                        [{"image_id": int(k) if k.isdigit() else k, "caption": v} for k, v in preds.items()])
        scored_refs = {k: refs[k] for k in image_ids}
        scores = caption_scores(preds, scored_refs)
        # trivial baseline: the most frequent reference caption of the split, predicted for every image
        constant = most_frequent_caption([c for k in image_ids for c in refs[k]])
        base = caption_scores({k: constant for k in image_ids}, scored_refs, meteor=False)
        scores["constant_caption_CIDEr-D"] = base["CIDEr-D"]
        if self.cfg.shuffled_image_control and len(image_ids) > 1:
            # blind control: each caption scored against the references of another image (a fixed derangement);
            # captions that describe their own image lose much of their CIDEr-D here, generic ones do not
            order = [image_ids[j] for j in np.random.default_rng(0).permutation(len(image_ids))]
            swapped = {k: preds[order[(i + 1) % len(order)]] for i, k in enumerate(order)}
            scores["CIDEr-D_shuffled_images"] = caption_scores(swapped, scored_refs, meteor=False)["CIDEr-D"]
        return {k: v for k, v in scores.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
