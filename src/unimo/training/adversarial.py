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

Every pass is the task model's own ``forward`` (the deltas are its ``text_embedding_delta`` / ``image_feature_delta``
arguments) with the task's own loss (label smoothing included: a constructor argument of the model) and its logits
for the KL terms; the wrapper only adds the recipe around it.

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
from typing import Any, Callable, Mapping, Optional

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..model.modeling import UnimoForGeneration, UnimoForVisualEntailment, UnimoForVQA, UnimoPretrainedModel
from ..registry import text_only_tasks
from ..tokenizer import PAD_ID
from ..utils.ops import log_softmax
from .config import VillaConfig


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
# Which models VILLA trains, and the KL of their outputs
# ----------------------------------------------------------------------------------------------------------------
# Every pass goes through the task model's own forward (which takes the deltas) and uses its own loss and logits;
# only the divergence between the clean and the perturbed outputs depends on what the logits mean: softmax
# classes (captioning tokens, SNLI-VE labels) or one Bernoulli per answer (VQA).
_KL: list[tuple[type, Callable[[paddle.Tensor, paddle.Tensor], paddle.Tensor]]] = [
    (UnimoForGeneration, symmetric_kl), (UnimoForVisualEntailment, symmetric_kl),
    (UnimoForVQA, symmetric_bernoulli_kl)]


def _kl_for(model: nn.Layer) -> Callable[[paddle.Tensor, paddle.Tensor], paddle.Tensor]:
    for cls, kl in _KL:
        if isinstance(model, cls):
            return kl
    names = ", ".join(cls.__name__ for cls, _ in _KL)
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
        self.kl = _kl_for(model)
        self.adv_steps, self.adv_lr, self.adv_init_mag = adv_steps, float(adv_lr), float(adv_init_mag)
        self.adv_max_norm, self.kl_weight = float(adv_max_norm), float(kl_weight)
        self.with_pure_model, self.official_projection = bool(with_pure_model), bool(official_projection)
        self.last_steps: list[dict[str, paddle.Tensor]] = []

    def forward(self, **batch: Any):
        if not self.training or batch.get("labels") is None:
            return self.model(**batch)
        return self._adversarial_forward(**batch)

    def _adversarial_forward(self, **batch: Any):
        for key in ("text_embedding_delta", "image_feature_delta"):
            if key in batch:
                raise ValueError(f"the batch holds {key}: VILLA makes the perturbations itself")
        if batch.get("input_ids") is None or batch.get("image_features") is None:
            raise ValueError("VILLA needs both input_ids and image_features in the batch")
        feats = batch["image_features"]
        ids = batch["input_ids"]
        img_valid, txt_valid = _validity(batch, feats.shape[1], ids.shape[1])
        t_delta = init_delta(txt_valid, self.model.config.hidden_size, self.adv_init_mag)
        v_delta = init_delta(img_valid, feats.shape[2], self.adv_init_mag)

        k_inv = 1.0 / self.adv_steps
        total: Optional[paddle.Tensor] = None
        sums = {"pure": 0.0, "adv_text": 0.0, "adv_image": 0.0, "kl": 0.0}
        self.last_steps = []
        for _ in range(self.adv_steps):
            step: dict[str, paddle.Tensor] = {"text_delta_norm": _per_example_norm(t_delta).mean(),
                                              "image_delta_norm": _per_example_norm(v_delta).mean()}
            t_delta.stop_gradient = False
            v_delta.stop_gradient = False
            # the task model's own forward and loss, once per perturbation (each pass draws its own dropout)
            text_out = self.model(**batch, text_embedding_delta=t_delta)
            text_loss = text_out.loss * k_inv
            image_out = self.model(**batch, image_feature_delta=v_delta)
            image_loss = image_out.loss * k_inv
            # one backward pass for both deltas: text_loss does not depend on v_delta, nor image_loss on t_delta;
            # the graph is kept for the Trainer's backward of the total
            g_text, g_image = paddle.grad([text_loss, image_loss], [t_delta, v_delta], retain_graph=True)
            cur = text_loss + image_loss
            sums["adv_text"] = sums["adv_text"] + text_loss.detach()
            sums["adv_image"] = sums["adv_image"] + image_loss.detach()
            step.update(adv_text=text_loss.detach(), adv_image=image_loss.detach())
            if self.with_pure_model:
                pure_out = self.model(**batch)
                pure_loss = pure_out.loss * k_inv
                kl_text = self.kl(pure_out.logits, text_out.logits)
                kl_image = self.kl(pure_out.logits, image_out.logits)
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


def wrap_villa(model: UnimoPretrainedModel, cfg: VillaConfig | Mapping[str, Any]) -> nn.Layer:
    """The model the Trainer should train: ``model`` itself when ``adv_steps`` is 0, else a :class:`VillaWrapper`
    configured from the run configuration's VILLA keys (:class:`~unimo.training.config.VillaConfig`: ``adv_steps``,
    ``adv_lr``, ``adv_init_mag``, ``adv_max_norm``, ``adv_kl_weight``, ``adv_with_pure_model``,
    ``adv_official_projection``). A plain mapping takes VillaConfig's defaults for the keys it lacks."""
    if isinstance(cfg, Mapping):
        task = cfg.get("task")
        cfg = VillaConfig(**{k: cfg[k] for k in VillaConfig.field_types() if cfg.get(k) is not None})
    else:
        task = getattr(cfg, "task", None)
    steps = cfg.adv_steps
    if isinstance(steps, float) and steps.is_integer():
        steps = int(steps)
    if steps == 0:
        return model
    if task in text_only_tasks():
        raise ValueError(f"adv_steps={steps}: VILLA perturbs the image features too, and task {task!r} has "
                         "none; set adv_steps: 0")
    if isinstance(model, ModelWrapper):
        raise TypeError(f"adv_steps={steps} but the task model is already a training wrapper "
                        f"({type(model).__name__}); VILLA does not combine with it: set adv_steps: 0")
    return VillaWrapper(model, adv_steps=steps, adv_lr=cfg.adv_lr, adv_init_mag=cfg.adv_init_mag,
                        adv_max_norm=cfg.adv_max_norm, kl_weight=cfg.adv_kl_weight,
                        with_pure_model=bool(cfg.adv_with_pure_model),
                        official_projection=bool(cfg.adv_official_projection))
