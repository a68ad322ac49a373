"""Initialise UNIMO from a HuggingFace RoBERTa checkpoint (the text path of UNIMO is RoBERTa's architecture).

HF names are first mapped to the official UNIMO variable names, then to our state-dict keys through the model's
own ``official_name_map()``, so the table in ``unimo.model.modeling`` stays the only place our keys are written.

Differences handled here:

* HF ``nn.Linear`` weights are [out, in]; fluid/Paddle fc weights are [in, out]: transposed.
* RoBERTa adds ``token_type_embeddings[0]`` to every token (token type ids are all 0); UNIMO has no segment
  embedding, so that row is added to every row of the position embedding: word + (pos + type) = word + type + pos.
* Positions: HF RoBERTa numbers real tokens from ``padding_idx + 1 = 2`` exactly as UNIMO does, so the position
  table is copied row for row (``pad_token_id`` must be 1).
* The HF pooler (dense + tanh) has no UNIMO counterpart (UNIMO's text pooler is fc + ReLU): ignored and listed.
* Image layers, the UNIMO poolers (and task heads) do not exist in RoBERTa: freshly initialised and listed.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any, Callable, Optional

import numpy as np

from .core import (ConversionError, ConversionReport, build_lazy_model, check_destination, expected_shapes,
                   load_config, official_to_local, write_converted)
from .names import model_class_and_kwargs
from ..model.configuration import UnimoConfig

_LAYER = re.compile(r"encoder\.layer\.(\d+)\.(.+)")
# per-layer HF suffix -> (official UNIMO name pattern, transpose)
_LAYER_MAP: dict[str, tuple[str, bool]] = {
    "attention.self.query.weight": ("encoder_layer_{i}_multi_head_att_query_fc.w_0", True),
    "attention.self.query.bias": ("encoder_layer_{i}_multi_head_att_query_fc.b_0", False),
    "attention.self.key.weight": ("encoder_layer_{i}_multi_head_att_key_fc.w_0", True),
    "attention.self.key.bias": ("encoder_layer_{i}_multi_head_att_key_fc.b_0", False),
    "attention.self.value.weight": ("encoder_layer_{i}_multi_head_att_value_fc.w_0", True),
    "attention.self.value.bias": ("encoder_layer_{i}_multi_head_att_value_fc.b_0", False),
    "attention.output.dense.weight": ("encoder_layer_{i}_multi_head_att_output_fc.w_0", True),
    "attention.output.dense.bias": ("encoder_layer_{i}_multi_head_att_output_fc.b_0", False),
    "attention.output.LayerNorm.weight": ("encoder_layer_{i}_post_att_layer_norm_scale", False),
    "attention.output.LayerNorm.bias": ("encoder_layer_{i}_post_att_layer_norm_bias", False),
    "intermediate.dense.weight": ("encoder_layer_{i}_ffn_fc_0.w_0", True),
    "intermediate.dense.bias": ("encoder_layer_{i}_ffn_fc_0.b_0", False),
    "output.dense.weight": ("encoder_layer_{i}_ffn_fc_1.w_0", True),
    "output.dense.bias": ("encoder_layer_{i}_ffn_fc_1.b_0", False),
    "output.LayerNorm.weight": ("encoder_layer_{i}_post_ffn_layer_norm_scale", False),
    "output.LayerNorm.bias": ("encoder_layer_{i}_post_ffn_layer_norm_bias", False),
}
_TOP_MAP: dict[str, tuple[str, bool]] = {
    "embeddings.word_embeddings.weight": ("word_embedding", False),
    "embeddings.LayerNorm.weight": ("pre_encoder_layer_norm_scale", False),
    "embeddings.LayerNorm.bias": ("pre_encoder_layer_norm_bias", False),
    "lm_head.dense.weight": ("mask_lm_trans_fc.w_0", True),
    "lm_head.dense.bias": ("mask_lm_trans_fc.b_0", False),
    "lm_head.layer_norm.weight": ("mask_lm_trans_layer_norm_scale", False),
    "lm_head.layer_norm.bias": ("mask_lm_trans_layer_norm_bias", False),
    "lm_head.bias": ("mask_lm_out_fc.b_0", False),
}
_POSITION = "embeddings.position_embeddings.weight"
_TOKEN_TYPE = "embeddings.token_type_embeddings.weight"
_IGNORED: tuple[tuple[str, str], ...] = (
    (r"pooler\.dense\.(weight|bias)", "RoBERTa pooler (dense + tanh) has no UNIMO counterpart (fc + ReLU)"),
    (r"embeddings\.(position_ids|token_type_ids)", "index buffer, not a weight"),
    (r"lm_head\.decoder\.weight", "tied to the word embedding (checked equal)"),
    (r"lm_head\.decoder\.bias", "tied to lm_head.bias (checked equal)"),
)


# ---------------------------------------------------------------------------------------------------- config
def config_from_hf(hf: dict[str, Any], path: str = "config.json", base: Optional[UnimoConfig] = None) -> tuple[
        UnimoConfig, list[str]]:
    """UNIMO config with RoBERTa's text dimensions; the image fields come from ``base`` (or the defaults)."""
    problems, notes = [], []

    def need(key: str) -> Any:
        if key not in hf:
            problems.append(f"{path}: missing field {key}")
        return hf.get(key)

    hidden, layers, heads = need("hidden_size"), need("num_hidden_layers"), need("num_attention_heads")
    vocab, positions = need("vocab_size"), need("max_position_embeddings")
    model_type = hf.get("model_type", "roberta")
    if model_type not in ("roberta", "xlm-roberta", "camembert"):
        problems.append(f"{path}: model_type {model_type!r} is not RoBERTa-like")
    act = hf.get("hidden_act", "gelu")
    if act not in ("gelu", "gelu_new", "relu"):
        problems.append(f"{path}: hidden_act {act!r} is not supported (gelu, gelu_new, relu)")
    if isinstance(hidden, int) and hf.get("intermediate_size", 4 * hidden) != 4 * hidden:
        problems.append(f"{path}: intermediate_size {hf.get('intermediate_size')} != 4 * hidden_size "
                        f"({4 * hidden}); UNIMO's FFN width is fixed at 4H")
    if hf.get("pad_token_id", 1) != 1:
        problems.append(f"{path}: pad_token_id {hf.get('pad_token_id')} != 1; UNIMO positions start at 2 = pad + 1")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        problems.append(f"{path}: position_embedding_type {hf['position_embedding_type']!r} (only absolute)")
    if hf.get("is_decoder") or hf.get("add_cross_attention"):
        problems.append(f"{path}: decoder / cross-attention RoBERTa is not an encoder checkpoint")
    if problems:
        raise ConversionError("cannot derive a UNIMO config:\n  " + "\n  ".join(problems))
    if vocab != 50265:
        notes.append(f"vocab_size {vocab} differs from the UNIMO tokenizer's 50265")
    fields = dict(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                  hidden_act=act, max_position_embeddings=positions, layer_norm_eps=float(hf.get("layer_norm_eps",
                                                                                               1e-5)),
                  hidden_dropout_prob=float(hf.get("hidden_dropout_prob", 0.1)),
                  attention_probs_dropout_prob=float(hf.get("attention_probs_dropout_prob", 0.1)),
                  initializer_range=float(hf.get("initializer_range", 0.02)), pad_token_id=1, type_vocab_size=0)
    try:
        config = (base or UnimoConfig()).copy(**fields)
    except (ValueError, TypeError) as e:
        raise ConversionError(f"{path}: {e}") from e
    return config, notes


