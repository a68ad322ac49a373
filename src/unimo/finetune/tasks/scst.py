"""Self-critical sequence training (SCST, Rennie et al. 2017) on CIDEr-D: the second captioning stage after the
cross-entropy fine-tuning (the official UNIMO release has none; Oscar/VinVL report COCO results with it).

Per training batch of images (task ``img2txt_scst``, model :class:`ScstModel` around :class:`UnimoForGeneration`):

1. baseline: the greedy caption of each image (``unimo.generation.greedy_search``), or the mean reward of the image's
   other samples (``scst_baseline: mean``);
2. N samples per image (``unimo.generation.sample``: multinomial, or top-k), EOS ``[SEP]``, the same max/min output
   length as the evaluation decoding;
3. reward r = CIDEr-D of each sample against the image's reference captions, with document frequencies computed
   once on all training references (:class:`CiderD`; pycocoevalcap recomputes them on every call);
4. loss = -mean over samples of (r - b) * sum_t log p(w_t), the log-probabilities from one teacher-forced forward
   of the sampled sequences with the image-to-text mask (``masks.image_to_text``), EOS included when generated,
   the EOS logit blocked before ``min_out_len`` as during sampling.

Captions are PTB-tokenized (``unimo.eval.coco.python_ptb_tokenize``) and lowercased before CIDEr-D, as the
evaluation does. Sampling and the teacher-forced pass run without dropout (``scst_dropout: false``) so that the
log-probabilities are those of the distribution the samples came from.
"""
from __future__ import annotations

import math
from collections import Counter, OrderedDict
from typing import Any, Optional, Sequence

import numpy as np
import paddle
from tqdm import tqdm

from ... import masks
from ...eval.coco import python_ptb_tokenize
from ...generation import DecodeConfig, SamplingConfig, greedy_search, ids_to_text, sample
from ...model.modeling import UnimoForGeneration
from ...tokenizer import CLS_ID, SEP_ID
from ...utils.ops import log_softmax
from ..adversarial import ModelWrapper
from .generation import CaptionTask

EOS_BLOCK = -1e18  # as unimo.generation.search: added to the EOS logit while step < min_out_len
_MAX_KEY_BASE = 55108  # base ** 4 must fit in int64: 55108 ** 4 < 2 ** 63


# ----------------------------------------------------------------------------------------------------------------
# CIDEr-D with a fixed document-frequency corpus
# ----------------------------------------------------------------------------------------------------------------
def _ngram_counts(words: Sequence[str], n: int) -> Counter:
    """pycocoevalcap ``precook``: counts of every 1..n-gram (tuples), in its insertion order."""
    counts: Counter = Counter()
    for k in range(1, n + 1):
        counts.update(zip(*(words[i:] for i in range(k))))
    return counts


