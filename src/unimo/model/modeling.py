"""The UNIMO unified-modal Transformer in Paddle dygraph, readable top to bottom.

Structure (official implementation: ``src/model/unimo_finetune.py`` + ``transformer_encoder.py``):

* text embeddings   word + position (positions start at 2, no segment embedding) -> LayerNorm(1e-5) -> dropout
* image embeddings  fc(region feature) + fc(5-d location) -> its own LayerNorm -> dropout
* sequence          [image ; object tags ; text]   (any part may be absent)
* encoder           post-LN Transformer, erf GELU, additive mask (mask - 1) * 1e4 from a 0/1 matrix
* poolers           text: [CLS] -> fc + ReLU; image: global row -> fc + ReLU
* LM head           fc + GELU -> LayerNorm -> tied word embedding + own bias
* task heads        classification / VE / retrieval match / VQA
* outputs           every task model's ``forward`` returns one dataclass (``UnimoClassificationOutput``,
                    ``UnimoVQAOutput``, ``UnimoRetrievalOutput``, ``UnimoGenerationOutput``): ``loss`` (None without
                    labels) + the logits/scores; per-run constants of a loss (label smoothing, retrieval group,
                    margin) are constructor arguments, saved with the checkpoint

Every parameter corresponds one-to-one to a variable of the official static graph; ``OFFICIAL_NAMES`` (and the
``official_name_map`` methods built on it) is the only place where that correspondence is written.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..utils.ops import smoothed_cross_entropy
from .configuration import CONFIG_NAME, UnimoConfig

WEIGHTS_NAME = "model_state.pdparams"  # PaddleNLP's pickle (earlier releases of this project, PaddleNLP models)
SAFE_WEIGHTS_NAME = "model.safetensors"  # the default: reading it runs no code (issue 14)
WEIGHTS_FORMATS = {"safetensors": SAFE_WEIGHTS_NAME, "pdparams": WEIGHTS_NAME}
MASK_NEG = -1e4  # official additive bias for blocked positions

# ----------------------------------------------------------------------------------------------------------------
# Official static-graph name  ->  local state-dict name (relative to the module that owns it). "{i}" = layer index.
# ----------------------------------------------------------------------------------------------------------------
OFFICIAL_NAMES: dict[str, dict[str, str]] = {
    "backbone": {
        "word_embedding": "word_embedding.weight",
        "pos_embedding": "pos_embedding.weight",
        "role_embedding": "role_embedding.weight",
        "turn_embedding": "turn_embedding.weight",
        "pre_encoder_layer_norm_scale": "pre_encoder_layer_norm.weight",
        "pre_encoder_layer_norm_bias": "pre_encoder_layer_norm.bias",
        "image_emb.w_0": "image_emb.weight",
        "image_emb.b_0": "image_emb.bias",
        "image_loc.w_0": "image_loc.weight",
        "image_loc.b_0": "image_loc.bias",
        "v_pre_encoder_layer_norm_scale": "v_pre_encoder_layer_norm.weight",
        "v_pre_encoder_layer_norm_bias": "v_pre_encoder_layer_norm.bias",
        "pooled_fc_text.w_0": "pooled_fc_text.weight",
        "pooled_fc_text.b_0": "pooled_fc_text.bias",
        "pooled_fc_image.w_0": "pooled_fc_image.weight",
        "pooled_fc_image.b_0": "pooled_fc_image.bias",
    },
    "layer": {
        "encoder_layer_{i}_multi_head_att_query_fc.w_0": "layers.{i}.query_fc.weight",
        "encoder_layer_{i}_multi_head_att_query_fc.b_0": "layers.{i}.query_fc.bias",
        "encoder_layer_{i}_multi_head_att_key_fc.w_0": "layers.{i}.key_fc.weight",
        "encoder_layer_{i}_multi_head_att_key_fc.b_0": "layers.{i}.key_fc.bias",
        "encoder_layer_{i}_multi_head_att_value_fc.w_0": "layers.{i}.value_fc.weight",
        "encoder_layer_{i}_multi_head_att_value_fc.b_0": "layers.{i}.value_fc.bias",
        "encoder_layer_{i}_multi_head_att_output_fc.w_0": "layers.{i}.output_fc.weight",
        "encoder_layer_{i}_multi_head_att_output_fc.b_0": "layers.{i}.output_fc.bias",
        "encoder_layer_{i}_post_att_layer_norm_scale": "layers.{i}.post_att_layer_norm.weight",
        "encoder_layer_{i}_post_att_layer_norm_bias": "layers.{i}.post_att_layer_norm.bias",
        "encoder_layer_{i}_ffn_fc_0.w_0": "layers.{i}.ffn_fc_0.weight",
        "encoder_layer_{i}_ffn_fc_0.b_0": "layers.{i}.ffn_fc_0.bias",
        "encoder_layer_{i}_ffn_fc_1.w_0": "layers.{i}.ffn_fc_1.weight",
        "encoder_layer_{i}_ffn_fc_1.b_0": "layers.{i}.ffn_fc_1.bias",
        "encoder_layer_{i}_post_ffn_layer_norm_scale": "layers.{i}.post_ffn_layer_norm.weight",
        "encoder_layer_{i}_post_ffn_layer_norm_bias": "layers.{i}.post_ffn_layer_norm.bias",
    },
    "lm_head": {
        "mask_lm_trans_fc.w_0": "mask_lm_trans_fc.weight",
        "mask_lm_trans_fc.b_0": "mask_lm_trans_fc.bias",
        "mask_lm_trans_layer_norm_scale": "mask_lm_trans_layer_norm.weight",
        "mask_lm_trans_layer_norm_bias": "mask_lm_trans_layer_norm.bias",
        "mask_lm_out_fc.b_0": "mask_lm_out_fc_bias",
    },
    # classification / regression: N = number of labels (regression: 1)
    "cls_head": {"cls_out_{n}_w": "cls_out.weight", "cls_out_{n}_b": "cls_out.bias"},
    "ve_head": {"cls_out_w_0": "cls_out_0.weight", "cls_out_b_0": "cls_out_0.bias",
                "cls_out_w_1": "cls_out_1.weight", "cls_out_b_1": "cls_out_1.bias"},
    "match_head": {"match_fc.w_0": "match_fc.weight", "match_fc.b_0": "match_fc.bias"},
    # Heads the official release never had (VQA): names in the official style so export-legacy can write them.
    "vqa_head": {"vqa_fc_0.w_0": "vqa_fc_0.weight", "vqa_fc_0.b_0": "vqa_fc_0.bias",
                 "vqa_layer_norm_scale": "vqa_layer_norm.weight", "vqa_layer_norm_bias": "vqa_layer_norm.bias",
                 "vqa_fc_1.w_0": "vqa_fc_1.weight", "vqa_fc_1.b_0": "vqa_fc_1.bias"},
}


def backbone_name_map(config: UnimoConfig, prefix: str = "") -> dict[str, str]:
    """Official name -> local state-dict key for the backbone (embeddings, encoder, poolers)."""
    mapping = {k: prefix + v for k, v in OFFICIAL_NAMES["backbone"].items()}
    if not config.role_type_size:
        mapping.pop("role_embedding")
    if not config.turn_type_size:
        mapping.pop("turn_embedding")
    for i in range(config.num_hidden_layers):
        for k, v in OFFICIAL_NAMES["layer"].items():
            mapping[k.format(i=i)] = prefix + v.format(i=i)
    return mapping


def _trunc_normal(std: float) -> nn.initializer.Initializer:
    # Paddle 3 takes absolute cut-offs a/b (default +-2.0, i.e. no truncation at std 0.02); fluid cut at 2 std.
    return nn.initializer.TruncatedNormal(mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)


def _linear(in_dim: int, out_dim: int, std: float) -> nn.Linear:
    """fc with the official init: TruncatedNormal(std) weight stored [in, out], zero bias."""
    return nn.Linear(in_dim, out_dim, weight_attr=paddle.ParamAttr(initializer=_trunc_normal(std)),
                     bias_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(0.0)))


def _activation(name: str):
    if name == "gelu":
        return lambda x: F.gelu(x, approximate=False)  # fluid gelu default: exact erf form
    if name == "gelu_new":
        return lambda x: F.gelu(x, approximate=True)
    return F.relu


# ----------------------------------------------------------------------------------------------------------------
# Incremental decoding cache
# ----------------------------------------------------------------------------------------------------------------
def cached_attention(q: paddle.Tensor, src_k: paddle.Tensor, src_v: paddle.Tensor, buf_k: paddle.Tensor,
                     buf_v: paddle.Tensor, bias: paddle.Tensor) -> paddle.Tensor:
    """Decoding attention of ``q`` [B, T, heads, head_dim] over ``[source ; buffer]`` keys/values (head-major,
    [B, heads, Ls, head_dim] and [B, heads, cap, head_dim]) in one softmax; ``bias`` [B, 1, T, Ls + cap] additive
    (the buffer's unwritten positions blocked). Returns [B, T, heads, head_dim].

    Shared by :class:`KVCache` and the exported decode step (``unimo.export``): no Python on tensor values, so the
    same sequence of operations runs in dygraph and in the exported static graph."""
    scale = 1.0 / float(q.shape[-1]) ** 0.5  # head_dim: a static dimension in both modes
    qh = q.transpose([0, 2, 1, 3]) * scale  # [B, H, T, D]
    ls = src_k.shape[2]
    scores = paddle.concat([paddle.matmul(qh, src_k, transpose_y=True),
                            paddle.matmul(qh, buf_k, transpose_y=True)], axis=-1)  # [B, H, T, ls + cap]
    probs = F.softmax(scores + bias, axis=-1)
    out = paddle.matmul(probs[:, :, :, :ls], src_v) + paddle.matmul(probs[:, :, :, ls:], buf_v)
    return out.transpose([0, 2, 1, 3])


class KVCache:
    """Per-layer projected keys/values for incremental decoding, kept head-major ([rows, heads, t, head_dim]).

    Two parts per layer:

    * the **source** part, written once by the first call (the encoding of the source, any length), attended with
      Paddle's fused attention in that call;
    * the **generated** part, a buffer preallocated in chunks of ``chunk`` positions and written in place (no
      concatenation of the whole cache per step). Decoding steps attend over ``[source ; buffer]`` in one softmax;
      the buffer's unwritten positions get the blocked bias (their weight is exactly 0).

    ``reorder(index)`` gathers rows (beam search parents, as the official ``gather_idx``). It skips the gather when
    ``index`` is the identity, and skips the source part whenever every row keeps the source it had (beam
    reordering only permutes hypotheses of one source, whose source keys/values are identical copies), which the
    cache tracks with a per-row source id on the host.

    The cache is an inference structure: decoding steps apply no attention dropout (the search functions run the
    model in eval mode anyway).
    """

    def __init__(self, num_layers: int, chunk: int = 16):
        self.num_layers = num_layers
        self.chunk = chunk
        self.src_k: list[Optional[paddle.Tensor]] = [None] * num_layers
        self.src_v: list[Optional[paddle.Tensor]] = [None] * num_layers
        self.gen_k: list[Optional[paddle.Tensor]] = [None] * num_layers
        self.gen_v: list[Optional[paddle.Tensor]] = [None] * num_layers
        self.gen_len = [0] * num_layers
        self.row_source = None  # numpy [rows]: which original source row each row's source part copies
        self._bias_key = None
        self._bias_pad = None

    @property
    def source_length(self) -> int:
        return 0 if self.src_k[0] is None else int(self.src_k[0].shape[2])

    @property
    def length(self) -> int:
        return self.source_length + self.gen_len[0]

    def attention(self, layer: int, q: paddle.Tensor, k: paddle.Tensor, v: paddle.Tensor,
                  attn_bias: Optional[paddle.Tensor]) -> paddle.Tensor:
        """Store this call's keys/values ([B, T, heads, head_dim]) and return attention over the whole cache
        ([B, T, heads, head_dim]); ``attn_bias`` [B, 1, T, cached + T] as for the full sequence."""
        if self.src_k[layer] is None:  # first call: the source
            self.src_k[layer] = k.transpose([0, 2, 1, 3])
            self.src_v[layer] = v.transpose([0, 2, 1, 3])
            if layer == 0:
                self.row_source = np.arange(int(k.shape[0]))
            return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)
        t = int(k.shape[1])
        g = self.gen_len[layer]
        kh, vh = k.transpose([0, 2, 1, 3]), v.transpose([0, 2, 1, 3])  # [B, H, T, D]
        buf_k, buf_v = self.gen_k[layer], self.gen_v[layer]
        cap = 0 if buf_k is None else int(buf_k.shape[2])
        if g + t > cap:  # grow by whole chunks (amortised; the old part is copied once)
            new_cap = cap + max(self.chunk, g + t - cap)
            shape = [int(kh.shape[0]), int(kh.shape[1]), new_cap, int(kh.shape[3])]
            nk, nv = paddle.zeros(shape, dtype=kh.dtype), paddle.zeros(shape, dtype=kh.dtype)
            if g:
                nk[:, :, :g] = buf_k[:, :, :g]
                nv[:, :, :g] = buf_v[:, :, :g]
            buf_k, buf_v, cap = nk, nv, new_cap
            self.gen_k[layer], self.gen_v[layer] = nk, nv
        buf_k[:, :, g:g + t] = kh  # in place
        buf_v[:, :, g:g + t] = vh
        self.gen_len[layer] = g + t
        ls = int(self.src_k[layer].shape[2])
        bias = self._padded_bias(attn_bias, q, ls + cap)
        return cached_attention(q, self.src_k[layer], self.src_v[layer], buf_k, buf_v, bias)

    def _padded_bias(self, attn_bias: Optional[paddle.Tensor], q: paddle.Tensor, width: int) -> paddle.Tensor:
        """The caller's bias [B, 1, T, ls + g + T] padded to the buffer width with the blocked value (built once per
        call of the model: every layer gets the same bias object)."""
        # the key holds a reference to the bias, so its identity cannot be reused by a later call's bias
        if self._bias_key is not None and self._bias_key[0] is attn_bias and self._bias_key[1] == width:
            return self._bias_pad
        b, t = int(q.shape[0]), int(q.shape[1])
        attn_bias_in = attn_bias
        if attn_bias is None:
            attn_bias = paddle.zeros([b, 1, t, self.length], dtype=q.dtype)
        have = int(attn_bias.shape[-1])
        if have > width:
            raise ValueError(f"attention bias covers {have} keys, the cache holds {width}")
        if have < width:
            pad = paddle.full(list(attn_bias.shape[:-1]) + [width - have], MASK_NEG, dtype=attn_bias.dtype)
            attn_bias = paddle.concat([attn_bias, pad], axis=-1)
        self._bias_key, self._bias_pad = (attn_bias_in, width), attn_bias
        return attn_bias

    def reorder(self, index: Any) -> None:
        if self.src_k[0] is None:
            return
        idx = index.numpy() if isinstance(index, paddle.Tensor) else np.asarray(index)
        idx = idx.astype(np.int64).reshape(-1)
        rows = len(self.row_source)
        if len(idx) == rows and np.array_equal(idx, np.arange(rows)):
            return  # parents are the identity: nothing moves
        new_source = self.row_source[idx]
        keep_source = len(idx) == rows and np.array_equal(new_source, self.row_source)
        index_t = paddle.to_tensor(idx)
        for i in range(self.num_layers):
            if not keep_source:
                self.src_k[i] = paddle.gather(self.src_k[i], index_t, axis=0)
                self.src_v[i] = paddle.gather(self.src_v[i], index_t, axis=0)
            if self.gen_k[i] is not None:
                g = self.gen_len[i]
                # only the written positions move; a freshly gathered buffer keeps its width for the next writes
                self.gen_k[i] = paddle.gather(self.gen_k[i], index_t, axis=0) if g else \
                    paddle.zeros([len(idx)] + list(self.gen_k[i].shape[1:]), dtype=self.gen_k[i].dtype)
                self.gen_v[i] = paddle.gather(self.gen_v[i], index_t, axis=0) if g else \
                    paddle.zeros([len(idx)] + list(self.gen_v[i].shape[1:]), dtype=self.gen_v[i].dtype)
        self.row_source = new_source
        self._bias_key = None


# ----------------------------------------------------------------------------------------------------------------
# Training-step kernels
# ----------------------------------------------------------------------------------------------------------------
# Issue 16 (bench/bench_model_step.py, paddle.profiler on a base-size step): Paddle's CPU gradient of a broadcast bias
# add (a row reduction, plus a copy of the incoming gradient) took ~1/14 of the step, and dropout + residual add
# ran as two slow elementwise passes. While training, the encoder layers therefore use a linear whose bias gradient
# is ones[1, rows] @ dy (one matmul), and Paddle's fused dropout + add (same random mask as F.dropout for the same
# generator state: identical outputs). The forward values are those of F.linear / x + F.dropout; eval and decoding
# (and the exported programs) take the plain path. False restores the plain path everywhere (the reference the tests
# compare against).
TRAINING_FAST_PATH = True


class _RowBias(paddle.autograd.PyLayer):
    """``bias`` [n] broadcast to ``shape`` [..., n]; backward: the bias gradient as ones[1, rows] @ dy.

    The bias is this PyLayer's only tensor input on purpose. Paddle requires a PyLayer's backward to return None at
    every input whose gradient the running backward does not want, and a partial backward
    (``paddle.grad(loss, [input perturbation])``, VILLA's ascent step) prunes the parameter edges while the
    activation edge stays: a PyLayer taking (x, weight, bias) cannot tell from its Python backward which of them
    are wanted and fails there. With one input the node is either pruned as a whole or wanted."""

    @staticmethod
    def forward(ctx, bias, shape):
        return paddle.expand(bias, shape)

    @staticmethod
    def backward(ctx, dy):
        n = dy.shape[-1]
        dy2 = dy.reshape([-1, n])
        # differentiable ops only, so a create_graph backward through it stays correct
        return paddle.matmul(paddle.ones([1, dy2.shape[0]], dtype=dy.dtype), dy2).reshape([n])


def _linear_row_bias(x: paddle.Tensor, weight: paddle.Tensor, bias: paddle.Tensor) -> paddle.Tensor:
    """F.linear(x, weight, bias), bit for bit, with a one-GEMM bias gradient: the x @ weight product is Paddle's own
    matmul (its backward is F.linear's: the same GEMMs, and it prunes correctly under paddle.grad); only the bias
    broadcast goes through :class:`_RowBias`, and the add of two equal-shaped tensors has no reduction."""
    if bias.stop_gradient:  # frozen bias: nothing to speed up
        return F.linear(x, weight, bias)
    y = paddle.matmul(x, weight)
    if bias.dtype != y.dtype:  # autocast ran the matmul in half precision; F.linear casts its bias the same way
        bias = bias.astype(y.dtype)
    return y + _RowBias.apply(bias, y.shape)


def _residual_dropout(x: paddle.Tensor, y: paddle.Tensor, p: float, training: bool, fast: bool) -> paddle.Tensor:
    """x + dropout(y) (post-LN residual)."""
    if fast and training and p > 0.0:
        from paddle.incubate.nn.functional import fused_dropout_add

        return fused_dropout_add(y, x, p=p, training=True)
    return x + F.dropout(y, p, training=training)


# ----------------------------------------------------------------------------------------------------------------
# Encoder layer
# ----------------------------------------------------------------------------------------------------------------
class UnimoEncoderLayer(nn.Layer):
    """Post-LN block: x = LN(x + Drop(Attn(x))); x = LN(x + Drop(FFN(x)))."""

    def __init__(self, config: UnimoConfig):
        super().__init__()
        h, std = config.hidden_size, config.initializer_range
        self.num_heads, self.head_dim = config.num_attention_heads, config.head_dim
        self.query_fc = _linear(h, h, std)
        self.key_fc = _linear(h, h, std)
        self.value_fc = _linear(h, h, std)
        self.output_fc = _linear(h, h, std)
        self.post_att_layer_norm = nn.LayerNorm(h, epsilon=config.layer_norm_eps)
        self.ffn_fc_0 = _linear(h, 4 * h, std)
        self.ffn_fc_1 = _linear(4 * h, h, std)
        self.post_ffn_layer_norm = nn.LayerNorm(h, epsilon=config.layer_norm_eps)
        self.act = _activation(config.hidden_act)
        self.hidden_dropout = config.hidden_dropout_prob
        self.attention_dropout = config.attention_probs_dropout_prob

    def freeze_fused_qkv(self, frozen: bool) -> None:
        """Keep the concatenated Q/K/V weight while ``frozen`` (decoding: the weights cannot change, and rebuilding
        it every step was ~25% of a decoding step). Unfreeze before training or loading weights."""
        self._fused_qkv = self._fused_qkv_weights() if frozen else None

    def _fused_qkv_weights(self) -> tuple[paddle.Tensor, paddle.Tensor]:
        w = paddle.concat([self.query_fc.weight, self.key_fc.weight, self.value_fc.weight], axis=1)
        b = paddle.concat([self.query_fc.bias, self.key_fc.bias, self.value_fc.bias], axis=0)
        return w, b

    def _qkv(self, x: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor]:
        # One fused GEMM for Q, K and V (3x fewer kernel launches and a better-shaped matmul); the parameters stay
        # separate so they map one-to-one to the official variables.
        w, b = self._fused_qkv if getattr(self, "_fused_qkv", None) is not None else self._fused_qkv_weights()
        qkv = _linear_row_bias(x, w, b) if self._fast_training() else F.linear(x, w, b)
        shape = [0, 0, 3, self.num_heads, self.head_dim]
        qkv = qkv.reshape(shape)
        return qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]

    def _fast_training(self) -> bool:
        return TRAINING_FAST_PATH and self.training and paddle.is_grad_enabled()

    def _fc(self, layer: nn.Linear, x: paddle.Tensor, fast: bool) -> paddle.Tensor:
        return _linear_row_bias(x, layer.weight, layer.bias) if fast else layer(x)

    def forward(self, x: paddle.Tensor, attn_bias: Optional[paddle.Tensor], cache: Optional[KVCache] = None,
                layer_index: int = 0) -> paddle.Tensor:
        fast = self._fast_training()
        q, k, v = self._qkv(x)  # [B, T, heads, head_dim]
        if cache is not None:
            attn = cache.attention(layer_index, q, k, v, attn_bias)
        else:
            attn = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_bias, dropout_p=self.attention_dropout if self.training else 0.0,
                training=self.training)
        attn = self._fc(self.output_fc, attn.reshape([0, 0, self.num_heads * self.head_dim]), fast)
        x = self.post_att_layer_norm(_residual_dropout(x, attn, self.hidden_dropout, self.training, fast))
        ffn = self._fc(self.ffn_fc_1, self.act(self._fc(self.ffn_fc_0, x, fast)), fast)
        return self.post_ffn_layer_norm(_residual_dropout(x, ffn, self.hidden_dropout, self.training, fast))


# ----------------------------------------------------------------------------------------------------------------
# Pretrained-model plumbing (save / load / official names)
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class LoadReport:
    missing: list[str]
    unexpected: list[str]

    def __str__(self) -> str:
        return f"missing={self.missing} unexpected={self.unexpected}"


def find_weights(directory: str) -> Optional[str]:
    """The weights file ``from_pretrained`` reads in ``directory``: ``model.safetensors`` if present, else
    ``model_state.pdparams``, else None."""
    for name in (SAFE_WEIGHTS_NAME, WEIGHTS_NAME):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def read_weights(path: str, trust_pickle: bool = False) -> dict[str, np.ndarray]:
    """{name: array} from a ``.safetensors`` file, or from a ``.pdparams`` through the restricted unpickler
    (numpy arrays only; a pickle needing any other global is refused naming the file and the global) unless
    ``trust_pickle``."""
    from ..utils.safe_load import load_pdparams, load_safetensors

    if path.endswith(".safetensors"):
        return load_safetensors(path)
    return load_pdparams(path, trust_pickle=trust_pickle)


class UnimoPretrainedModel(nn.Layer):
    """Base class: ``save_pretrained`` / ``from_pretrained`` in the PaddleNLP layout (``model_config.json`` +
    ``model.safetensors``, or ``model_state.pdparams`` when asked) and the official-name map."""

    base_model_prefix = "unimo"
    config: UnimoConfig

    def init_kwargs(self) -> dict[str, Any]:
        """Constructor arguments besides the config (saved into the config so ``from_pretrained`` rebuilds it)."""
        return {}

    def official_name_map(self) -> dict[str, str]:
        raise NotImplementedError

    def save_pretrained(self, directory: str, weights_format: str = "safetensors") -> None:
        """Write atomically: into a temporary directory whose files replace the checkpoint's at the end (no partial
        checkpoint; other files of ``directory`` are left alone). ``weights_format``: ``safetensors`` (default,
        ``model.safetensors``; names and arrays as ``state_dict()``) or ``pdparams`` (``model_state.pdparams`` via
        ``paddle.save``, for PaddleNLP tools that only read that)."""
        from ..utils.io import atomic_directory

        if weights_format not in WEIGHTS_FORMATS:
            raise ValueError(f"weights_format must be one of {sorted(WEIGHTS_FORMATS)}, not {weights_format!r}")
        with atomic_directory(directory) as tmp:
            config = self.config.copy()
            config.extra = dict(config.extra, architecture=type(self).__name__, init_kwargs=self.init_kwargs())
            config.save_pretrained(tmp)
            path = os.path.join(tmp, WEIGHTS_FORMATS[weights_format])
            if weights_format == "pdparams":
                paddle.save(self.state_dict(), path)
            else:
                from ..utils.safe_load import save_safetensors

                save_safetensors({k: v.numpy() for k, v in self.state_dict().items()}, path)

    @classmethod
    def from_pretrained(cls, directory: str, config: Optional[UnimoConfig] = None, strict: bool = False,
                        trust_pickle: bool = False, **kwargs: Any) -> "UnimoPretrainedModel":
        """Build from ``directory`` and load its weights (``model.safetensors`` preferred; a ``model_state.pdparams``
        is read through the restricted unpickler unless ``trust_pickle``: see :func:`read_weights`). A backbone
        checkpoint loads into a task model (heads stay initialised) and a task checkpoint loads into the backbone
        (heads ignored); ``model.load_report`` lists both. ``strict=True`` raises instead."""
        config = config or UnimoConfig.from_pretrained(directory)
        saved_kwargs = dict(config.extra.get("init_kwargs", {})) if config.extra.get("architecture") == cls.__name__ \
            else {}
        saved_kwargs.update(kwargs)
        path = find_weights(directory)
        if path is None:
            raise FileNotFoundError(f"no {SAFE_WEIGHTS_NAME} or {WEIGHTS_NAME} in {directory}")
        state = read_weights(path, trust_pickle=trust_pickle)  # before building: a refused file costs nothing
        model = cls(config, **saved_kwargs)
        model.load_report = model.load_weights(state, strict=strict)
        return model

    def load_weights(self, state: dict[str, Any], strict: bool = False) -> LoadReport:
        own = self.state_dict()
        prefix = self.base_model_prefix + "."
        is_task_model = isinstance(getattr(self, self.base_model_prefix, None), UnimoModel)
        adapted: dict[str, Any] = {}
        for key, value in state.items():
            if key not in own:
                if is_task_model and prefix + key in own:
                    key = prefix + key  # backbone checkpoint -> task model
                elif key.startswith(prefix) and key[len(prefix):] in own:
                    key = key[len(prefix):]  # task checkpoint -> backbone
            adapted[key] = value
        unexpected = sorted(k for k in adapted if k not in own)
        missing = sorted(k for k in own if k not in adapted)
        mismatched = [f"{k}: checkpoint {list(adapted[k].shape)} vs model {list(own[k].shape)}"
                      for k in adapted if k in own and list(adapted[k].shape) != list(own[k].shape)]
        if mismatched:
            raise ValueError("shape mismatch while loading weights: " + "; ".join(mismatched))
        if strict and (missing or unexpected):
            raise ValueError(f"strict load failed: missing {missing}, unexpected {unexpected}")
        self.set_state_dict({k: v for k, v in adapted.items() if k in own})
        return LoadReport(missing=missing, unexpected=unexpected)


# ----------------------------------------------------------------------------------------------------------------
# The backbone
# ----------------------------------------------------------------------------------------------------------------
class UnimoModel(UnimoPretrainedModel):
    """Embeddings + encoder + poolers.

    ``forward`` returns the sequence output [B, T, H] with image rows first, then object tags, then text.
    ``attention_mask`` is a 0/1 matrix [B, T, T_keys] (1 = may attend), T_keys including cached positions.
    """

    def __init__(self, config: UnimoConfig):
        super().__init__()
        self.config = config
        h, std = config.hidden_size, config.initializer_range
        emb_attr = lambda: paddle.ParamAttr(initializer=_trunc_normal(std))  # noqa: E731
        self.word_embedding = nn.Embedding(config.vocab_size, h, weight_attr=emb_attr())
        self.pos_embedding = nn.Embedding(config.max_position_embeddings, h, weight_attr=emb_attr())
        if config.role_type_size:
            self.role_embedding = nn.Embedding(config.role_type_size, h, weight_attr=emb_attr())
        if config.turn_type_size:
            self.turn_embedding = nn.Embedding(config.turn_type_size, h, weight_attr=emb_attr())
        self.pre_encoder_layer_norm = nn.LayerNorm(h, epsilon=config.layer_norm_eps)
        self.image_emb = _linear(config.image_embedding_size, h, std)
        self.image_loc = _linear(5, h, std)
        self.v_pre_encoder_layer_norm = nn.LayerNorm(h, epsilon=config.layer_norm_eps)
        self.layers = nn.LayerList([UnimoEncoderLayer(config) for _ in range(config.num_hidden_layers)])
        self.pooled_fc_text = _linear(h, h, std)
        self.pooled_fc_image = _linear(h, h, std)
        self.dropout = config.hidden_dropout_prob
        # activation recomputation per encoder layer while training (less memory, ~1/3 more compute); PaddleNLP's
        # Trainer switches it on (``recompute: true``) on every sub-layer that has this attribute
        self.enable_recompute = False

    def official_name_map(self) -> dict[str, str]:
        return backbone_name_map(self.config)

    # -------------------------------------------------------------- embeddings
    def embed_text_raw(self, input_ids: paddle.Tensor, position_ids: paddle.Tensor,
                       role_ids: Optional[paddle.Tensor] = None,
                       turn_ids: Optional[paddle.Tensor] = None) -> paddle.Tensor:
        """word + position (+ role + turn) before LayerNorm: where the official adversarial delta is added."""
        emb = self.word_embedding(input_ids) + self.pos_embedding(position_ids)
        if role_ids is not None and self.config.role_type_size:
            emb = emb + self.role_embedding(role_ids)
        if turn_ids is not None and self.config.turn_type_size:
            emb = emb + self.turn_embedding(turn_ids)
        return emb

    def embed_text(self, raw: paddle.Tensor) -> paddle.Tensor:
        return F.dropout(self.pre_encoder_layer_norm(raw), self.dropout, training=self.training)

    def embed_image(self, image_features: paddle.Tensor, image_locations: paddle.Tensor) -> paddle.Tensor:
        emb = self.image_emb(image_features) + self.image_loc(image_locations)
        return F.dropout(self.v_pre_encoder_layer_norm(emb), self.dropout, training=self.training)

    # -------------------------------------------------------------- forward
    def forward(self, input_ids: Optional[paddle.Tensor] = None, position_ids: Optional[paddle.Tensor] = None,
                image_features: Optional[paddle.Tensor] = None, image_locations: Optional[paddle.Tensor] = None,
                attention_mask: Optional[paddle.Tensor] = None, obj_input_ids: Optional[paddle.Tensor] = None,
                obj_position_ids: Optional[paddle.Tensor] = None, role_ids: Optional[paddle.Tensor] = None,
                turn_ids: Optional[paddle.Tensor] = None, text_embedding_delta: Optional[paddle.Tensor] = None,
                image_feature_delta: Optional[paddle.Tensor] = None,
                cache: Optional[KVCache] = None) -> paddle.Tensor:
        parts = []
        if image_features is not None:
            if image_locations is None:
                raise ValueError("image_features given without image_locations")
            feats = image_features if image_feature_delta is None else image_features + image_feature_delta
            parts.append(self.embed_image(feats, image_locations))
        if obj_input_ids is not None:
            parts.append(self.embed_text(self.embed_text_raw(obj_input_ids, obj_position_ids)))
        if input_ids is not None:
            if position_ids is None:
                position_ids = paddle.arange(2, 2 + input_ids.shape[1], dtype="int64").expand_as(input_ids)
            raw = self.embed_text_raw(input_ids, position_ids, role_ids, turn_ids)
            if text_embedding_delta is not None:
                raw = raw + text_embedding_delta
            parts.append(self.embed_text(raw))
        if not parts:
            raise ValueError("UnimoModel needs input_ids and/or image_features")
        x = parts[0] if len(parts) == 1 else paddle.concat(parts, axis=1)

        if attention_mask is None:
            attn_bias = None  # every position sees every other (and every cached) position
        else:
            mask = attention_mask.astype(x.dtype)
            if mask.ndim == 2:  # [B, T_keys] validity row -> same row for every query
                mask = mask.unsqueeze(1)
            attn_bias = ((1.0 - mask) * MASK_NEG).unsqueeze(1)  # [B, 1, T, T_keys]: 0 visible, -1e4 blocked
        recompute = None
        if self.enable_recompute and self.training and cache is None and not x.stop_gradient:
            from paddle.distributed.fleet.utils import recompute
        for i, layer in enumerate(self.layers):
            if recompute is not None:
                x = recompute(layer, x, attn_bias, use_reentrant=False)
            else:
                x = layer(x, attn_bias, cache, i)
        return x

    def freeze_fused_qkv(self, frozen: bool) -> None:
        """See :meth:`UnimoEncoderLayer.freeze_fused_qkv` (used by the decoders for the duration of a search)."""
        for layer in self.layers:
            layer.freeze_fused_qkv(frozen)

    def init_cache(self) -> KVCache:
        return KVCache(self.config.num_hidden_layers)

    # -------------------------------------------------------------- poolers
    def pool_text(self, sequence_output: paddle.Tensor, text_start: int = 0) -> paddle.Tensor:
        """ReLU(fc(h[CLS])); ``text_start`` = index of the text [CLS] (= number of image/object rows)."""
        return F.relu(self.pooled_fc_text(sequence_output[:, text_start]))

    def pool_image(self, sequence_output: paddle.Tensor) -> paddle.Tensor:
        """ReLU(fc(h[IMG])): row 0 is the global (mean) region."""
        return F.relu(self.pooled_fc_image(sequence_output[:, 0]))


# ----------------------------------------------------------------------------------------------------------------
# Outputs: every task model's forward returns one of these
# ----------------------------------------------------------------------------------------------------------------
@dataclass(eq=False, kw_only=True)
class UnimoOutput(dict):
    """Base of the task models' outputs (the HF / PaddleNLP ``ModelOutput`` idea): fields are read as attributes
    (``out.loss``, ``out.logits``), and the fields that are set are also the object's mapping items. The mapping is
    not decoration: ``paddle.DataParallel`` looks for a model's output tensors in tuples, lists and dicts only, and
    its reducer fails on the first backward ("parameter ... has been ready before") when it finds none.

    ``loss`` is None when the batch has no labels; ``loss_parts`` (optional) names partial losses, which the trainer
    averages and logs per name."""

    loss: Optional[paddle.Tensor] = None
    loss_parts: Optional[dict[str, paddle.Tensor]] = None

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in self.__dataclass_fields__:
            if value is None:
                self.pop(name, None)
            else:
                dict.__setitem__(self, name, value)


@dataclass(eq=False, kw_only=True)
class UnimoClassificationOutput(UnimoOutput):
    """:class:`UnimoForSequenceClassification` (logits [B, N]; N = 1: the regression value) and
    :class:`UnimoForVisualEntailment` (logits [B, 3]). ``loss``: softmax CE (regression: mean squared error)."""

    logits: paddle.Tensor


@dataclass(eq=False, kw_only=True)
class UnimoVQAOutput(UnimoOutput):
    """:class:`UnimoForVQA`: ``logits`` [B, num_answers], one independent sigmoid per answer (the estimated VQA
    accuracy of the answer); ``loss``: BCE against the soft scores, times the number of answers."""

    logits: paddle.Tensor


@dataclass(eq=False, kw_only=True)
class UnimoRetrievalOutput(UnimoOutput):
    """:class:`UnimoForRetrieval`: match ``scores`` [B] (higher = better match); ``loss``: the official circle loss
    over the training groups."""

    scores: paddle.Tensor


@dataclass(eq=False, kw_only=True)
class UnimoGenerationOutput(UnimoOutput):
    """:class:`UnimoForGeneration`: ``logits`` of the tied LM head at ``label_positions`` [N, V] (at every position,
    [B, T, V], when none are given), ``sequence_output`` [B, T, H]; ``loss``: label-smoothed CE over the labels."""

    logits: paddle.Tensor
    sequence_output: paddle.Tensor


# ----------------------------------------------------------------------------------------------------------------
# Heads
# ----------------------------------------------------------------------------------------------------------------
class UnimoLMHead(nn.Layer):
    """fc + GELU -> LayerNorm -> logits with the tied word embedding and its own bias."""

    def __init__(self, config: UnimoConfig, word_embedding: nn.Embedding):
        super().__init__()
        h = config.hidden_size
        self.mask_lm_trans_fc = _linear(h, h, config.initializer_range)
        self.mask_lm_trans_layer_norm = nn.LayerNorm(h, epsilon=config.layer_norm_eps)
        self.mask_lm_out_fc_bias = self.create_parameter(
            [config.vocab_size], is_bias=True, default_initializer=nn.initializer.Constant(0.0))
        self.act = _activation(config.hidden_act)
        self._word_embedding = [word_embedding]  # a list: not registered twice as a sub-layer

    def forward(self, hidden: paddle.Tensor) -> paddle.Tensor:
        h = self.mask_lm_trans_layer_norm(self.act(self.mask_lm_trans_fc(hidden)))
        return paddle.matmul(h, self._word_embedding[0].weight, transpose_y=True) + self.mask_lm_out_fc_bias


def label_smoothed_cross_entropy(logits: paddle.Tensor, labels: paddle.Tensor, epsilon: float = 0.0) -> paddle.Tensor:
    """Mean over tokens of CE against (1 - eps) * onehot + eps / V (official seq2seq/img2txt soft labels)."""
    return smoothed_cross_entropy(logits, labels, max(0.0, epsilon)).mean()


def _prefixed(mapping: dict[str, str], prefix: str) -> dict[str, str]:
    return {k: prefix + v for k, v in mapping.items()}


def _check_fraction(name: str, value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


class UnimoForGeneration(UnimoPretrainedModel):
    """Backbone + tied LM head: text seq2seq (CNN/DM, Gigaword, SQuAD-QG, CoQA) and image captioning.

    ``label_smoothing`` (official ``label_smooth``, 0.1 in the fine-tuning scripts) is a per-run constant of the
    loss, saved with the checkpoint."""

    def __init__(self, config: UnimoConfig, label_smoothing: float = 0.0):
        super().__init__()
        self.config = config
        self.label_smoothing = _check_fraction("label_smoothing", label_smoothing)
        self.unimo = UnimoModel(config)
        self.lm_head = UnimoLMHead(config, self.unimo.word_embedding)

    def init_kwargs(self) -> dict[str, Any]:
        return {"label_smoothing": self.label_smoothing}

    def official_name_map(self) -> dict[str, str]:
        return {**backbone_name_map(self.config, "unimo."), **_prefixed(OFFICIAL_NAMES["lm_head"], "lm_head.")}

    def forward(self, input_ids: Optional[paddle.Tensor] = None, position_ids: Optional[paddle.Tensor] = None,
                image_features: Optional[paddle.Tensor] = None, image_locations: Optional[paddle.Tensor] = None,
                attention_mask: Optional[paddle.Tensor] = None, obj_input_ids: Optional[paddle.Tensor] = None,
                obj_position_ids: Optional[paddle.Tensor] = None, role_ids: Optional[paddle.Tensor] = None,
                turn_ids: Optional[paddle.Tensor] = None, text_embedding_delta: Optional[paddle.Tensor] = None,
                image_feature_delta: Optional[paddle.Tensor] = None, labels: Optional[paddle.Tensor] = None,
                label_positions: Optional[paddle.Tensor] = None) -> UnimoGenerationOutput:
        """``label_positions`` [N]: flattened indices into [B*T] (the official ``tgt_pos``) where the LM head is
        applied; with ``labels`` [N] (the token each position predicts), the label-smoothed cross-entropy.
        ``text_embedding_delta`` / ``image_feature_delta``: see :meth:`UnimoModel.forward` (VILLA)."""
        seq = self.unimo(input_ids=input_ids, position_ids=position_ids, image_features=image_features,
                         image_locations=image_locations, attention_mask=attention_mask, obj_input_ids=obj_input_ids,
                         obj_position_ids=obj_position_ids, role_ids=role_ids, turn_ids=turn_ids,
                         text_embedding_delta=text_embedding_delta, image_feature_delta=image_feature_delta)
        if label_positions is None:
            if labels is not None:
                raise ValueError("labels need label_positions (the flattened [B*T] index each label is predicted at)")
            return UnimoGenerationOutput(logits=self.lm_head(seq), sequence_output=seq)
        hidden = paddle.gather(seq.reshape([-1, seq.shape[-1]]), label_positions.reshape([-1]), axis=0)
        logits = self.lm_head(hidden)
        loss = None if labels is None else label_smoothed_cross_entropy(logits, labels.reshape([-1]),
                                                                        self.label_smoothing)
        return UnimoGenerationOutput(loss=loss, logits=logits, sequence_output=seq)


class UnimoForSequenceClassification(UnimoPretrainedModel):
    """Text pooler -> dropout -> ``cls_out_{N}``: GLUE classification (N labels) and regression (N = 1)."""

    def __init__(self, config: UnimoConfig, num_labels: int = 2):
        super().__init__()
        self.config, self.num_labels = config, num_labels
        self.unimo = UnimoModel(config)
        self.cls_out = _linear(config.hidden_size, num_labels, config.initializer_range)

    def init_kwargs(self) -> dict[str, Any]:
        return {"num_labels": self.num_labels}

    def official_name_map(self) -> dict[str, str]:
        head = {k.format(n=self.num_labels): v for k, v in OFFICIAL_NAMES["cls_head"].items()}
        return {**backbone_name_map(self.config, "unimo."), **head}

    def forward(self, input_ids: paddle.Tensor, position_ids: Optional[paddle.Tensor] = None,
                attention_mask: Optional[paddle.Tensor] = None,
                text_embedding_delta: Optional[paddle.Tensor] = None,
                labels: Optional[paddle.Tensor] = None) -> UnimoClassificationOutput:
        """Logits [B, N]; with ``labels``, the loss: softmax CE (classification) or mean squared error (regression,
        N = 1), as the official heads."""
        seq = self.unimo(input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask,
                         text_embedding_delta=text_embedding_delta)
        pooled = F.dropout(self.unimo.pool_text(seq), self.config.hidden_dropout_prob, training=self.training)
        logits = self.cls_out(pooled)
        loss = None
        if labels is not None:
            if self.num_labels == 1:
                loss = F.mse_loss(logits.squeeze(-1), labels.astype(logits.dtype))
            else:
                loss = F.cross_entropy(logits, labels.reshape([-1]).astype("int64"))
        return UnimoClassificationOutput(loss=loss, logits=logits)


class UnimoForVisualEntailment(UnimoPretrainedModel):
    """(pooled text + pooled image) -> fc 2048 (no activation, as official) -> dropout -> fc 3."""

    def __init__(self, config: UnimoConfig, num_labels: int = 3, hidden: int = 2048):
        super().__init__()
        self.config, self.num_labels, self.hidden = config, num_labels, hidden
        self.unimo = UnimoModel(config)
        self.cls_out_0 = _linear(config.hidden_size, hidden, config.initializer_range)
        self.cls_out_1 = _linear(hidden, num_labels, config.initializer_range)

    def init_kwargs(self) -> dict[str, Any]:
        return {"num_labels": self.num_labels, "hidden": self.hidden}

    def official_name_map(self) -> dict[str, str]:
        return {**backbone_name_map(self.config, "unimo."), **OFFICIAL_NAMES["ve_head"]}

    def forward(self, input_ids: paddle.Tensor, image_features: paddle.Tensor, image_locations: paddle.Tensor,
                position_ids: Optional[paddle.Tensor] = None, attention_mask: Optional[paddle.Tensor] = None,
                text_embedding_delta: Optional[paddle.Tensor] = None,
                image_feature_delta: Optional[paddle.Tensor] = None,
                labels: Optional[paddle.Tensor] = None) -> UnimoClassificationOutput:
        """Logits [B, 3]; with ``labels``, the softmax CE. Image rows come first in the sequence."""
        seq = self.unimo(input_ids=input_ids, position_ids=position_ids, image_features=image_features,
                         image_locations=image_locations, attention_mask=attention_mask,
                         text_embedding_delta=text_embedding_delta, image_feature_delta=image_feature_delta)
        fused = self.unimo.pool_text(seq, image_features.shape[1]) + self.unimo.pool_image(seq)
        h = F.dropout(self.cls_out_0(fused), self.config.hidden_dropout_prob, training=self.training)
        logits = self.cls_out_1(h)
        loss = None if labels is None else F.cross_entropy(logits, labels.reshape([-1]).astype("int64"))
        return UnimoClassificationOutput(loss=loss, logits=logits)


class UnimoForRetrieval(UnimoPretrainedModel):
    """score = match_fc(dropout(pooled_text * pooled_image)) (official fusion "mul").

    Training rows come in groups of ``1 + negative_images + negative_captions`` (official layout: the positive pair,
    then the caption with other images, then the image with other captions); ``margin`` / ``scale`` are the circle
    loss's (official 0.2 / 1.0). All four are per-run constants, saved with the checkpoint."""

    def __init__(self, config: UnimoConfig, margin: float = 0.2, scale: float = 1.0, negative_images: int = 10,
                 negative_captions: int = 10):
        super().__init__()
        for name, value in (("negative_images", negative_images), ("negative_captions", negative_captions)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if negative_images + negative_captions == 0:
            raise ValueError("the circle loss needs negatives: negative_images + negative_captions must be >= 1")
        self.config, self.margin, self.scale = config, float(margin), float(scale)
        self.negative_images, self.negative_captions = negative_images, negative_captions
        self.unimo = UnimoModel(config)
        # official initialisers (retrieval.py:105-113): weight Xavier, bias fluid's UniformInitializer with its
        # defaults low=-1.0, high=1.0 (spec section 2, match_fc.b_0: "Xavier / Uniform init")
        self.match_fc = nn.Linear(config.hidden_size, 1, weight_attr=paddle.ParamAttr(
            initializer=nn.initializer.XavierUniform()), bias_attr=paddle.ParamAttr(
            initializer=nn.initializer.Uniform(low=-1.0, high=1.0)))

    @property
    def group_size(self) -> int:
        return 1 + self.negative_images + self.negative_captions

    def official_name_map(self) -> dict[str, str]:
        return {**backbone_name_map(self.config, "unimo."), **OFFICIAL_NAMES["match_head"]}

    def init_kwargs(self) -> dict[str, Any]:
        return {"margin": self.margin, "scale": self.scale, "negative_images": self.negative_images,
                "negative_captions": self.negative_captions}

    def forward(self, input_ids: paddle.Tensor, image_features: paddle.Tensor, image_locations: paddle.Tensor,
                position_ids: Optional[paddle.Tensor] = None, attention_mask: Optional[paddle.Tensor] = None,
                text_embedding_delta: Optional[paddle.Tensor] = None,
                image_feature_delta: Optional[paddle.Tensor] = None,
                labels: Optional[paddle.Tensor] = None) -> UnimoRetrievalOutput:
        """Scores [B]; with ``labels`` (1 for the positive row of each group, 0 for its negatives: the rows must
        come in :attr:`group_size` groups), the official circle loss averaged over the two negative kinds."""
        seq = self.unimo(input_ids=input_ids, position_ids=position_ids, image_features=image_features,
                         image_locations=image_locations, attention_mask=attention_mask,
                         text_embedding_delta=text_embedding_delta, image_feature_delta=image_feature_delta)
        fused = self.unimo.pool_text(seq, image_features.shape[1]) * self.unimo.pool_image(seq)
        fused = F.dropout(fused, self.config.attention_probs_dropout_prob, training=self.training)
        scores = self.match_fc(fused).squeeze(-1)
        if labels is None:
            return UnimoRetrievalOutput(scores=scores)
        group = self.group_size
        if scores.shape[0] % group:
            raise ValueError(f"{scores.shape[0]} rows are not groups of {group} (1 positive + {self.negative_images} "
                             f"negative images + {self.negative_captions} negative captions)")
        layout = labels.reshape([-1, group])
        if not (bool((layout[:, 0] == 1).all()) and bool((layout[:, 1:] == 0).all())):
            raise ValueError(f"retrieval labels must be 1 for the first row of each group of {group} (the positive) "
                             "and 0 for its negatives")
        grouped = scores.reshape([-1, group]).astype("float64")
        pos, negs = grouped[:, :1], grouped[:, 1:]
        kinds = [negs[:, :self.negative_images], negs[:, self.negative_images:]]
        terms = [circle_loss(pos, n, self.margin, self.scale) for n in kinds if n.shape[1]]
        loss = terms[0] if len(terms) == 1 else (terms[0] + terms[1]) / 2
        return UnimoRetrievalOutput(loss=loss.astype("float32"), scores=scores)


def circle_loss(sp: paddle.Tensor, sn: paddle.Tensor, margin: float = 0.2, scale: float = 1.0) -> paddle.Tensor:
    """Official retrieval loss: ap = relu(1 + m - sp), an = relu(sn + m) (both detached),
    loss = log(1 + sum_n exp(scale * an * (sn - m)) * exp(-scale * ap * (sp - (1 - m)))), averaged over the batch."""
    ap = F.relu(1.0 + margin - sp).detach()
    an = F.relu(sn + margin).detach()
    logit_p = -scale * ap * (sp - (1.0 - margin))
    logit_n = scale * an * (sn - margin)
    return F.softplus(paddle.logsumexp(logit_n, axis=1, keepdim=True) + logit_p).mean()


class UnimoForVQA(UnimoPretrainedModel):
    """VQA (not in the official release): full cross-modal attention over [image ; question];
    (pooled text + pooled image) -> fc 2H + GELU -> LayerNorm -> fc over the answer vocabulary; binary
    cross-entropy against the soft scores (the VQA-accuracy of each answer), scaled by the number of answers as
    UNITER/VILLA do so that the gradient does not vanish with 3,129 outputs."""

    def __init__(self, config: UnimoConfig, num_answers: int = 3129):
        super().__init__()
        self.config, self.num_answers = config, num_answers
        h, std = config.hidden_size, config.initializer_range
        self.unimo = UnimoModel(config)
        self.vqa_fc_0 = _linear(h, 2 * h, std)
        self.vqa_layer_norm = nn.LayerNorm(2 * h, epsilon=config.layer_norm_eps)
        self.vqa_fc_1 = _linear(2 * h, num_answers, std)

    def init_kwargs(self) -> dict[str, Any]:
        return {"num_answers": self.num_answers}

    def official_name_map(self) -> dict[str, str]:
        return {**backbone_name_map(self.config, "unimo."), **OFFICIAL_NAMES["vqa_head"]}

    def forward(self, input_ids: paddle.Tensor, image_features: paddle.Tensor, image_locations: paddle.Tensor,
                position_ids: Optional[paddle.Tensor] = None, attention_mask: Optional[paddle.Tensor] = None,
                text_embedding_delta: Optional[paddle.Tensor] = None,
                image_feature_delta: Optional[paddle.Tensor] = None,
                labels: Optional[paddle.Tensor] = None) -> UnimoVQAOutput:
        """Logits [B, num_answers]; with ``labels`` (soft scores [B, num_answers]), the scaled BCE."""
        seq = self.unimo(input_ids=input_ids, position_ids=position_ids, image_features=image_features,
                         image_locations=image_locations, attention_mask=attention_mask,
                         text_embedding_delta=text_embedding_delta, image_feature_delta=image_feature_delta)
        fused = self.unimo.pool_text(seq, image_features.shape[1]) + self.unimo.pool_image(seq)
        fused = F.dropout(fused, self.config.hidden_dropout_prob, training=self.training)
        logits = self.vqa_fc_1(self.vqa_layer_norm(F.gelu(self.vqa_fc_0(fused))))
        loss = None
        if labels is not None:
            loss = F.binary_cross_entropy_with_logits(logits, labels.astype(logits.dtype)) * self.num_answers
        return UnimoVQAOutput(loss=loss, logits=logits)
