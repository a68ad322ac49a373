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

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import paddle
from tqdm import tqdm

from ... import masks
from ...eval.cider import CiderD
from ...eval.coco import python_ptb_tokenize
from ...generation import DecodeConfig, SamplingConfig, greedy_search, ids_to_text, sample
from ...model.modeling import UnimoForGeneration
from ...tokenizer import CLS_ID, SEP_ID
from ...utils.ops import log_softmax
from ...training.adversarial import ModelWrapper
from .generation import CaptionConfig, CaptionTask

EOS_BLOCK = -1e18  # as unimo.generation.search: added to the EOS logit while step < min_out_len


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
    rows, steps, labels = [], [], []
    total = num_regions + width
    for i, t in enumerate(targets):
        for j, tok in enumerate(t):
            rows.append(i * total + num_regions + j)
            steps.append(j)
            labels.append(int(tok))
    # the model's own forward: LM logits at the target positions (no labels: the loss here is the policy's)
    logits = model(input_ids=paddle.to_tensor(ids), position_ids=paddle.to_tensor(np.ascontiguousarray(pos)),
                   image_features=_as_tensor(image_features, "float32"),
                   image_locations=_as_tensor(image_locations, "float32"), attention_mask=paddle.to_tensor(mask),
                   label_positions=paddle.to_tensor(np.array(rows, np.int64))).logits.astype("float32")
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
                  "attention_mask": masks.bidirectional_batch(valid_rep)}
        seed = int(self._rng.integers(2 ** 31))
        samples = [ids for ids, _ in sample(self.model, source, valid_rep, self.sampling.updated(seed=seed))]
        rewards = self.rewards(samples, index[rep])
        if self.baseline == "greedy":
            greedy_src = {"image_features": feats, "image_locations": locs,
                          "attention_mask": masks.bidirectional_batch(valid)}
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
@dataclass
class ScstConfig(CaptionConfig):
    scst_samples: int = 5
    scst_top_k: int = 0  # 0: multinomial over the whole vocabulary
    scst_temperature: float = 1.0
    scst_baseline: str = "greedy"  # greedy | mean
    scst_max_out_len: Optional[int] = None  # None: max_out_len
    scst_min_out_len: Optional[int] = None  # None: min_out_len
    scst_dropout: bool = False

    def validate(self) -> None:
        super().validate()
        self.require(self.adv_steps == 0, "adv_steps", "img2txt_scst does not combine with VILLA: must be 0")
        # the sampled captions and their log-probability pass read [regions ; caption] only (tags not wired yet)
        self.require(not self.object_tags, "object_tags", "img2txt_scst does not read object tags yet: must be false")
        self.require(self.scst_samples >= 1, "scst_samples", "must be >= 1")
        self.require(self.scst_top_k >= 0, "scst_top_k", "must be >= 0")
        self.require(self.scst_temperature > 0, "scst_temperature", "must be > 0")
        self.require(self.scst_baseline in ("greedy", "mean"), "scst_baseline", "must be greedy or mean")


class ScstCaptionTask(CaptionTask):
    """``task: img2txt_scst``: COCO captioning fine-tuned with SCST on CIDEr-D (training examples are images;
    evaluation is :class:`CaptionTask`'s beam search + COCO metrics)."""

    name = "img2txt_scst"
    config_class = ScstConfig

    def __init__(self, cfg, tokenizer, output_dir):
        super().__init__(cfg, tokenizer, output_dir)
        self._train_images: Optional[list[dict[str, Any]]] = None

    def train_images(self) -> list[dict[str, Any]]:
        """Training images in first-appearance order, each with its PTB-tokenized references; built once."""
        if self._train_images is None:
            groups: dict[str, list[str]] = {}
            for e in super().load("train"):
                groups.setdefault(e["image_id"], []).append(e["caption"])
            disable = self.cfg.disable_tqdm
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
        cfg = self.cfg
        model = self.load_or_init(UnimoForGeneration, config, label_smoothing=cfg.label_smoothing)
        if not cfg.do_train:
            return model
        cider = CiderD([g["refs"] for g in self.train_images()], progress=not cfg.disable_tqdm)
        # scst_max_out_len / scst_min_out_len None: the evaluation decoding's lengths
        max_out = cfg.max_out_len if cfg.scst_max_out_len is None else cfg.scst_max_out_len
        min_out = cfg.min_out_len if cfg.scst_min_out_len is None else cfg.scst_min_out_len
        return ScstModel(model, self.tokenizer, cider, num_samples=cfg.scst_samples, max_out_len=max_out,
                         min_out_len=min_out, top_k=cfg.scst_top_k, temperature=cfg.scst_temperature,
                         baseline=cfg.scst_baseline, seed=cfg.seed + _rank(), dropout=cfg.scst_dropout)


def _rank() -> int:
    """Different sampling streams per data-parallel process."""
    try:
        return int(paddle.distributed.get_rank())
    except Exception:  # noqa: BLE001 - not initialised: single process
        return 0


__all__ = ["CiderD", "ScstCaptionTask", "ScstModel", "policy_loss", "sequence_log_probs"]