class CiderD:
    """CIDEr-D (pycocoevalcap's ``Cider``: clipped tf-idf n-gram cosine, n = 1..4, Gaussian length penalty with
    sigma 6 on the bigram-count difference, mean over n-gram orders and references, x10) whose document frequencies
    come from a fixed reference corpus, computed once.

    ``corpus_refs[i]`` are the *tokenized* references of image i (space-separated tokens). pycocoevalcap computes
    df (and ref_len = log #images) from the references of the images being scored; with the same image set the
    scores are identical. Memory stays small on COCO-sized corpora: n-grams are 64-bit integer keys of word ids
    (df = sorted key array + counts), reference vectors are built on demand (small LRU cache).
    """

    def __init__(self, corpus_refs: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0,
                 progress: bool = False, cache_size: int = 4096):
        if n < 1 or n > 4:
            raise ValueError(f"CIDEr-D n-gram order must be 1..4, got {n}")
        if not corpus_refs:
            raise ValueError("CIDEr-D needs a non-empty reference corpus")
        self.n, self.sigma = n, float(sigma)
        self.refs: list[list[str]] = []
        self.words: dict[str, int] = {}
        per_image_keys = []
        for i, refs in enumerate(tqdm(corpus_refs, desc="cider-d df", disable=not progress)):
            refs = [str(r) for r in refs]
            if not refs:
                raise ValueError(f"CIDEr-D corpus: image {i} has no reference caption")
            self.refs.append(refs)
            keys = [self._ref_keys(r.split()) for r in refs]
            per_image_keys.append(np.unique(np.concatenate(keys)))  # df counts images, not captions
        if len(self.words) + 1 > _MAX_KEY_BASE:
            raise ValueError(f"CIDEr-D corpus has {len(self.words)} distinct words; 64-bit n-gram keys allow at most "
                             f"{_MAX_KEY_BASE - 1}")
        self.df_keys, df_counts = np.unique(np.concatenate(per_image_keys), return_counts=True)
        self.df_counts = df_counts.astype(np.float64)
        self.num_images = len(self.refs)
        self.ref_len = np.log(float(self.num_images))
        self._cache: OrderedDict[int, list] = OrderedDict()
        self._cache_size = cache_size
        self._idf: dict[tuple, float] = {}  # memo: n-gram -> ref_len - log(max(1, df)); captions reuse n-grams a lot

    # -- n-gram keys
    def _ref_keys(self, words: Sequence[str]) -> np.ndarray:
        ids = np.array([self.words.setdefault(w, len(self.words) + 1) for w in words], dtype=np.int64)
        return self._keys_of(ids)

    def _keys_of(self, ids: np.ndarray) -> np.ndarray:
        """Keys of every 1..n-gram of a word-id sequence; ids >= 1, so the base-B digits identify the n-gram."""
        base = _MAX_KEY_BASE
        out = []
        for k in range(1, self.n + 1):
            if len(ids) < k:
                break
            key = ids[:len(ids) - k + 1].copy()
            for j in range(1, k):
                key = key * base + ids[j:len(ids) - k + 1 + j]
            out.append(key)
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def _document_frequency(self, ngrams: Sequence[tuple]) -> np.ndarray:
        """df of each n-gram (0 for n-grams with a word outside the corpus or never seen)."""
        df = np.zeros(len(ngrams), np.float64)
        known = [i for i, g in enumerate(ngrams) if all(w in self.words for w in g)]
        if not known or not len(self.df_keys):
            return df
        keys = np.zeros(len(known), np.int64)
        for j, i in enumerate(known):
            key = 0
            for w in ngrams[i]:
                key = key * _MAX_KEY_BASE + self.words[w]
            keys[j] = key
        pos = np.minimum(np.searchsorted(self.df_keys, keys), len(self.df_keys) - 1)
        hit = self.df_keys[pos] == keys
        df[np.array(known)[hit]] = self.df_counts[pos[hit]]
        return df

    # -- vectors and similarity (pycocoevalcap ``counts2vec`` / ``sim``)
    def _vector(self, text: str) -> tuple[list[dict], list[float], int]:
        counts = _ngram_counts(text.split(), self.n)
        idf = self._idf
        missing = [g for g in counts if g not in idf]
        if missing:
            if len(idf) > 2_000_000:  # bound the memo
                idf.clear()
            for gram, d in zip(missing, self._document_frequency(missing)):
                idf[gram] = self.ref_len - np.log(max(1.0, d))
        vec: list[dict] = [{} for _ in range(self.n)]
        norm = [0.0] * self.n
        length = 0
        for gram, tf in counts.items():
            k = len(gram) - 1
            w = float(tf) * idf[gram]
            vec[k][gram] = w
            norm[k] += w * w
            if k == 1:  # pycocoevalcap counts the length in bigrams
                length += tf
        return vec, [math.sqrt(x) for x in norm], length

    def _similarity(self, hyp: tuple, ref: tuple) -> np.ndarray:
        vec_h, norm_h, len_h = hyp
        vec_r, norm_r, len_r = ref
        delta = float(len_h - len_r)
        val = np.array([0.0] * self.n)
        for k in range(self.n):
            for gram, w in vec_h[k].items():
                r = vec_r[k].get(gram, 0.0)
                val[k] += min(w, r) * r  # clipping (CIDEr-D)
            if norm_h[k] != 0 and norm_r[k] != 0:
                val[k] /= norm_h[k] * norm_r[k]
            val[k] *= np.e ** (-(delta ** 2) / (2 * self.sigma ** 2))
        return val

    def _ref_vectors(self, image: int) -> list:
        hit = self._cache.get(image)
        if hit is None:
            hit = [self._vector(r) for r in self.refs[image]]
            self._cache[image] = hit
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(image)
        return hit

    def _score_vectors(self, hyp: tuple, refs: Sequence[tuple]) -> float:
        score = np.array([0.0] * self.n)
        for ref in refs:
            score += self._similarity(hyp, ref)
        return float(np.mean(score) / len(refs) * 10.0)

    # -- public
    def score(self, hypothesis: str, image: int) -> float:
        """CIDEr-D of a tokenized hypothesis against the references of corpus image ``image``."""
        if not 0 <= int(image) < self.num_images:
            raise IndexError(f"image index {image} outside the CIDEr-D corpus (0..{self.num_images - 1})")
        return self._score_vectors(self._vector(hypothesis), self._ref_vectors(int(image)))

    def score_refs(self, hypothesis: str, refs: Sequence[str]) -> float:
        """CIDEr-D against arbitrary tokenized references, with the corpus document frequencies."""
        if not refs:
            raise ValueError("score_refs needs at least one reference")
        return self._score_vectors(self._vector(hypothesis), [self._vector(r) for r in refs])

    def scores(self, hypotheses: Sequence[str], images: Sequence[int]) -> np.ndarray:
        return np.array([self.score(h, i) for h, i in zip(hypotheses, images)], dtype=np.float64)


