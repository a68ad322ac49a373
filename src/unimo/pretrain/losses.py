"""Pre-training losses of UNIMO (paper section 3) in Paddle dygraph.

* :func:`label_smoothed_cross_entropy` / :func:`masked_lm_loss` - token prediction (bidirectional and seq2seq).
* :func:`region_feature_regression_loss`, :func:`region_classification_loss` - masked region modelling.
* :func:`cmcl_loss` (+ :func:`cmcl_masks`) - cross-modal contrastive learning, equation 1, with any set of positives
  and candidates per image.

All losses compute in float32 (inputs of another float dtype are cast) and return a 0-d tensor for
``reduction="mean"``/``"sum"``. An empty selection (no labelled token, no masked region) gives a zero that is still
connected to the graph, so a training step never has to special-case it.
"""
from __future__ import annotations

from typing import Optional, Union

import numpy as np
import paddle
import paddle.nn.functional as F
from ..utils.ops import log_softmax, smoothed_cross_entropy

IGNORE_INDEX = -100
_NEG = -1e9  # logit for non-candidates: exp() underflows to exactly 0 and, unlike -inf, never yields NaN

__all__ = ["label_smoothed_cross_entropy", "masked_lm_loss", "region_feature_regression_loss",
           "region_classification_loss", "cosine_similarity_matrix", "cmcl_loss", "cmcl_masks"]


def _reduce(per_item: paddle.Tensor, weight: Optional[paddle.Tensor], reduction: str) -> paddle.Tensor:
    """mean over the items with weight 1 (zero when there is none), sum, or the per-item vector."""
    if weight is not None:
        per_item = per_item * weight
    if reduction == "none":
        return per_item
    total = per_item.sum()
    if reduction == "sum":
        return total
    if reduction == "mean":
        count = weight.sum() if weight is not None else paddle.to_tensor(float(per_item.shape[0]), "float32")
        return total / paddle.clip(count, min=1.0)
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _float32(x: paddle.Tensor) -> paddle.Tensor:
    return x if x.dtype == paddle.float32 else x.astype("float32")


def label_smoothed_cross_entropy(logits: paddle.Tensor, labels: paddle.Tensor, epsilon: float = 0.0,
                                 ignore_index: int = IGNORE_INDEX, reduction: str = "mean",
                                 check_labels: bool = True) -> paddle.Tensor:
    """Cross-entropy of ``logits`` [..., V] against integer ``labels`` [...] with label smoothing.

    Soft target as the official seq2seq fine-tuning (``fluid.layers.label_smooth``): ``(1 - eps) onehot + eps / V``
    over the full vocabulary, so ``loss = -(1 - eps) log p_y - eps/V sum_v log p_v`` (computed without building
    the one-hot matrix). Positions labelled ``ignore_index`` do not count; ``"mean"`` averages over the others.
    ``check_labels`` raises on labels outside [0, V) (costs one device sync).
    """
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"label smoothing epsilon must be in [0, 1), got {epsilon}")
    if list(logits.shape[:-1]) != list(labels.shape):
        raise ValueError(f"logits shape {list(logits.shape)} does not match labels shape {list(labels.shape)}")
    vocab = int(logits.shape[-1])
    flat = _float32(logits).reshape([-1, vocab])
    labels = labels.reshape([-1]).astype("int64")
    valid = labels != ignore_index
    if check_labels and labels.shape[0] > 0:
        bad = paddle.logical_and(valid, paddle.logical_or(labels < 0, labels >= vocab))
        if bool(bad.any()):
            pos = int(paddle.nonzero(bad)[0, 0])
            raise ValueError(f"labels[{pos}] = {int(labels[pos])} is outside the vocabulary [0, {vocab})")
    safe = paddle.where(valid, labels, paddle.zeros_like(labels))
    loss = smoothed_cross_entropy(flat, safe, epsilon)  # fused: the [N, V] logits are traversed a few times only
    return _reduce(loss, valid.astype("float32"), reduction)