# ---------------------------------------------------------------------------------------------------- weights
class _Weights:
    """Lazy access to HF tensors as float32 numpy arrays: safetensors (single or sharded), else
    ``pytorch_model.bin`` through torch when it is importable."""

    def __init__(self, directory: str):
        self.directory = directory
        self._files: dict[str, str] = {}
        self._torch_state: Optional[dict[str, Any]] = None
        single = os.path.join(directory, "model.safetensors")
        index = os.path.join(directory, "model.safetensors.index.json")
        binary = os.path.join(directory, "pytorch_model.bin")
        if os.path.isfile(single):
            self._index_safetensors([single])
        elif os.path.isfile(index):
            with open(index, encoding="utf-8") as f:
                weight_map = json.load(f).get("weight_map", {})
            self._index_safetensors(sorted({os.path.join(directory, v) for v in weight_map.values()}))
        elif os.path.isfile(binary):
            try:
                import torch
            except ImportError as e:
                raise ConversionError(f"{directory} holds only pytorch_model.bin, which needs torch to read (not "
                                      f"installed); save the model with safetensors (save_pretrained default) or "
                                      f"install torch") from e
            self._torch_state = torch.load(binary, map_location="cpu", weights_only=True)
        else:
            raise ConversionError(f"{directory}: no model.safetensors, model.safetensors.index.json or "
                                  f"pytorch_model.bin")

    def _index_safetensors(self, files: list[str]) -> None:
        from safetensors import safe_open

        for path in files:
            if not os.path.isfile(path):
                raise ConversionError(f"safetensors shard missing: {path}")
            try:
                with safe_open(path, framework="np") as f:
                    for key in f.keys():
                        self._files[key] = path
            except Exception as e:  # the library raises its own error types for corrupt headers
                raise ConversionError(f"{path}: not a readable safetensors file ({e})") from e

    def keys(self) -> list[str]:
        return sorted(self._torch_state if self._torch_state is not None else self._files)

    def shape(self, key: str) -> tuple[int, ...]:
        if self._torch_state is not None:
            return tuple(self._torch_state[key].shape)
        from safetensors import safe_open

        with safe_open(self._files[key], framework="np") as f:
            return tuple(f.get_slice(key).get_shape())

    def get(self, key: str) -> np.ndarray:
        if self._torch_state is not None:
            array = self._torch_state[key].float().numpy()
        else:
            from safetensors import safe_open

            try:
                with safe_open(self._files[key], framework="np") as f:
                    array = f.get_tensor(key)
            except Exception as e:  # e.g. bfloat16, which numpy cannot hold
                raise ConversionError(f"{self._files[key]}: cannot read {key} as numpy ({e})") from e
        if array.dtype in (np.float16, np.float64):
            array = array.astype(np.float32)  # exact for fp16; fp64 rounds like any fp32 model would
        if array.dtype != np.float32:
            raise ConversionError(f"{key}: dtype {array.dtype}, expected a float tensor")
        return array