# ----------------------------------------------------------------------------------------------------------------
# Policy-gradient pieces
# ----------------------------------------------------------------------------------------------------------------
def _as_numpy(x: Any) -> np.ndarray:
    return x.numpy() if isinstance(x, paddle.Tensor) else np.asarray(x)


def _as_tensor(x: Any, dtype: str) -> paddle.Tensor:
    t = x if isinstance(x, paddle.Tensor) else paddle.to_tensor(np.asarray(x))
    return t.astype(dtype) if str(t.dtype).split(".")[-1] != dtype else t


def sequence_log_probs(model: UnimoForGeneration, image_features: Any, image_locations: Any, image_valid: Any,
                       targets: Sequence[Sequence[int]], min_out_len: int = 0, eos_id: int = SEP_ID,
                       bos_id: int = CLS_ID, bos_position: int = 2) -> paddle.Tensor:
    """sum_t log p(target_t | image, BOS, target_<t) per row [N], teacher-forced in one pass.

    Row i is ``[image i ; BOS target_i[:-1]]`` with the image-to-text mask; the EOS logit gets -1e18 at steps
    < ``min_out_len`` (as the decoders do), so the log-probabilities are those of the sampling distribution."""
    if len(targets) != int(image_features.shape[0]):
        raise ValueError(f"{len(targets)} target sequences for {int(image_features.shape[0])} images")
    if any(len(t) == 0 for t in targets):
        raise ValueError("every target sequence needs at least one token (the EOS of an empty caption)")
    valid = _as_numpy(image_valid).astype(np.float32)
    n, num_regions = valid.shape
    width = max(len(t) for t in targets)
    ids = np.full((n, width), SEP_ID, np.int64)  # filler after the end: masked out, never a target
    txt_valid = np.zeros((n, width), np.float32)
    for i, t in enumerate(targets):
        row = [bos_id] + list(t[:-1])
        ids[i, :len(row)] = row
        txt_valid[i, :len(row)] = 1.0
    mask = np.stack([masks.image_to_text(valid[i], [], txt_valid[i]) for i in range(n)])
    pos = np.broadcast_to(np.arange(bos_position, bos_position + width, dtype=np.int64), (n, width))
    seq = model.unimo(input_ids=paddle.to_tensor(ids), position_ids=paddle.to_tensor(np.ascontiguousarray(pos)),
                      image_features=_as_tensor(image_features, "float32"),
                      image_locations=_as_tensor(image_locations, "float32"),
                      attention_mask=paddle.to_tensor(mask))
    rows, steps, labels = [], [], []
    total = num_regions + width
    for i, t in enumerate(targets):
        for j, tok in enumerate(t):
            rows.append(i * total + num_regions + j)
            steps.append(j)
            labels.append(int(tok))
    hidden = paddle.gather(seq.reshape([-1, seq.shape[-1]]), paddle.to_tensor(np.array(rows, np.int64)), axis=0)
    logits = model.lm_head(hidden).astype("float32")
    blocked = np.array(steps) < min_out_len
    if blocked.any():
        bias = np.zeros((1, logits.shape[-1]), np.float32)
        bias[0, eos_id] = EOS_BLOCK
        logits = logits + paddle.to_tensor(blocked.astype(np.float32)[:, None]) * paddle.to_tensor(bias)
    logp = paddle.take_along_axis(log_softmax(logits, axis=-1),
                                  paddle.to_tensor(np.array(labels, np.int64)[:, None]), axis=1)[:, 0]
    owner = paddle.to_tensor(np.repeat(np.arange(n), [len(t) for t in targets]).astype(np.int64))
    return paddle.geometric.segment_sum(logp, owner)  # owners are sorted: one segment per row