def masked_lm_loss(logits: paddle.Tensor, labels: paddle.Tensor, label_smoothing: float = 0.0,
                   ignore_index: int = IGNORE_INDEX, reduction: str = "mean") -> paddle.Tensor:
    """Token prediction loss for the bidirectional and seq2seq objectives: mean CE over the labelled positions.

    ``logits`` [N, V] (or [..., V]) and ``labels`` [N] with ``ignore_index`` (-100, as produced by
    :func:`unimo.pretrain.masking.span_mask` and ``seq2seq_layout``) where nothing is predicted.
    """
    return label_smoothed_cross_entropy(logits, labels, label_smoothing, ignore_index, reduction)


def region_feature_regression_loss(pred: paddle.Tensor, target: paddle.Tensor,
                                   reduction: str = "mean") -> paddle.Tensor:
    """Masked region feature regression: ``||pred_i - target_i||^2`` summed over the feature dimension, averaged
    over the M masked regions (the paper's sum over regions, normalised per region). ``target`` gets no gradient."""
    if pred.ndim != 2 or list(pred.shape) != list(target.shape):
        raise ValueError(f"pred {list(pred.shape)} and target {list(target.shape)} must both be [M, D]")
    diff = _float32(pred) - _float32(target).detach()
    return _reduce((diff * diff).sum(axis=-1), None, reduction)


def region_classification_loss(logits: paddle.Tensor, target_prob: paddle.Tensor, soft: bool = False,
                               reduction: str = "mean") -> paddle.Tensor:
    """Masked region classification against the detector's class distribution ``target_prob`` [M, C].

    ``soft=False``: CE against the detector's argmax class. ``soft=True`` (``image_use_soft_label``): KL(target ||
    softmax(logits)); the target rows are renormalised to sum 1 (so a distribution with the background column
    removed is fine) and must have a positive sum.
    """
    if logits.ndim != 2 or list(logits.shape) != list(target_prob.shape):
        raise ValueError(f"logits {list(logits.shape)} and target_prob {list(target_prob.shape)} must both be [M, C]")
    logp = log_softmax(_float32(logits), axis=-1)
    target = _float32(target_prob).detach()
    if not soft:
        hard = paddle.argmax(target, axis=-1, keepdim=True)
        return _reduce(-paddle.take_along_axis(logp, hard, axis=-1).squeeze(-1), None, reduction)
    if target.shape[0] > 0:
        if bool((target < 0).any()):
            raise ValueError("target_prob has negative entries")
        row_sum = target.sum(axis=-1, keepdim=True)
        if bool((row_sum <= 0).any()):
            raise ValueError(f"target_prob row {int(paddle.nonzero(row_sum[:, 0] <= 0)[0, 0])} sums to 0")
        target = target / row_sum
    # 0 * log 0 = 0: entries with zero probability contribute nothing (and no NaN gradient).
    log_t = paddle.log(paddle.where(target > 0, target, paddle.ones_like(target)))
    kl = (target * (log_t - logp)).sum(axis=-1)
    return _reduce(kl, None, reduction)


def cosine_similarity_matrix(a: paddle.Tensor, b: paddle.Tensor, eps: float = 1e-12) -> paddle.Tensor:
    """[B, K] cosine similarities between the rows of ``a`` [B, E] and ``b`` [K, E]."""
    return paddle.matmul(F.normalize(_float32(a), axis=-1, epsilon=eps), F.normalize(_float32(b), axis=-1, epsilon=eps),
                         transpose_y=True)


def _multi_positive_nce(scores: paddle.Tensor, positive: paddle.Tensor, candidate: paddle.Tensor
                        ) -> tuple[paddle.Tensor, paddle.Tensor]:
    """Per row: mean over its positives p of ``logsumexp_{candidates} s - s_p``; also the 0/1 'row has a positive'."""
    positive_f = positive.astype("float32")
    masked = paddle.where(candidate, scores, paddle.full_like(scores, _NEG))
    log_z = paddle.logsumexp(masked, axis=-1, keepdim=True)
    n_pos = positive_f.sum(axis=-1)
    per_row = ((log_z - scores) * positive_f).sum(axis=-1) / paddle.clip(n_pos, min=1.0)
    return per_row, (n_pos > 0).astype("float32")