def _official_name(hf_key: str) -> Optional[tuple[str, bool]]:
    if hf_key in _TOP_MAP:
        return _TOP_MAP[hf_key]
    m = _LAYER.fullmatch(hf_key)
    if m and m.group(2) in _LAYER_MAP:
        name, transpose = _LAYER_MAP[m.group(2)]
        return name.format(i=int(m.group(1))), transpose
    return None


def _normalise(key: str) -> str:
    """``roberta.`` prefix of *ForMaskedLM checkpoints and TF-era LayerNorm gamma/beta names."""
    if key.startswith("roberta."):
        key = key[len("roberta."):]
    return re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key))


def convert_roberta(src: str, dst: str, task: Optional[str] = None, num_labels: Optional[int] = None,
                    base_config: Optional[str] = None, seed: int = 0, overwrite: bool = False,
                    dry_run: bool = False, weights_format: str = "safetensors") -> ConversionReport:
    """Convert a HuggingFace RoBERTa directory into a UNIMO ``save_pretrained`` directory at ``dst``."""
    cfg_path = os.path.join(src, "config.json")
    if not os.path.isfile(cfg_path):
        raise ConversionError(f"--input {src}: no config.json (expected a HuggingFace model directory)")
    try:
        with open(cfg_path, encoding="utf-8") as f:
            hf = json.load(f)
    except json.JSONDecodeError as e:
        raise ConversionError(f"{cfg_path}: not valid JSON ({e})") from e
    config, notes = config_from_hf(hf, cfg_path, load_config(base_config) if base_config else None)
    if not dry_run:
        check_destination(dst, overwrite)
    weights = _Weights(src)
    raw_keys = weights.keys()
    by_name = {_normalise(k): k for k in raw_keys}
    has_lm = any(k.startswith("lm_head.") for k in by_name)
    report = ConversionReport(kind="roberta", src=src, dst=dst, seed=seed, dry_run=dry_run, notes=notes)
    if task is None:
        task = "generation" if has_lm else "backbone"
        report.notes.append(f"task detected: {task} ({'lm_head.* present' if has_lm else 'no lm_head'})")
    try:
        cls, kwargs = model_class_and_kwargs(task, num_labels, [], {})
    except ValueError as e:
        raise ConversionError(str(e)) from e
    model = build_lazy_model(cls, config, kwargs)
    report.task, report.model_class, report.init_kwargs = task, cls.__name__, model.init_kwargs()
    to_local = official_to_local(model)
    want = expected_shapes(model)

    problems: list[str] = []
    producers: dict[str, Callable[[], np.ndarray]] = {}

    def take(hf_name: str, official: str, transform: Callable[[np.ndarray], np.ndarray], label: str,
             hf_shape: tuple[int, ...]) -> None:
        key = to_local.get(official)
        if key is None:
            report.unused.append({"name": hf_name, "reason": f"maps to {official}, which {cls.__name__} lacks"})
            return
        if hf_shape != want[key]:
            problems.append(f"{hf_name}: shape {list(hf_shape)} ({label}) does not match {key} {list(want[key])} "
                            f"from {cfg_path}")
            return
        producers[key] = lambda: transform(weights.get(by_name[hf_name]))
        report.loaded.append({"name": hf_name, "key": key, "shape": list(want[key]), "transform": label})

    for name in sorted(by_name):
        raw_shape = weights.shape(by_name[name])
        if name == _POSITION:
            continue  # handled with the token-type row below
        if name == _TOKEN_TYPE:
            report.ignored.append({"name": name, "pattern": _TOKEN_TYPE,
                                   "reason": "row 0 folded into every row of pos_embedding"})
            if raw_shape[0] > 1:
                report.notes.append(f"{name} has {raw_shape[0]} rows; only row 0 (token_type_ids = 0, RoBERTa's "
                                    f"only use) is kept")
            continue
        hit = _official_name(name)
        if name == "lm_head.decoder.bias" and "lm_head.bias" not in by_name:
            hit = ("mask_lm_out_fc.b_0", False)  # some versions save only the decoder's copy of the tied bias
        if hit is not None:
            official, transpose = hit
            take(name, official, (lambda a: np.ascontiguousarray(a.T)) if transpose else (lambda a: a),
                 "transposed [out,in] -> [in,out]" if transpose else "copied",
                 tuple(reversed(raw_shape)) if transpose else raw_shape)
            continue
        pattern = next((p for p, _ in _IGNORED if re.fullmatch(p, name)), None)
        if pattern is not None:
            report.ignored.append({"name": name, "pattern": pattern,
                                   "reason": dict(_IGNORED)[pattern]})
        else:
            report.unknown.append(name)

    if _POSITION not in by_name:
        problems.append(f"{src}: no {_POSITION}")
    else:
        pos_shape = weights.shape(by_name[_POSITION])

        def folded() -> np.ndarray:
            pos = weights.get(by_name[_POSITION])
            if _TOKEN_TYPE in by_name:
                pos = pos + weights.get(by_name[_TOKEN_TYPE])[0]
            return pos

        take(_POSITION, "pos_embedding", lambda a: a, "+ token_type_embeddings[0]" if _TOKEN_TYPE in by_name
             else "copied", pos_shape)
        producers[to_local["pos_embedding"]] = folded
    _check_tied(weights, by_name, problems)
    if problems:
        raise ConversionError(f"cannot convert {src}; nothing written:\n  " + "\n  ".join(problems))

    return write_converted(model, producers, want, report, dst, overwrite, seed, dry_run, weights_format)


def _check_tied(weights: _Weights, by_name: dict[str, str], problems: list[str]) -> None:
    """UNIMO's output projection is the word embedding and its bias is ``lm_head.bias``: an untied HF decoder
    cannot be represented, so refuse it rather than silently change the model."""
    pairs = (("lm_head.decoder.weight", "embeddings.word_embeddings.weight"), ("lm_head.decoder.bias",
                                                                                "lm_head.bias"))
    if "lm_head.decoder.weight" in by_name and "embeddings.word_embeddings.weight" not in by_name:
        problems.append("lm_head.decoder.weight present without embeddings.word_embeddings.weight")
    for tied, owner in pairs:
        if tied in by_name and owner in by_name:
            if not np.array_equal(weights.get(by_name[tied]), weights.get(by_name[owner])):
                problems.append(f"{tied} differs from {owner}: an untied LM decoder is not supported by UNIMO")