def policy_loss(log_probs: paddle.Tensor, rewards: Any, baselines: Any) -> paddle.Tensor:
    """-mean((r - b) * log p(sample)): REINFORCE with a baseline (the advantages are constants)."""
    adv = paddle.to_tensor((np.asarray(rewards, np.float64) - np.asarray(baselines, np.float64)).astype(np.float32))
    return -(adv * log_probs).mean()


class ScstModel(ModelWrapper):
    """SCST training model around :class:`UnimoForGeneration`; checkpoints, ``state_dict`` and decoding are the
    inner model's (see :class:`ModelWrapper`).

    ``forward(image_features, image_locations, image_valid, image_index)`` -> ``(loss, parts)`` with parts
    ``reward`` (mean sample CIDEr-D), ``baseline`` (mean baseline reward), ``sample_len`` (mean tokens).
    ``image_index`` indexes the images of ``cider``'s corpus (the training references). ``last_rollout`` keeps the
    samples, rewards and baselines of the last call.
    """

    def __init__(self, model: UnimoForGeneration, tokenizer: Any, cider: CiderD, num_samples: int = 5,
                 max_out_len: int = 50, min_out_len: int = 5, top_k: int = 0, temperature: float = 1.0,
                 baseline: str = "greedy", seed: Optional[int] = None, dropout: bool = False,
                 eos_id: int = SEP_ID):
        super().__init__(model)
        if not isinstance(model, UnimoForGeneration):
            raise TypeError(f"SCST trains a UnimoForGeneration, got {type(model).__name__}")
        if baseline not in ("greedy", "mean"):
            raise ValueError(f"scst_baseline must be 'greedy' or 'mean', got {baseline!r}")
        if not isinstance(num_samples, int) or num_samples < 1 or (baseline == "mean" and num_samples < 2):
            raise ValueError("scst_samples must be an integer >= 1 (>= 2 with the 'mean' baseline), "
                             f"got {num_samples!r}")
        self.tokenizer, self.cider = tokenizer, cider
        self.num_samples, self.baseline, self.dropout = num_samples, baseline, bool(dropout)
        self.decode = DecodeConfig(max_out_len=max_out_len, min_out_len=min_out_len, eos_id=eos_id)
        self.sampling = SamplingConfig(max_out_len=max_out_len, min_out_len=min_out_len, eos_id=eos_id, top_k=top_k,
                                       temperature=temperature)
        self._rng = np.random.default_rng(seed)
        self.last_rollout: dict[str, Any] = {}

    def rewards(self, hypotheses: Sequence[Sequence[int]], images: Sequence[int]) -> np.ndarray:
        texts = [python_ptb_tokenize(ids_to_text(ids, self.tokenizer, strip=True)) for ids in hypotheses]
        return self.cider.scores(texts, images)

    def forward(self, image_features: Any, image_locations: Any, image_valid: Any, image_index: Any, **_: Any):
        valid = _as_numpy(image_valid).astype(np.float32)
        index = _as_numpy(image_index).reshape(-1).astype(np.int64)
        feats, locs = _as_tensor(image_features, "float32"), _as_tensor(image_locations, "float32")
        b, n = valid.shape[0], self.num_samples
        rep = np.repeat(np.arange(b), n)
        rep_t = paddle.to_tensor(rep)
        feats_rep, locs_rep, valid_rep = paddle.gather(feats, rep_t), paddle.gather(locs, rep_t), valid[rep]
        source = {"image_features": feats_rep, "image_locations": locs_rep,
                  "attention_mask": valid_rep[:, :, None] * valid_rep[:, None, :]}
        seed = int(self._rng.integers(2 ** 31))
        samples = [ids for ids, _ in sample(self.model, source, valid_rep, self.sampling.updated(seed=seed))]
        rewards = self.rewards(samples, index[rep])
        if self.baseline == "greedy":
            greedy_src = {"image_features": feats, "image_locations": locs,
                          "attention_mask": valid[:, :, None] * valid[:, None, :]}
            greedy = [ids for ids, _ in greedy_search(self.model, greedy_src, valid, self.decode)]
            greedy_r = self.rewards(greedy, index)
            baselines = greedy_r[rep]
        else:  # mean reward of the other samples of the same image
            grouped = rewards.reshape(b, n)
            baselines = ((grouped.sum(axis=1, keepdims=True) - grouped) / (n - 1)).reshape(-1)
        max_len = self.sampling.max_out_len
        # a sample shorter than max_out_len stopped on the EOS, which is then part of the sequence
        targets = [list(s) + [self.sampling.eos_id] if len(s) < max_len else list(s) for s in samples]
        was_training = self.model.training
        if not self.dropout:
            self.model.eval()  # dropout off; gradients still flow
        try:
            logp = sequence_log_probs(self.model, feats_rep, locs_rep, valid_rep, targets, self.sampling.min_out_len,
                                      self.sampling.eos_id)
        finally:
            if was_training:
                self.model.train()
        loss = policy_loss(logp, rewards, baselines)
        self.last_rollout = {"samples": samples, "rewards": rewards, "baselines": baselines, "image_index": index[rep],
                             "log_probs": logp.detach()}
        parts = {"reward": float(rewards.mean()), "baseline": float(np.mean(baselines)),
                 "sample_len": float(np.mean([len(t) for t in targets]))}
        return loss, parts


