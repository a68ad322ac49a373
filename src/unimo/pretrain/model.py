"""UNIMO pre-training model: one single-stream backbone, the pre-training heads, and every loss of paper section 3.

``UnimoForPretraining(**batch)`` takes the prefixed batch of :class:`unimo.pretrain.data.PretrainCollator` (any
subset of the streams) and returns ``(total_loss, {"mlm", "s2s", "mrfr", "mrc", "cmcl", "vl_mlm", "vl_mrfr",
"vl_mrc"})`` - only the parts whose stream is in the batch. ``UnimoTrainer`` logs each part.

Design (paper section 3; where the paper gives no detail the item says so):

* language learning - ``[CLS] text [SEP]`` with a full mask (bidirectional prediction of span-masked tokens) or
  ``[source ; target]`` with the seq2seq mask; both go through the tied LM head (``lm_head``, official names).
  Per batch, ``text_loss = (1 - f) * mlm + f * s2s`` with ``f`` the fraction of seq2seq examples, i.e. the two
  objectives alternate uniformly in expectation.
* visual learning - ``[IMG ; regions]`` alone; masked rows -> ``mrfr_fc`` (FC to the feature size, L2 summed over
  the feature dimension and averaged over masked regions, equation 2) and ``mrc_fc`` (FC to ``image_class_size``,
  CE against the detector's class or KL against its distribution with ``image_use_soft_label``).
* cross-modal contrastive learning (``cmcl_encoding``):

  - ``joint`` (default; paper section 3.1: "its visual features and textual tokens are concatenated as a sequence
    {[IMG], v1, ..., vt, [CLS], w1, ..., wn, [SEP]}. Then the sequence is feed into the multi-layer Transformer ...
    We extract the representation of [IMG] and [CLS] ... transformed into the same embedding space by an FC layer
    and cosine similarity between them is calculated"): one joint pass per candidate pair (V, W'), d(V, W') =
    cos(FC(h[IMG]), FC(h[CLS])) of that pass, equation 1 over W+ (the caption and its back-translation positives)
    and W- (the pair's rewritten hard negatives); in-batch negatives only with ``cmcl_in_batch_negatives``
    (equation 1 has none). B pairs with P + N candidates cost B x (P + N) joint passes.
  - ``dual`` (the scalable alternative, not the paper's): the image encoded *alone* (``[IMG ; regions]``), every
    distinct text of the batch *alone* (``[CLS] text [SEP]``), B + K passes, and the other images' texts as in-batch
    negatives; under several processes the texts of every rank (``losses.gather_texts``, gradient through the local
    rows), so two ranks equal one process on the concatenated batch. The text -> image direction
    (``cmcl_symmetric``) stays rank-local (images are not gathered).

  The FC is ``cmcl_head="pooler"`` (the official poolers, fc + ReLU, which the fine-tuning heads read, so they are
  trained) or ``"fc"`` (separate linear FCs ``cmcl_fc_image`` / ``cmcl_fc_text``; the poolers then stay at their
  initialisation); equation 1 is :func:`unimo.pretrain.losses.cmcl_loss` / ``_multi_positive_nce``.
* masked modelling on pairs - the joint ``[IMG ; regions ; CLS caption SEP]`` with full cross-modal attention,
  ``vl_mask_ratio`` of caption tokens (span masking) and of regions masked: ``vl_mlm``, ``vl_mrfr``, ``vl_mrc``.

Which parameters each loss trains (``param_groups``; tests/test_pretrain_params.py):

==================  ======================================================================================
loss                parameter groups
==================  ======================================================================================
mlm, s2s            text_embed, encoder, lm_head
mrfr, mrc           image_embed, encoder, mrfr_fc, mrc_fc
cmcl                text_embed, image_embed, encoder + pooler_text, pooler_image (``cmcl_head: pooler``) or
                    cmcl_fc_text, cmcl_fc_image (``fc``)
vl_mlm/mrfr/mrc     text_embed, image_embed, encoder, lm_head, mrfr_fc, mrc_fc
==================  ======================================================================================

The fine-tuning heads read the poolers (classification: pooler_text; VE, retrieval, VQA: both) and the LM head
(generation), so the shipped configurations train all of them (``cmcl_head: pooler``); with ``fc`` the poolers
leave pre-training at their initialisation. The CoQA role/turn embeddings exist only in fine-tuning.

Every trainable parameter must receive a gradient on every rank each step (``paddle.DataParallel`` aborts on unused
parameters): parameter groups that a configuration can never use (e.g. the image embedding in a text-only run) are
frozen; groups a particular step did not use (a stream not sampled this step, no masked region) get a zero-valued
term added to the loss, in training mode always (single process too, so both behave the same).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import paddle

from ..model.configuration import UnimoConfig
from ..model.modeling import OFFICIAL_NAMES, UnimoLMHead, UnimoModel, UnimoPretrainedModel, _linear, \
    backbone_name_map
from .losses import cmcl_loss, gather_texts, label_smoothed_cross_entropy, region_classification_loss, \
    region_feature_regression_loss

STREAMS = ("text", "image", "pair")
LOSS_NAMES = ("mlm", "s2s", "mrfr", "mrc", "cmcl", "vl_mlm", "vl_mrfr", "vl_mrc")


class UnimoForPretraining(UnimoPretrainedModel):
    """Backbone + LM head + region heads + CMCL projections (see the module docstring)."""

    def __init__(self, config: UnimoConfig, streams: Sequence[str] = STREAMS, cmcl_head: str = "fc",
                 cmcl_temperature: float = 0.07, cmcl_symmetric: bool = False, text_weight: float = 1.0,
                 image_weight: float = 1.0, pair_weight: float = 1.0, cmcl_weight: float = 1.0,
                 vl_weight: float = 1.0, mrfr_weight: Optional[float] = None,
                 image_predict_feature: Optional[bool] = None, image_predict_class: Optional[bool] = None,
                 image_use_soft_label: Optional[bool] = None, label_smoothing: float = 0.0,
                 cmcl_encoding: str = "joint", cmcl_in_batch_negatives: bool = False,
                 cmcl_share_negatives: bool = False):
        super().__init__()
        if cmcl_encoding not in ("joint", "dual"):
            raise ValueError(f"cmcl_encoding must be 'joint' or 'dual', got {cmcl_encoding!r}")
        if cmcl_encoding == "joint" and cmcl_symmetric:
            raise ValueError("cmcl_symmetric (text -> image) is defined for the dual encoding only")
        self.cmcl_encoding, self.cmcl_in_batch_negatives = cmcl_encoding, bool(cmcl_in_batch_negatives)
        self.cmcl_share_negatives = bool(cmcl_share_negatives)  # dual: other ranks' rewrites are candidates too
        bad = [s for s in streams if s not in STREAMS]
        if bad or not streams:
            raise ValueError(f"streams must be a non-empty subset of {STREAMS}, got {list(streams)}")
        if cmcl_head not in ("pooler", "fc"):
            raise ValueError(f"cmcl_head must be 'pooler' or 'fc', got {cmcl_head!r}")
        if not float(cmcl_temperature) > 0:
            raise ValueError(f"cmcl_temperature must be > 0, got {cmcl_temperature}")
        for name, w in (("text_weight", text_weight), ("image_weight", image_weight), ("pair_weight", pair_weight),
                        ("cmcl_weight", cmcl_weight), ("vl_weight", vl_weight)):
            if not float(w) >= 0:
                raise ValueError(f"{name} must be >= 0, got {w}")
        self.config = config
        self.streams = [s for s in STREAMS if s in streams]
        self.cmcl_head, self.cmcl_temperature, self.cmcl_symmetric = cmcl_head, float(cmcl_temperature), \
            bool(cmcl_symmetric)
        self.text_weight, self.image_weight, self.pair_weight = float(text_weight), float(image_weight), \
            float(pair_weight)
        self.cmcl_weight, self.vl_weight = float(cmcl_weight), float(vl_weight)
        # Paper: ||r(h) - v||^2 summed over the feature dimension; weighted by 1/D by default (= per-dimension MSE, as
        # UNITER) so a 2048-d regression does not swamp the other losses.
        self.mrfr_weight = float(mrfr_weight) if mrfr_weight is not None else 1.0 / config.image_embedding_size
        self.predict_feature = config.image_predict_feature if image_predict_feature is None else \
            bool(image_predict_feature)
        self.predict_class = config.image_predict_class if image_predict_class is None else bool(image_predict_class)
        self.soft_label = config.image_use_soft_label if image_use_soft_label is None else bool(image_use_soft_label)
        self.label_smoothing = float(label_smoothing)
        self.anchor_unused = True

        h, std = config.hidden_size, config.initializer_range
        self.unimo = UnimoModel(config)
        self.lm_head = UnimoLMHead(config, self.unimo.word_embedding)
        has_regions = "image" in self.streams or "pair" in self.streams
        self.mrfr_fc = _linear(h, config.image_embedding_size, std) if has_regions and self.predict_feature else None
        self.mrc_fc = _linear(h, config.image_class_size, std) if has_regions and self.predict_class else None
        self.use_cmcl = "pair" in self.streams and self.cmcl_weight > 0
        if cmcl_head == "fc":  # built even when CMCL is off (frozen), so retrieval can be measured without CMCL
            self.cmcl_fc_image = _linear(h, h, std)
            self.cmcl_fc_text = _linear(h, h, std)
        else:
            self.cmcl_fc_image = self.cmcl_fc_text = None
        self._freeze_never_used()

    # -------------------------------------------------------------- plumbing
    def init_kwargs(self) -> dict[str, Any]:
        return {"streams": list(self.streams), "cmcl_head": self.cmcl_head, "cmcl_temperature": self.cmcl_temperature,
                "cmcl_symmetric": self.cmcl_symmetric, "text_weight": self.text_weight,
                "image_weight": self.image_weight, "pair_weight": self.pair_weight, "cmcl_weight": self.cmcl_weight,
                "vl_weight": self.vl_weight, "mrfr_weight": self.mrfr_weight,
                "image_predict_feature": self.predict_feature, "image_predict_class": self.predict_class,
                "image_use_soft_label": self.soft_label, "label_smoothing": self.label_smoothing,
                "cmcl_encoding": self.cmcl_encoding, "cmcl_in_batch_negatives": self.cmcl_in_batch_negatives,
                "cmcl_share_negatives": self.cmcl_share_negatives}

    def official_name_map(self) -> dict[str, str]:
        """Backbone and LM head have official names; the region and CMCL heads never existed in the release."""
        return {**backbone_name_map(self.config, "unimo."),
                **{k: "lm_head." + v for k, v in OFFICIAL_NAMES["lm_head"].items()}}

    def param_groups(self) -> dict[str, list[paddle.Tensor]]:
        u = self.unimo
        groups = {
            "text_embed": [u.word_embedding.weight, u.pos_embedding.weight, *u.pre_encoder_layer_norm.parameters()],
            "image_embed": [*u.image_emb.parameters(), *u.image_loc.parameters(),
                            *u.v_pre_encoder_layer_norm.parameters()],
            "encoder": list(u.layers.parameters()),
            "pooler_text": list(u.pooled_fc_text.parameters()),
            "pooler_image": list(u.pooled_fc_image.parameters()),
            "lm_head": [p for n, p in self.lm_head.named_parameters()],
        }
        for name in ("role_embedding", "turn_embedding"):
            if hasattr(u, name):
                groups[name] = [getattr(u, name).weight]
        for name in ("mrfr_fc", "mrc_fc", "cmcl_fc_image", "cmcl_fc_text"):
            layer = getattr(self, name)
            if layer is not None:
                groups[name] = list(layer.parameters())
        return groups

    def _freeze_never_used(self) -> None:
        s = set(self.streams)
        usable = {"encoder"}
        if s & {"text", "pair"}:
            usable |= {"text_embed", "lm_head"}
        if s & {"image", "pair"}:
            usable |= {"image_embed", "mrfr_fc", "mrc_fc"}
        if self.use_cmcl:
            usable |= {"pooler_text", "pooler_image"} if self.cmcl_head == "pooler" else {"cmcl_fc_image",
                                                                                         "cmcl_fc_text"}
        self.frozen_groups = sorted(g for g in self.param_groups() if g not in usable)
        for g, params in self.param_groups().items():
            if g in self.frozen_groups:
                for p in params:
                    p.stop_gradient = True

    def _anchor(self, used: set[str]) -> Optional[paddle.Tensor]:
        """0 x (one element of every trainable parameter of the groups this step did not use)."""
        terms = [p.reshape([-1])[:1].sum() for g, params in self.param_groups().items()
                 if g not in used and g not in self.frozen_groups for p in params if not p.stop_gradient]
        return paddle.add_n(terms) * 0.0 if terms else None

    # -------------------------------------------------------------- shared pieces
    @staticmethod
    def _gather(seq: paddle.Tensor, positions: paddle.Tensor) -> paddle.Tensor:
        return paddle.gather(seq.reshape([-1, seq.shape[-1]]), positions.reshape([-1]).astype("int64"), axis=0)

    def _token_nll(self, seq: paddle.Tensor, positions: paddle.Tensor, ids: paddle.Tensor) -> paddle.Tensor:
        logits = self.lm_head(self._gather(seq, positions))
        return label_smoothed_cross_entropy(logits, ids.reshape([-1]), self.label_smoothing, reduction="none",
                                            check_labels=False)

    def _regions(self, seq: paddle.Tensor, batch: dict[str, paddle.Tensor], prefix: str, used: set[str]
                 ) -> tuple[Optional[paddle.Tensor], Optional[paddle.Tensor]]:
        """(feature regression, region classification) of the masked rows; None when not configured / nothing masked."""
        mrfr = mrc = None
        pos = batch.get(f"{prefix}mrm_positions")
        if self.mrfr_fc is not None and pos is not None and pos.shape[0] > 0:
            mrfr = region_feature_regression_loss(self.mrfr_fc(self._gather(seq, pos)), batch[f"{prefix}mrm_targets"])
            used.add("mrfr_fc")
        pos = batch.get(f"{prefix}mrc_positions")
        if self.mrc_fc is not None and pos is not None and pos.shape[0] > 0:
            mrc = region_classification_loss(self.mrc_fc(self._gather(seq, pos)), batch[f"{prefix}mrc_targets"],
                                              soft=self.soft_label)
            used.add("mrc_fc")
        return mrfr, mrc

    def project_images(self, sequence_output: paddle.Tensor) -> paddle.Tensor:
        """CMCL embedding of images from an image-only encoding (row 0 = [IMG])."""
        if self.cmcl_head == "pooler":
            return self.unimo.pool_image(sequence_output)
        return self.cmcl_fc_image(sequence_output[:, 0])

    def project_texts(self, sequence_output: paddle.Tensor) -> paddle.Tensor:
        """CMCL embedding of texts from a text-only encoding (row 0 = [CLS])."""
        if self.cmcl_head == "pooler":
            return self.unimo.pool_text(sequence_output)
        return self.cmcl_fc_text(sequence_output[:, 0])

    def joint_scores(self, image_features: paddle.Tensor, image_locations: paddle.Tensor, image_valid: paddle.Tensor,
                     input_ids: paddle.Tensor, position_ids: paddle.Tensor, text_valid: paddle.Tensor,
                     image_index: paddle.Tensor, text_index: paddle.Tensor) -> paddle.Tensor:
        """cos(FC(h[IMG]), FC(h[CLS])) of one joint pass ``[IMG ; regions ; CLS text SEP]`` per (image, text) pair
        ``(image_index[m], text_index[m])`` (paper section 3.1); returns [M] cosine similarities."""
        img = paddle.gather(image_features, image_index, axis=0)
        loc = paddle.gather(image_locations, image_index, axis=0)
        valid = paddle.concat([paddle.gather(image_valid, image_index, axis=0).astype("float32"),
                               paddle.gather(text_valid, text_index, axis=0).astype("float32")], axis=1)
        seq = self.unimo(input_ids=paddle.gather(input_ids, text_index, axis=0),
                         position_ids=paddle.gather(position_ids, text_index, axis=0), image_features=img,
                         image_locations=loc, attention_mask=valid)
        rows = int(image_features.shape[1])
        a = self.project_images(seq[:, :rows])
        b = self.project_texts(seq[:, rows:])
        return paddle.nn.functional.cosine_similarity(a, b, axis=-1)

    def _cmcl_joint(self, batch: dict[str, paddle.Tensor]) -> paddle.Tensor:
        positive = batch["pair_positive"].astype("bool")
        candidate = paddle.logical_or(batch["pair_owner"].astype("bool"), positive)
        if self.cmcl_in_batch_negatives:
            candidate = paddle.logical_or(candidate, batch["pair_candidate"].astype("bool"))
        b, k = int(positive.shape[0]), int(positive.shape[1])
        pairs = paddle.nonzero(candidate)  # [M, 2] (image, text)
        cos = self.joint_scores(batch["pair_image_features"], batch["pair_image_locations"],
                                batch["pair_image_attention_mask"], batch["pair_text_input_ids"],
                                batch["pair_text_position_ids"], batch["pair_text_attention_mask"], pairs[:, 0],
                                pairs[:, 1])
        flat = pairs[:, 0] * k + pairs[:, 1]
        scores = paddle.scatter(paddle.zeros([b * k], dtype=cos.dtype), flat, cos / self.cmcl_temperature)
        from .losses import _multi_positive_nce

        per_image, has_pos = _multi_positive_nce(scores.reshape([b, k]), positive, candidate)
        if not bool(has_pos.any()):
            raise ValueError("cmcl: no image has a positive text (check pair_positive)")
        return (per_image * has_pos).sum() / has_pos.sum()

    def embed_images(self, image_features: paddle.Tensor, image_locations: paddle.Tensor,
                     image_attention_mask: Optional[paddle.Tensor] = None) -> paddle.Tensor:
        return self.project_images(self.unimo(image_features=image_features, image_locations=image_locations,
                                              attention_mask=image_attention_mask))

    def embed_texts(self, input_ids: paddle.Tensor, position_ids: Optional[paddle.Tensor] = None,
                    attention_mask: Optional[paddle.Tensor] = None) -> paddle.Tensor:
        return self.project_texts(self.unimo(input_ids=input_ids, position_ids=position_ids,
                                             attention_mask=attention_mask))

    # -------------------------------------------------------------- forward
    def forward(self, **batch: paddle.Tensor):
        parts: dict[str, paddle.Tensor] = {}
        total: Optional[paddle.Tensor] = None
        used: set[str] = {"encoder"}

        def add(term: Optional[paddle.Tensor], weight: float) -> None:
            nonlocal total
            if term is not None and weight != 0.0:
                total = term * weight if total is None else total + term * weight

        if "text_input_ids" in batch:
            add(self._text_loss(batch, parts, used), self.text_weight)
        if "image_features" in batch:
            add(self._image_loss(batch, parts, used), self.image_weight)
        if "pair_image_features" in batch:
            add(self._pair_loss(batch, parts, used), self.pair_weight)
        if total is None:
            raise ValueError(f"the batch holds no stream of this model ({self.streams}); keys: {sorted(batch)}")
        if self.training and self.anchor_unused:
            anchor = self._anchor(used)
            if anchor is not None:
                total = total + anchor
        return total, parts

    def _text_loss(self, batch, parts, used) -> paddle.Tensor:
        if "text" not in self.streams:
            raise ValueError("text batch given to a model built without the text stream")
        seq = self.unimo(input_ids=batch["text_input_ids"], position_ids=batch["text_position_ids"],
                         attention_mask=batch["text_attention_mask"])
        used |= {"text_embed", "lm_head"}
        nll = self._token_nll(seq, batch["text_label_positions"], batch["text_label_ids"])
        is_s2s = batch["text_label_mode"].reshape([-1]).astype("float32")
        mlm = (nll * (1.0 - is_s2s)).sum() / paddle.clip((1.0 - is_s2s).sum(), min=1.0)
        s2s = (nll * is_s2s).sum() / paddle.clip(is_s2s.sum(), min=1.0)
        mode = batch["text_mode"].astype("float32")
        n_s2s, n = float(mode.sum()), int(mode.shape[0])
        if n_s2s < n:
            parts["mlm"] = mlm
        if n_s2s > 0:
            parts["s2s"] = s2s
        frac = n_s2s / max(n, 1)
        return mlm * (1.0 - frac) + s2s * frac

    def _image_loss(self, batch, parts, used) -> paddle.Tensor:
        if "image" not in self.streams:
            raise ValueError("image batch given to a model built without the image stream")
        seq = self.unimo(image_features=batch["image_features"], image_locations=batch["image_locations"],
                         attention_mask=batch["image_attention_mask"])
        used.add("image_embed")
        mrfr, mrc = self._regions(seq, batch, "image_", used)
        loss = seq[:, :1, :1].sum().astype("float32") * 0.0  # zero connected to the graph if no region was masked
        if mrfr is not None:
            parts["mrfr"] = mrfr
            loss = loss + self.mrfr_weight * mrfr
        if mrc is not None:
            parts["mrc"] = mrc
            loss = loss + mrc
        return loss

    def _pair_loss(self, batch, parts, used) -> paddle.Tensor:
        if "pair" not in self.streams:
            raise ValueError("pair batch given to a model built without the pair stream")
        loss = None
        if self.use_cmcl:
            if self.cmcl_encoding == "joint":
                cmcl = self._cmcl_joint(batch)
            else:
                img = self.embed_images(batch["pair_image_features"], batch["pair_image_locations"],
                                        batch["pair_image_attention_mask"])
                txt = self.embed_texts(batch["pair_text_input_ids"], batch["pair_text_position_ids"],
                                       batch["pair_text_attention_mask"])
                # several processes: every rank's texts (in-batch negatives over the global batch)
                txt, positive, candidate = gather_texts(txt, batch["pair_positive"], batch["pair_candidate"],
                                                        self.cmcl_share_negatives)
                cmcl = cmcl_loss(img, txt, positive, candidate, self.cmcl_temperature, symmetric=self.cmcl_symmetric)
            used |= {"image_embed", "text_embed"}
            used |= {"pooler_image", "pooler_text"} if self.cmcl_head == "pooler" else {"cmcl_fc_image",
                                                                                       "cmcl_fc_text"}
            parts["cmcl"] = cmcl
            loss = cmcl * self.cmcl_weight
        if self.vl_weight > 0:
            seq = self.unimo(input_ids=batch["vl_input_ids"], position_ids=batch["vl_position_ids"],
                             image_features=batch["vl_image_features"], image_locations=batch["pair_image_locations"],
                             attention_mask=batch["vl_attention_mask"])
            used |= {"image_embed", "text_embed"}
            vl = seq[:, :1, :1].sum().astype("float32") * 0.0
            if batch["vl_lm_positions"].shape[0] > 0:
                vl_mlm = self._token_nll(seq, batch["vl_lm_positions"], batch["vl_lm_ids"]).mean()
                used.add("lm_head")
                parts["vl_mlm"] = vl_mlm
                vl = vl + vl_mlm
            mrfr, mrc = self._regions(seq, batch, "vl_", used)
            if mrfr is not None:
                parts["vl_mrfr"] = mrfr
                vl = vl + self.mrfr_weight * mrfr
            if mrc is not None:
                parts["vl_mrc"] = mrc
                vl = vl + mrc
            loss = vl * self.vl_weight if loss is None else loss + vl * self.vl_weight
        if loss is None:
            raise ValueError("pair stream with cmcl_weight = 0 and vl_weight = 0 trains nothing")
        return loss