def cmcl_loss(image_emb: paddle.Tensor, text_emb: paddle.Tensor, positive_mask: Union[paddle.Tensor, np.ndarray],
              candidate_mask: Union[paddle.Tensor, np.ndarray, None], temperature: Union[float, paddle.Tensor],
              symmetric: bool = False, reduction: str = "mean") -> paddle.Tensor:
    """Cross-modal contrastive loss (paper equation 1) for B images against a list of K texts.

    ``s[i, k] = cos(image_emb[i], text_emb[k]) / temperature``. For image i, the positives are
    ``positive_mask[i]`` (its caption and paraphrases) and the candidates ``candidate_mask[i]`` (default: all K
    texts, i.e. in-batch negatives = the other images' texts plus every rewritten hard negative in the list;
    positives always count as candidates). Multi-positive InfoNCE: one term per positive, averaged,

        loss_i = mean_{p in P_i} [ -log( exp(s_ip) / sum_{c in C_i} exp(s_ic) ) ],

    so with a single positive this is exactly equation 1 (whose numerator holds one W+), and several positives do
    not inflate the loss. Images without a positive are left out; ``"mean"`` averages over the others.

    ``symmetric=True`` adds the text->image direction (not in the paper): for every text with a positive image,
    the same loss over images j with ``candidate_mask[j, k]``; the result is the average of the two directions
    (``reduction="none"`` then returns the concatenated [B + K] per-item losses).
    ``temperature`` may be a float or a (learnable) tensor.
    """
    if image_emb.ndim != 2 or text_emb.ndim != 2 or image_emb.shape[1] != text_emb.shape[1]:
        raise ValueError(f"image_emb {list(image_emb.shape)} and text_emb {list(text_emb.shape)} must be [B, E] "
                         "and [K, E] with the same E")
    b, k = int(image_emb.shape[0]), int(text_emb.shape[0])

    def as_bool(m, name: str) -> paddle.Tensor:
        t = paddle.to_tensor(m) if isinstance(m, np.ndarray) else m
        if list(t.shape) != [b, k]:
            raise ValueError(f"{name} must have shape [{b}, {k}], got {list(t.shape)}")
        return t.astype("bool")

    positive = as_bool(positive_mask, "positive_mask")
    candidate = paddle.ones([b, k], dtype="bool") if candidate_mask is None else as_bool(candidate_mask, "candidate_mask")
    candidate = paddle.logical_or(candidate, positive)
    if isinstance(temperature, (int, float)) and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scores = cosine_similarity_matrix(image_emb, text_emb) / temperature

    per_image, has_pos = _multi_positive_nce(scores, positive, candidate)
    if not bool(has_pos.any()):
        raise ValueError("cmcl_loss: no image has a positive text (check positive_mask)")
    if not symmetric:
        return _reduce(per_image, has_pos, reduction)
    per_text, text_has_pos = _multi_positive_nce(scores.T, positive.T, candidate.T)
    if reduction == "none":
        return paddle.concat([per_image * has_pos, per_text * text_has_pos])
    return 0.5 * (_reduce(per_image, has_pos, reduction) + _reduce(per_text, text_has_pos, reduction))