# ----------------------------------------------------------------------------------------------------------------
# The task
# ----------------------------------------------------------------------------------------------------------------
class ScstCaptionTask(CaptionTask):
    """``task: img2txt_scst``: COCO captioning fine-tuned with SCST on CIDEr-D (training examples are images;
    evaluation is :class:`CaptionTask`'s beam search + COCO metrics)."""

    name = "img2txt_scst"
    defaults = {**CaptionTask.defaults, "scst_samples": 5, "scst_top_k": 0, "scst_temperature": 1.0,
                "scst_baseline": "greedy", "scst_max_out_len": None, "scst_min_out_len": None,
                "scst_dropout": False}

    def __init__(self, cfg, tokenizer, output_dir):
        super().__init__(cfg, tokenizer, output_dir)
        if int(cfg.get("adv_steps") or 0) > 0:
            raise ValueError(f"img2txt_scst does not combine with VILLA (adv_steps={cfg.get('adv_steps')}): "
                             "set adv_steps: 0")
        self._train_images: Optional[list[dict[str, Any]]] = None

    def train_images(self) -> list[dict[str, Any]]:
        """Training images in first-appearance order, each with its PTB-tokenized references; built once."""
        if self._train_images is None:
            groups: dict[str, list[str]] = {}
            for e in super().load("train"):
                groups.setdefault(e["image_id"], []).append(e["caption"])
            disable = bool(self.cfg.get("disable_tqdm", False))
            self._train_images = [
                {"image_id": image_id, "image_index": i,
                 "refs": [python_ptb_tokenize(c) for c in caps]}
                for i, (image_id, caps) in enumerate(tqdm(groups.items(), desc="scst refs", disable=disable))]
        return self._train_images

    def load(self, split: str) -> list[dict[str, Any]]:
        if split == "train":
            return [{"image_id": g["image_id"], "image_index": g["image_index"]} for g in self.train_images()]
        return super().load(split)

    def collate(self, examples):
        img = self.images.batch([e["image_id"] for e in examples])
        return {"image_features": img["image_features"], "image_locations": img["image_locations"],
                "image_valid": img["image_valid"],
                "image_index": np.array([e["image_index"] for e in examples], np.int64)}

    def build_model(self, config):
        model = self.load_or_init(UnimoForGeneration, config)
        if not self.cfg.get("do_train", True):
            return model
        cider = CiderD([g["refs"] for g in self.train_images()],
                       progress=not bool(self.cfg.get("disable_tqdm", False)))
        cfg = self.cfg

        def pick(key: str, fallback: str) -> Any:
            return cfg[key] if cfg.get(key) is not None else cfg[fallback]

        return ScstModel(model, self.tokenizer, cider, num_samples=int(cfg["scst_samples"]),
                         max_out_len=int(pick("scst_max_out_len", "max_out_len")),
                         min_out_len=int(pick("scst_min_out_len", "min_out_len")), top_k=int(cfg["scst_top_k"]),
                         temperature=float(cfg["scst_temperature"]), baseline=str(cfg["scst_baseline"]),
                         seed=int(cfg.get("seed", 1)) + _rank(), dropout=bool(cfg["scst_dropout"]))


def _rank() -> int:
    """Different sampling streams per data-parallel process."""
    try:
        return int(paddle.distributed.get_rank())
    except Exception:  # noqa: BLE001 - not initialised: single process
        return 0


__all__ = ["CiderD", "ScstCaptionTask", "ScstModel", "policy_loss", "sequence_log_probs"]