"""UnimoConfig: reads the official ``unimo_*_en.json`` files unchanged.

Fields the official code never reads (pre-training leftovers such as ``fusion_method``) are kept in ``extra``
so a config written back with :meth:`save_pretrained` round-trips, but they do not change the model.
"""
from __future__ import annotations

import copy
import json
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

CONFIG_NAME = "model_config.json"


@dataclass
class UnimoConfig:
    vocab_size: int = 50265
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    initializer_range: float = 0.02
    max_position_embeddings: int = 514
    type_vocab_size: int = 0  # read by the official code, never used (no segment embedding)
    image_embedding_size: int = 2048
    image_class_size: int = 1601
    image_attr_size: int = 401
    max_img_len: int = 101
    max_obj_len: int = 100
    layer_norm_eps: float = 1e-5
    # CoQA ("dialog") adds role and turn embeddings; 0 = absent (the official runner injects 3 / 16).
    role_type_size: int = 0
    turn_type_size: int = 0
    # Pre-training fields from the official config (used by our pre-training; the official code ignored them).
    image_predict_feature: bool = True
    image_predict_class: bool = True
    image_use_soft_label: bool = True
    txt_mask_ratio: float = 0.15
    vl_mask_ratio: float = 0.15
    pad_token_id: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        problems = []
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "max_position_embeddings", "image_embedding_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if not problems and self.hidden_size % self.num_attention_heads:
            problems.append(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                            f"({self.num_attention_heads})")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                problems.append(f"{name} must be in [0, 1), got {value!r}")
        if self.hidden_act not in ("gelu", "relu", "gelu_new"):
            problems.append(f"hidden_act must be one of gelu, relu, gelu_new, got {self.hidden_act!r}")
        if problems:
            raise ValueError("invalid UNIMO config: " + "; ".join(problems))

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    # ------------------------------------------------------------------ io
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "UnimoConfig":
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = dict(data.get("extra", {}))
        extra.update({k: v for k, v in data.items() if k not in known and k != "extra"})
        return cls(**kwargs, extra=extra)

    @classmethod
    def from_json_file(cls, path: str) -> "UnimoConfig":
        if not os.path.isfile(path):
            raise FileNotFoundError(f"config file not found: {path}")
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object")
        try:
            return cls.from_dict(data)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e

    @classmethod
    def from_pretrained(cls, path: str) -> "UnimoConfig":
        """A directory with ``model_config.json`` or a JSON file."""
        return cls.from_json_file(os.path.join(path, CONFIG_NAME) if os.path.isdir(path) else path)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        data.update(extra)
        return data

    def save_pretrained(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, CONFIG_NAME), "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)

    def copy(self, **overrides: Any) -> "UnimoConfig":
        new = copy.deepcopy(self)
        for k, v in overrides.items():
            if not hasattr(new, k):
                raise AttributeError(f"UnimoConfig has no field {k!r}")
            setattr(new, k, v)
        new.validate()
        return new
