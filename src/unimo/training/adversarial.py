"""VILLA adversarial fine-tuning (Gan et al. 2020), as the official UNIMO runners train COCO captioning and SNLI-VE.

Official recipe (``src/finetune/img2txt.py`` ``create_model_villa`` and ``src/finetune/visual_entailment.py``), per
batch, with K = ``adv_steps``:

* two perturbations, initialised once per batch: ``t`` on the summed word + position embeddings of the text (before
  the LayerNorm; :meth:`UnimoModel.embed_text_raw`) and ``v`` on the raw 2048-d region features. Init: uniform(-1, 1),
  zeroed at padding, scaled by ``init_mag / sqrt(#valid positions x dim)`` per example (all zero if init_mag = 0);
* for k = 1..K: three forward passes, pure / text-perturbed / image-perturbed, each with its own dropout draw;
  ``cur = pure/K + text/K + image/K + kl_weight * (SKL(pure, text) + SKL(pure, image))`` (the KL terms are *not*
  divided by K); without the pure model (captioning option) ``cur = text/K + image/K``;
* after the forward passes of step k, each delta climbs its own loss: ``d += adv_lr * g / max(||g||_2, 1e-8)``
  (per-example norm over all its positions), then, if ``adv_max_norm > 0``, ``d`` is rescaled to norm
  ``adv_max_norm`` when larger;
* the loss is the sum of ``cur`` over the K steps; one backward of it (in the Trainer) gives the parameter gradients.
  The deltas are constants for the parameters, as in the static graph (``delta_grad.stop_gradient = True``).

SKL(q, p) = mean over rows of KL(q||p) + KL(p||q) of the softmax distributions (SMART's symmetric KL); for the
multi-label VQA head (not in the official release) the same with one Bernoulli per answer, summed over answers.

One deliberate difference: the official projection compares the *gradient* norm with ``adv_max_norm`` and rescales
the delta by ``adv_max_norm / ||g||`` (a slip: FreeLB/VILLA project with the delta's own norm). We project with the
delta's norm, so ``||d|| <= adv_max_norm`` really holds; ``official_projection=True`` reproduces the official rule.

The wrapper is what the Trainer trains; everything else sees the wrapped model: ``state_dict``/``set_state_dict``,
``save_pretrained`` and attribute access (``.unimo``, ``.lm_head``, ``.config``) are delegated, and in eval mode
``forward`` is the wrapped model's own. Checkpoints therefore load into the plain model class.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..model.modeling import (UnimoForGeneration, UnimoForVisualEntailment, UnimoForVQA, UnimoPretrainedModel,
                              label_smoothed_cross_entropy)
from ..tokenizer import PAD_ID
from ..utils.ops import log_softmax

_LABEL_KEYS = ("labels", "label_positions", "label_smoothing")
_TEXT_ONLY_TASKS = ("classification", "regression", "seq2seq", "dialog")


# ----------------------------------------------------------------------------------------------------------------
# A training-time wrapper whose checkpoints are the inner model's
# ----------------------------------------------------------------------------------------------------------------
class ModelWrapper(nn.Layer):
    """Wraps a :class:`UnimoPretrainedModel` for training only: parameters are the inner model's (same objects, so
    the optimizer state is the same), ``state_dict``/``set_state_dict`` have the inner model's keys, and
    ``save_pretrained`` writes the inner model. Unknown attributes are looked up on the inner model, so decoding
    (``.unimo``, ``.lm_head``) and task evaluation work on the wrapper too."""

    def __init__(self, model: UnimoPretrainedModel):
        super().__init__()
        if not isinstance(model, UnimoPretrainedModel):
            raise TypeError(f"{type(self).__name__} wraps a UnimoPretrainedModel, got {type(model).__name__}")
        self.model = model

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self.__dict__.get("_sub_layers", {}).get("model")
            if inner is None:
                raise
            return getattr(inner, name)

    # checkpoints: exactly the inner model's keys (the Trainer saves ``model.state_dict()`` for non-PaddleNLP models)
    def state_dict(self, *args: Any, **kwargs: Any):
        return self.model.state_dict(*args, **kwargs)

    def set_state_dict(self, *args: Any, **kwargs: Any):
        return self.model.set_state_dict(*args, **kwargs)

    set_dict = set_state_dict
    load_dict = set_state_dict

    def save_pretrained(self, directory: str) -> None:
        self.model.save_pretrained(directory)

    @classmethod
    def from_pretrained(cls, directory: str, **kwargs: Any) -> UnimoPretrainedModel:
        """The *plain* model saved in ``directory`` (its ``model_config.json`` names the architecture), so code that
        reloads the best checkpoint with ``type(model).from_pretrained`` gets an evaluable model back."""
        return load_saved_model(directory, **kwargs)


def load_saved_model(directory: str, **kwargs: Any) -> UnimoPretrainedModel:
    """Rebuild the model class named in ``directory/model_config.json`` and load its weights."""
    from ..model import modeling
    from ..model.configuration import UnimoConfig

    config = UnimoConfig.from_pretrained(directory)
    arch = config.extra.get("architecture")
    cls = getattr(modeling, str(arch), None)
    if not (isinstance(cls, type) and issubclass(cls, UnimoPretrainedModel)):
        raise ValueError(f"{directory}: model_config.json names no known model architecture ({arch!r})")
    return cls.from_pretrained(directory, config=config, **kwargs)


def unwrap_model(model: nn.Layer) -> nn.Layer:
    """Strip ``paddle.DataParallel`` and training wrappers: the model to evaluate and to save."""
    while True:
        if isinstance(model, paddle.DataParallel):
            model = model._layers
        elif isinstance(model, ModelWrapper):
            model = model.model
        else:
            return model


# ----------------------------------------------------------------------------------------------------------------
# Pieces of the recipe (public so that tests and other trainers can use them)
# ----------------------------------------------------------------------------------------------------------------
def symmetric_kl(q_logits: paddle.Tensor, p_logits: paddle.Tensor) -> paddle.Tensor:
    """Mean over rows of KL(q||p) + KL(p||q) for softmax distributions over the last axis.

    Written as sum((q - p) * (log q - log p)) from log-softmaxes: equal to the official
    ``q*(log q - log p) + p*(log p - log q)`` but without log(0) for underflowing probabilities."""
    lq = log_softmax(q_logits.astype("float32"), axis=-1)
    lp = log_softmax(p_logits.astype("float32"), axis=-1)
    return ((paddle.exp(lq) - paddle.exp(lp)) * (lq - lp)).sum(axis=-1).mean()


def symmetric_bernoulli_kl(q_logits: paddle.Tensor, p_logits: paddle.Tensor) -> paddle.Tensor:
    """Symmetric KL of independent Bernoullis (sigmoid outputs), summed over the last axis, mean over rows: the
    multi-label counterpart of :func:`symmetric_kl` (same scale as the VQA BCE, which sums over answers)."""
    q, p = q_logits.astype("float32"), p_logits.astype("float32")
    # KL(q||p) + KL(p||q) = (sig(q) - sig(p)) * (logit q - logit p) for one Bernoulli
    return ((F.sigmoid(q) - F.sigmoid(p)) * (q - p)).sum(axis=-1).mean()


def init_delta(valid: paddle.Tensor, dim: int, init_mag: float) -> paddle.Tensor:
    """[B, L, dim] perturbation: uniform(-1, 1) at valid positions scaled by init_mag / sqrt(#valid * dim) per
    example (official l2 init); zeros when ``init_mag`` is 0."""
    b, n = valid.shape
    if init_mag <= 0:
        return paddle.zeros([b, n, dim], dtype="float32")
    delta = paddle.uniform([b, n, dim], dtype="float32", min=-1.0, max=1.0) * valid.unsqueeze(-1)
    count = paddle.clip(valid.sum(axis=1) * dim, min=1.0)  # an image without boxes has no valid row
    return delta * (init_mag / paddle.sqrt(count)).reshape([b, 1, 1])


def _per_example_norm(x: paddle.Tensor) -> paddle.Tensor:
    return paddle.sqrt((x.reshape([x.shape[0], -1]) ** 2).sum(axis=1)).reshape([-1, 1, 1])


def ascend(delta: paddle.Tensor, grad: paddle.Tensor, valid: paddle.Tensor, adv_lr: float, max_norm: float = 0.0,
           official_projection: bool = False) -> paddle.Tensor:
    """One normalised gradient-ascent step ``d + adv_lr * g / max(||g||, 1e-8)`` (per example), then the l2
    projection onto the ball of radius ``max_norm`` (if > 0). Returns a new detached tensor."""
    grad = grad.detach() * valid.unsqueeze(-1)  # padding never moves (its gradient is zero anyway)
    gnorm = paddle.clip(_per_example_norm(grad), min=1e-8)
    new = delta.detach() + adv_lr * grad / gnorm
    if max_norm > 0:
        norm = gnorm if official_projection else _per_example_norm(new)
        scale = paddle.where(norm > max_norm, max_norm / paddle.clip(norm, min=1e-12), paddle.ones_like(norm))
        new = new * scale
    return new.detach()


def _validity(batch: Mapping[str, Any], num_image: int, num_text: int) -> tuple[paddle.Tensor, paddle.Tensor]:
    """Valid image rows [B, R] and text positions [B, T]: the diagonal of the 0/1 attention mask (every mask of the
    project lets a valid position see itself and zeroes padding rows), else input_ids != [PAD]."""
    mask = batch.get("attention_mask")
    ids = batch["input_ids"]
    b = ids.shape[0]
    if mask is not None and mask.ndim == 3:
        diag = paddle.diagonal(mask.astype("float32"), axis1=1, axis2=2)
    elif mask is not None and mask.ndim == 2:
        diag = mask.astype("float32")
    else:
        diag = None
    if diag is not None:
        total = diag.shape[1]
        img = diag[:, :num_image] if num_image else paddle.zeros([b, 0], dtype="float32")
        return img, diag[:, total - num_text:]
    img = paddle.ones([b, num_image], dtype="float32")
    return img, (ids != PAD_ID).astype("float32")


# ----------------------------------------------------------------------------------------------------------------
# Per-model heads: logits and loss through the public sub-modules, so every pass can take the deltas
# ----------------------------------------------------------------------------------------------------------------
class _Head:
    kl = staticmethod(symmetric_kl)

    def __init__(self, model: UnimoPretrainedModel):
        self.model = model

    def logits(self, inputs: dict[str, Any], labels: dict[str, Any], **deltas: Any) -> paddle.Tensor:
        raise NotImplementedError

    def loss(self, logits: paddle.Tensor, labels: dict[str, Any]) -> paddle.Tensor:
        raise NotImplementedError


class _GenerationHead(_Head):
    """Captioning / seq2seq: tied LM head at ``label_positions``, label-smoothed CE (official cal_logit + loss)."""

    def logits(self, inputs, labels, **deltas):
        seq = self.model.unimo(**inputs, **deltas)
        hidden = paddle.gather(seq.reshape([-1, seq.shape[-1]]), labels["label_positions"].reshape([-1]), axis=0)
        return self.model.lm_head(hidden)

    def loss(self, logits, labels):
        eps = labels.get("label_smoothing")
        eps = 0.0 if eps is None else float(np.asarray(eps.numpy() if isinstance(eps, paddle.Tensor) else eps
                                                       ).reshape(-1)[0])
        return label_smoothed_cross_entropy(logits, labels["labels"].reshape([-1]), eps)


class _PooledHead(_Head):
    """Heads on pooled text + pooled image (VE, VQA)."""

    def fused(self, inputs, **deltas):
        seq = self.model.unimo(**inputs, **deltas)
        num_image = inputs["image_features"].shape[1]
        fused = self.model.unimo.pool_text(seq, num_image) + self.model.unimo.pool_image(seq)
        return fused


class _VEHead(_PooledHead):
    def logits(self, inputs, labels, **deltas):
        m = self.model
        h = F.dropout(m.cls_out_0(self.fused(inputs, **deltas)), m.config.hidden_dropout_prob, training=m.training)
        return m.cls_out_1(h)

    def loss(self, logits, labels):
        return F.cross_entropy(logits, labels["labels"].reshape([-1]).astype("int64"))


class _VQAHead(_PooledHead):
    kl = staticmethod(symmetric_bernoulli_kl)

    def logits(self, inputs, labels, **deltas):
        m = self.model
        fused = F.dropout(self.fused(inputs, **deltas), m.config.hidden_dropout_prob, training=m.training)
        return m.vqa_fc_1(m.vqa_layer_norm(F.gelu(m.vqa_fc_0(fused))))

    def loss(self, logits, labels):
        target = labels["labels"].astype(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, target) * self.model.num_answers


_HEADS: list[tuple[type, type]] = [(UnimoForGeneration, _GenerationHead), (UnimoForVisualEntailment, _VEHead),
                                   (UnimoForVQA, _VQAHead)]


def _head_for(model: nn.Layer) -> _Head:
    for cls, head in _HEADS:
        if isinstance(model, cls):
            return head(model)
    names = ", ".join(cls.__name__ for cls, _ in _HEADS)
    raise TypeError(f"VILLA adversarial training supports {names}; got {type(model).__name__} "
                    "(set adv_steps: 0 for this task)")


# ----------------------------------------------------------------------------------------------------------------
# The wrapper
# ----------------------------------------------------------------------------------------------------------------
class VillaWrapper(ModelWrapper):
    """VILLA adversarial training around a captioning (``UnimoForGeneration``), SNLI-VE or VQA model.

    ``forward(**batch)`` in training mode, with labels, returns ``(total_loss, parts)``: parts = ``pure``,
    ``adv_text``, ``adv_image`` (each summed over steps, so each is the mean of its per-step loss) and ``kl``
    (summed over steps, text + image, before ``kl_weight``); total = pure + adv_text + adv_image + kl_weight * kl
    (without the pure model: adv_text + adv_image). In eval mode, or without labels, it is the wrapped model's
    forward. ``last_steps`` keeps per-step detached values of the last training forward (diagnostics/tests).
    """

    def __init__(self, model: UnimoPretrainedModel, adv_steps: int, adv_lr: float, adv_init_mag: float,
                 adv_max_norm: float = 0.0, kl_weight: float = 1.0, with_pure_model: bool = True,
                 official_projection: bool = False):
        super().__init__(model)
        problems = []
        if not isinstance(adv_steps, int) or isinstance(adv_steps, bool) or adv_steps < 1:
            problems.append(f"adv_steps must be an integer >= 1 (0 means: do not wrap), got {adv_steps!r}")
        for name, value in (("adv_lr", adv_lr), ("adv_init_mag", adv_init_mag), ("adv_max_norm", adv_max_norm),
                            ("adv_kl_weight", kl_weight)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                    or value < 0:
                problems.append(f"{name} must be a finite number >= 0, got {value!r}")
        if problems:
            raise ValueError("invalid VILLA settings: " + "; ".join(problems))
        self.head = _head_for(model)
        self.adv_steps, self.adv_lr, self.adv_init_mag = adv_steps, float(adv_lr), float(adv_init_mag)
        self.adv_max_norm, self.kl_weight = float(adv_max_norm), float(kl_weight)
        self.with_pure_model, self.official_projection = bool(with_pure_model), bool(official_projection)
        self.last_steps: list[dict[str, paddle.Tensor]] = []

    def forward(self, **batch: Any):
        if not self.training or batch.get("labels") is None:
            return self.model(**batch)
        labels = {k: batch[k] for k in _LABEL_KEYS if batch.get(k) is not None}
        inputs = {k: v for k, v in batch.items() if k not in _LABEL_KEYS}
        if inputs.get("input_ids") is None or inputs.get("image_features") is None:
            raise ValueError("VILLA needs both input_ids and image_features in the batch")
        feats = inputs["image_features"]
        ids = inputs["input_ids"]
        img_valid, txt_valid = _validity(inputs, feats.shape[1], ids.shape[1])
        t_delta = init_delta(txt_valid, self.model.config.hidden_size, self.adv_init_mag)
        v_delta = init_delta(img_valid, feats.shape[2], self.adv_init_mag)

        k_inv = 1.0 / self.adv_steps
        head = self.head
        total: Optional[paddle.Tensor] = None
        sums = {"pure": 0.0, "adv_text": 0.0, "adv_image": 0.0, "kl": 0.0}
        self.last_steps = []
        for _ in range(self.adv_steps):
            step: dict[str, paddle.Tensor] = {"text_delta_norm": _per_example_norm(t_delta).mean(),
                                              "image_delta_norm": _per_example_norm(v_delta).mean()}
            t_delta.stop_gradient = False
            v_delta.stop_gradient = False
            text_logits = head.logits(inputs, labels, text_embedding_delta=t_delta)
            text_loss = head.loss(text_logits, labels) * k_inv
            image_logits = head.logits(inputs, labels, image_feature_delta=v_delta)
            image_loss = head.loss(image_logits, labels) * k_inv
            # one backward pass for both deltas: text_loss does not depend on v_delta, nor image_loss on t_delta;
            # the graph is kept for the Trainer's backward of the total
            g_text, g_image = paddle.grad([text_loss, image_loss], [t_delta, v_delta], retain_graph=True)
            cur = text_loss + image_loss
            sums["adv_text"] = sums["adv_text"] + text_loss.detach()
            sums["adv_image"] = sums["adv_image"] + image_loss.detach()
            step.update(adv_text=text_loss.detach(), adv_image=image_loss.detach())
            if self.with_pure_model:
                pure_logits = head.logits(inputs, labels)
                pure_loss = head.loss(pure_logits, labels) * k_inv
                kl_text = head.kl(pure_logits, text_logits)
                kl_image = head.kl(pure_logits, image_logits)
                cur = cur + pure_loss + self.kl_weight * (kl_text + kl_image)
                sums["pure"] = sums["pure"] + pure_loss.detach()
                sums["kl"] = sums["kl"] + (kl_text + kl_image).detach()
                step.update(pure=pure_loss.detach(), kl_text=kl_text.detach(), kl_image=kl_image.detach())
            total = cur if total is None else total + cur
            self.last_steps.append(step)
            t_delta = ascend(t_delta, g_text, txt_valid, self.adv_lr, self.adv_max_norm, self.official_projection)
            v_delta = ascend(v_delta, g_image, img_valid, self.adv_lr, self.adv_max_norm, self.official_projection)
        parts = {k: v for k, v in sums.items() if self.with_pure_model or k in ("adv_text", "adv_image")}
        return total, parts


def wrap_villa(model: UnimoPretrainedModel, cfg: Mapping[str, Any]) -> nn.Layer:
    """The model the Trainer should train: ``model`` itself when ``adv_steps`` is 0/absent, else a
    :class:`VillaWrapper` configured from the task YAML keys ``adv_steps``, ``adv_lr``, ``adv_init_mag``,
    ``adv_max_norm``, ``adv_kl_weight``, ``adv_with_pure_model`` (default true), ``adv_official_projection``
    (default false)."""
    steps = cfg.get("adv_steps") or 0
    if isinstance(steps, float) and steps.is_integer():
        steps = int(steps)
    if steps == 0:
        return model
    if cfg.get("task") in _TEXT_ONLY_TASKS:
        raise ValueError(f"adv_steps={steps}: VILLA perturbs the image features too, and task {cfg['task']!r} has "
                         "none; set adv_steps: 0")
    if isinstance(model, ModelWrapper):
        raise TypeError(f"adv_steps={steps} but the task model is already a training wrapper "
                        f"({type(model).__name__}); VILLA does not combine with it: set adv_steps: 0")

    def num(key: str, default: float) -> float:
        value = cfg.get(key, default)
        return default if value is None else value

    return VillaWrapper(model, adv_steps=steps, adv_lr=num("adv_lr", 0.03), adv_init_mag=num("adv_init_mag", 0.4),
                        adv_max_norm=num("adv_max_norm", 0.0), kl_weight=num("adv_kl_weight", 1.0),
                        with_pure_model=bool(num("adv_with_pure_model", True)),
                        official_projection=bool(num("adv_official_projection", False)))
