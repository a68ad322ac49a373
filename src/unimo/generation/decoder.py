"""Step-wise next-token logits for a batch of hypotheses over an encoded source.

Two interchangeable decoders implement ``step(tokens) -> logits`` and ``select(rows)``:

* :class:`CachedDecoder` encodes the source once into a :class:`KVCache` and then feeds one token per step with the
  mask row ``[source validity ; ones]`` (official ``fast_decode``); ``select`` reorders the cache (beam parents)
  and can drop rows (finished sources).
* :class:`RecomputeDecoder` re-runs the whole ``[source ; BOS + prefix]`` sequence every step with the training-time
  seq2seq mask. It is the reference the cache is checked against and the baseline of ``bench_generation.py``.

Rows start as one per source; ``select`` maps them to any multiset of rows (beam expansion included).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Union

import numpy as np
import paddle

SOURCE_KEYS = ("input_ids", "position_ids", "image_features", "image_locations", "attention_mask", "obj_input_ids",
               "obj_position_ids", "role_ids", "turn_ids")
_INT_KEYS = {"input_ids", "position_ids", "obj_input_ids", "obj_position_ids", "role_ids", "turn_ids"}
ArrayLike = Union[paddle.Tensor, np.ndarray]


def _to_tensor(name: str, value: Any, dtype: Optional[str] = None) -> paddle.Tensor:
    if isinstance(value, paddle.Tensor):
        t = value
    else:
        try:
            t = paddle.to_tensor(np.asarray(value))
        except Exception as e:  # noqa: BLE001 - re-raised with the field name
            raise ValueError(f"source field {name!r} cannot be converted to a tensor: {e}") from e
    want = dtype or ("int64" if name in _INT_KEYS else "float32")
    if str(t.dtype).split(".")[-1] != want:
        t = t.astype(want)
    return t


def prepare_source(model: Any, source: Mapping[str, Any], source_valid: ArrayLike) -> tuple[dict, paddle.Tensor]:
    """Check shapes and return (source tensors, validity [B, Ls] float32).

    Raises ``ValueError`` naming the offending field. Missing ``position_ids`` default to 2, 3, ... (as the model
    does); when the model has role/turn embeddings, missing source role/turn ids default to 0 (the value the
    decoder feeds for generated tokens), so that cached and recomputed decoding see the same inputs.
    """
    unknown = sorted(set(source) - set(SOURCE_KEYS))
    if unknown:
        raise ValueError(f"unknown source field(s) {unknown}; expected a subset of {list(SOURCE_KEYS)}")
    src = {k: _to_tensor(k, v) for k, v in source.items() if v is not None}
    if "input_ids" not in src and "image_features" not in src:
        raise ValueError("source needs input_ids and/or image_features")
    if "attention_mask" not in src:
        raise ValueError("source needs attention_mask [B, Ls, Ls] (0/1)")
    batch = None
    length = 0
    parts = [("image_features", 3), ("obj_input_ids", 2), ("input_ids", 2)]
    for key, ndim in parts:
        if key not in src:
            continue
        shape = list(src[key].shape)
        if len(shape) != ndim:
            raise ValueError(f"source field {key!r} must have {ndim} dims, got shape {shape}")
        if batch is None:
            batch = shape[0]
        elif shape[0] != batch:
            raise ValueError(f"source field {key!r} has batch {shape[0]}, expected {batch}")
        length += shape[1]
    if "image_features" in src:
        if "image_locations" not in src:
            raise ValueError("source has image_features but no image_locations")
        want = list(src["image_features"].shape[:2]) + [5]
        if list(src["image_locations"].shape) != want:
            raise ValueError(f"source field 'image_locations' must have shape {want}, "
                             f"got {list(src['image_locations'].shape)}")
    for key, ref in (("position_ids", "input_ids"), ("obj_position_ids", "obj_input_ids"), ("role_ids", "input_ids"),
                     ("turn_ids", "input_ids")):
        if key in src:
            if ref not in src:
                raise ValueError(f"source field {key!r} given without {ref!r}")
            if list(src[key].shape) != list(src[ref].shape):
                raise ValueError(f"source field {key!r} must have shape {list(src[ref].shape)}, "
                                 f"got {list(src[key].shape)}")
    if "obj_input_ids" in src and "obj_position_ids" not in src:
        raise ValueError("source has obj_input_ids but no obj_position_ids")
    if list(src["attention_mask"].shape) != [batch, length, length]:
        raise ValueError(f"source field 'attention_mask' must have shape {[batch, length, length]} "
                         f"(B, Ls, Ls), got {list(src['attention_mask'].shape)}")
    valid = _to_tensor("source_valid", source_valid)
    if list(valid.shape) != [batch, length]:
        raise ValueError(f"source_valid must have shape {[batch, length]} (B, Ls), got {list(valid.shape)}")
    v = valid.numpy()
    if not np.all((v == 0) | (v == 1)):
        raise ValueError("source_valid must hold only 0/1 values")
    if "input_ids" in src:
        ids = src["input_ids"]
        if "position_ids" not in src:
            src["position_ids"] = paddle.arange(2, 2 + ids.shape[1], dtype="int64").expand_as(ids)
    cfg = model.unimo.config
    for key, size in (("role_ids", cfg.role_type_size), ("turn_ids", cfg.turn_type_size)):
        if not size:
            src.pop(key, None)  # the model has no such embedding and would ignore them
        elif "input_ids" in src and key not in src:
            src[key] = paddle.zeros_like(src["input_ids"])
    limits = {"input_ids": ("vocab_size", cfg.vocab_size), "obj_input_ids": ("vocab_size", cfg.vocab_size),
              "position_ids": ("max_position_embeddings", cfg.max_position_embeddings),
              "obj_position_ids": ("max_position_embeddings", cfg.max_position_embeddings),
              "role_ids": ("role_type_size", cfg.role_type_size), "turn_ids": ("turn_type_size", cfg.turn_type_size)}
    for key, (what, size) in limits.items():
        if key in src and src[key].size:
            lo, hi = int(src[key].min()), int(src[key].max())
            if lo < 0 or hi >= size:
                raise ValueError(f"source field {key!r} holds values outside [0, {size}) ({what}): min {lo}, max {hi}")
    return src, valid


class _DecoderBase:
    def __init__(self, model: Any, source: dict, valid: paddle.Tensor, bos_position: int):
        self.unimo = model.unimo
        self.lm_head = model.lm_head
        cfg = self.unimo.config
        self.role = bool(cfg.role_type_size)
        self.turn = bool(cfg.turn_type_size)
        self.bos_position = bos_position
        self.valid = valid  # [N, Ls] float32, follows the rows
        self.generated = 0  # tokens fed so far (the BOS included)

    @property
    def num_rows(self) -> int:
        return int(self.valid.shape[0])

    def _zeros_like(self, ids: paddle.Tensor) -> dict[str, paddle.Tensor]:
        out = {}
        if self.role:
            out["role_ids"] = paddle.zeros_like(ids)
        if self.turn:
            out["turn_ids"] = paddle.zeros_like(ids)
        return out


class CachedDecoder(_DecoderBase):
    """Encode the source once into the KV cache, then one token per step."""

    def __init__(self, model: Any, source: dict, valid: paddle.Tensor, bos_position: int = 2):
        super().__init__(model, source, valid, bos_position)
        self.cache = self.unimo.init_cache()
        self.unimo(**source, cache=self.cache)

    def step(self, tokens: ArrayLike) -> paddle.Tensor:
        """Feed one token per row; return next-token logits [N, V]."""
        ids = _to_tensor("tokens", tokens, "int64").reshape([-1, 1])
        n = ids.shape[0]
        if n != self.num_rows:
            raise ValueError(f"step got {n} tokens for {self.num_rows} rows")
        pos = paddle.full([n, 1], self.bos_position + self.generated, dtype="int64")
        # Mask row [source validity ; ones for every generated token incl. this one] (official seq2seq.py:256-259)
        mask = paddle.concat([self.valid, paddle.ones([n, self.generated + 1], dtype="float32")], axis=1)
        hidden = self.unimo(input_ids=ids, position_ids=pos, attention_mask=mask.unsqueeze(1), cache=self.cache,
                            **self._zeros_like(ids))
        self.generated += 1
        return self.lm_head(hidden[:, -1])

    def select(self, rows: ArrayLike) -> None:
        idx = (rows.numpy() if isinstance(rows, paddle.Tensor) else np.asarray(rows)).astype(np.int64).reshape(-1)
        if len(idx) == self.num_rows and np.array_equal(idx, np.arange(len(idx))):
            return  # parents are the identity: the cache and the validity rows stay as they are
        self.cache.reorder(idx)  # skips the source part when every row keeps its source
        self.valid = paddle.gather(self.valid, paddle.to_tensor(idx), axis=0)


class RecomputeDecoder(_DecoderBase):
    """No cache: every step runs ``[source ; BOS + prefix]`` in full with the seq2seq mask and reads the last row."""

    def __init__(self, model: Any, source: dict, valid: paddle.Tensor, bos_position: int = 2):
        super().__init__(model, source, valid, bos_position)
        self.source = source
        self.rows = paddle.arange(self.num_rows, dtype="int64")  # row -> source index
        self.prefix: Optional[paddle.Tensor] = None  # [N, t]

    def step(self, tokens: ArrayLike) -> paddle.Tensor:
        ids = _to_tensor("tokens", tokens, "int64").reshape([-1, 1])
        n = ids.shape[0]
        if n != self.num_rows:
            raise ValueError(f"step got {n} tokens for {self.num_rows} rows")
        self.prefix = ids if self.prefix is None else paddle.concat([self.prefix, ids], axis=1)
        t = self.prefix.shape[1]
        src = {k: paddle.gather(v, self.rows, axis=0) for k, v in self.source.items()}
        tgt_pos = paddle.arange(self.bos_position, self.bos_position + t, dtype="int64").expand([n, t])
        inputs = {k: v for k, v in src.items() if k != "attention_mask"}
        if "input_ids" in src:  # text source: the target continues the text part
            inputs["input_ids"] = paddle.concat([src["input_ids"], self.prefix], axis=1)
            inputs["position_ids"] = paddle.concat([src["position_ids"], tgt_pos], axis=1)
            for key, value in self._zeros_like(self.prefix).items():
                inputs[key] = paddle.concat([src[key], value], axis=1)
        else:
            inputs.update(input_ids=self.prefix, position_ids=tgt_pos, **self._zeros_like(self.prefix))
        ls = self.valid.shape[1]
        # [[source mask, 0], [source validity, causal]]: the training-time seq2seq / captioning mask
        top = paddle.concat([src["attention_mask"], paddle.zeros([n, ls, t], dtype="float32")], axis=2)
        bottom = paddle.concat([self.valid.unsqueeze(1).expand([n, t, ls]),
                                paddle.tril(paddle.ones([t, t], dtype="float32")).expand([n, t, t])], axis=2)
        inputs["attention_mask"] = paddle.concat([top, bottom], axis=1)
        hidden = self.unimo(**inputs)
        self.generated += 1
        return self.lm_head(hidden[:, -1])

    def select(self, rows: ArrayLike) -> None:
        index = _to_tensor("rows", rows, "int64")
        self.rows = paddle.gather(self.rows, index, axis=0)
        self.valid = paddle.gather(self.valid, index, axis=0)
        if self.prefix is not None:
            self.prefix = paddle.gather(self.prefix, index, axis=0)


def make_decoder(model: Any, source: Mapping[str, Any], source_valid: ArrayLike, bos_position: int = 2,
                 use_cache: bool = True) -> _DecoderBase:
    src, valid = prepare_source(model, source, source_valid)
    cls = CachedDecoder if use_cache else RecomputeDecoder
    return cls(model, src, valid, bos_position)