def cmcl_masks(owner: np.ndarray, is_positive: np.ndarray, num_images: int,
               share_hard_negatives: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Positive and candidate masks [B, K] for :func:`cmcl_loss` from a flat text list.

    ``owner[k]`` is the image a text was made for (its caption, a back-translation, or a rewritten hard negative)
    and ``is_positive[k]`` whether it describes that image. Positives of image i: its own positive texts.
    Candidates of image i: every text when ``share_hard_negatives`` (other images' rewrites are negatives too),
    otherwise every positive text in the batch (in-batch negatives) plus i's own hard negatives.
    """
    owner = np.asarray(owner)
    is_positive = np.asarray(is_positive, dtype=bool)
    if owner.ndim != 1 or owner.shape != is_positive.shape:
        raise ValueError(f"owner {owner.shape} and is_positive {is_positive.shape} must be 1-D of the same length")
    if owner.size and (owner.min() < 0 or owner.max() >= num_images):
        bad = int(np.flatnonzero((owner < 0) | (owner >= num_images))[0])
        raise ValueError(f"owner[{bad}] = {owner[bad]} is not an image index in [0, {num_images})")
    mine = owner[None, :] == np.arange(num_images)[:, None]
    positive = mine & is_positive[None, :]
    if share_hard_negatives:
        candidate = np.ones_like(positive)
    else:
        candidate = is_positive[None, :] | mine
    return positive, candidate


class _AllGatherRows(paddle.autograd.PyLayer):
    """Rows of every rank concatenated in rank order; backward sums the incoming gradient over the ranks (every
    rank's loss read every rank's rows) and returns this rank's slice, so the gathered rows train the encoder of
    the rank that made them."""

    @staticmethod
    def forward(ctx, x: paddle.Tensor) -> paddle.Tensor:
        import paddle.distributed as dist

        parts: list[paddle.Tensor] = []
        dist.all_gather(parts, x)
        ctx.rows, ctx.rank = int(x.shape[0]), dist.get_rank()
        return paddle.concat(parts, axis=0)

    @staticmethod
    def backward(ctx, grad: paddle.Tensor) -> paddle.Tensor:
        import paddle.distributed as dist

        grad = grad.clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def world_size() -> int:
    import paddle.distributed as dist

    return dist.get_world_size() if dist.is_initialized() else 1


def gather_texts(text_emb: paddle.Tensor, positive: paddle.Tensor, candidate: paddle.Tensor,
                 share_hard_negatives: bool = False) -> tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor]:
    """Dual CMCL under several processes: the text embeddings [K_r, E] of every rank r, so in-batch negatives span
    the global batch, with the local rows keeping their gradient (:class:`_AllGatherRows`).

    Returns (texts [W x Kmax, E], positive [B, W x Kmax], candidate [B, W x Kmax]); each rank's block is padded
    to the largest K (padding rows are never candidates). This rank's block keeps its masks; another rank's text is
    a candidate of every local image when it describes an image of its own rank (a caption or paraphrase: an
    in-batch negative, as the collator's rule within one rank) or, with ``share_hard_negatives``, always; positives
    stay rank-local (an image sampled on two ranks in one step sees its copy's texts as negatives). With the
    per-rank mean over local images and DataParallel's gradient average this equals one process on the
    concatenated batch (tests/test_pretrain_distributed.py)."""
    import paddle.distributed as dist

    world = world_size()
    if world < 2:
        return text_emb, positive, candidate
    rank = dist.get_rank()
    k = int(text_emb.shape[0])
    sizes: list[paddle.Tensor] = []
    dist.all_gather(sizes, paddle.to_tensor([k], dtype="int64"))
    counts = [int(s.item()) for s in sizes]
    kmax = max(counts)
    pad = kmax - k
    if pad:
        text_emb = paddle.concat([text_emb, paddle.zeros([pad, text_emb.shape[1]], dtype=text_emb.dtype)], axis=0)
    positive = positive.astype("bool")
    candidate = candidate.astype("bool")
    describes = positive.any(axis=0).astype("int32")
    valid = paddle.ones([k], dtype="int32")
    if pad:
        describes = paddle.concat([describes, paddle.zeros([pad], dtype="int32")])
        valid = paddle.concat([valid, paddle.zeros([pad], dtype="int32")])
    flags: list[paddle.Tensor] = []
    dist.all_gather(flags, paddle.stack([describes, valid]))
    texts = _AllGatherRows.apply(text_emb)
    b = int(positive.shape[0])
    pos_blocks, cand_blocks = [], []
    for r in range(world):
        if r == rank:
            blk_pos, blk_cand = positive, candidate
            if pad:
                blk_pos = paddle.concat([blk_pos, paddle.zeros([b, pad], dtype="bool")], axis=1)
                blk_cand = paddle.concat([blk_cand, paddle.zeros([b, pad], dtype="bool")], axis=1)
        else:
            remote = flags[r][1] if share_hard_negatives else flags[r][0] * flags[r][1]
            blk_pos = paddle.zeros([b, kmax], dtype="bool")
            blk_cand = paddle.expand(remote.astype("bool").unsqueeze(0), [b, kmax])
        pos_blocks.append(blk_pos)
        cand_blocks.append(blk_cand)
    return texts, paddle.concat(pos_blocks, axis=1), paddle.concat(cand_blocks, axis=1)
