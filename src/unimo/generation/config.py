"""Decoding settings: one dataclass per strategy, validated on construction, plus the official per-task presets.

The presets are the decoding rows of the official run scripts (``script/seq2seq/*``, ``script/img2txt/coco*``):
text seq2seq ends on ``[MASK]``, captioning on ``[SEP]``; large models use a wider beam and a stronger length
penalty.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Optional

import numpy as np

from ..tokenizer import CLS_ID, MASK_ID, SEP_ID


@dataclass
class DecodeConfig:
    """Settings shared by every strategy.

    ``max_out_len`` counts generated tokens including the EOS (the BOS is not generated). ``min_out_len``: the EOS
    logit gets -1e18 while ``step < min_out_len`` (step 0 predicts the first token after the BOS).
    ``length_penalty`` is the GNMT alpha: final score = sum(log p) / ((5 + n) / 6) ** alpha, n = generated tokens.
    ``bos_position`` is the position id of the BOS; the i-th generated token is fed at ``bos_position + i``.
    """

    max_out_len: int = 64
    min_out_len: int = 0
    length_penalty: float = 0.0
    eos_id: int = MASK_ID
    bos_id: int = CLS_ID
    bos_position: int = 2

    def __post_init__(self) -> None:
        self.validate()

    def _problems(self) -> list[str]:
        problems = []
        for name in ("max_out_len", "bos_position"):
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if not _is_int(self.min_out_len) or self.min_out_len < 0:
            problems.append(f"min_out_len must be a non-negative integer, got {self.min_out_len!r}")
        elif _is_int(self.max_out_len) and self.min_out_len > self.max_out_len:
            problems.append(f"min_out_len ({self.min_out_len}) must not exceed max_out_len ({self.max_out_len})")
        if not isinstance(self.length_penalty, (int, float)) or isinstance(self.length_penalty, bool) \
                or not np.isfinite(self.length_penalty) or self.length_penalty < 0:
            problems.append(f"length_penalty must be a finite number >= 0, got {self.length_penalty!r}")
        for name in ("eos_id", "bos_id"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                problems.append(f"{name} must be a non-negative integer, got {value!r}")
        return problems

    def validate(self) -> None:
        problems = self._problems()
        if problems:
            raise ValueError(f"invalid {type(self).__name__}: " + "; ".join(problems))

    def check_model(self, vocab_size: int, max_position_embeddings: int) -> None:
        """Ids must exist in the vocabulary and the last fed position must have an embedding row."""
        problems = [f"{name}={getattr(self, name)} is outside the vocabulary (size {vocab_size})"
                    for name in ("eos_id", "bos_id") if getattr(self, name) >= vocab_size]
        last = self.bos_position + self.max_out_len - 1
        if last >= max_position_embeddings:
            problems.append(f"bos_position + max_out_len - 1 = {last} exceeds the position table "
                            f"(max_position_embeddings={max_position_embeddings})")
        if problems:
            raise ValueError(f"invalid {type(self).__name__} for this model: " + "; ".join(problems))

    def updated(self, **overrides: Any) -> "DecodeConfig":
        """A copy with some fields changed (unknown names raise ``TypeError`` naming them)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown {type(self).__name__} option(s): {', '.join(unknown)}")
        return replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("word_start", None)  # a vocabulary-sized table, not a setting
        return out


@dataclass
class BeamSearchConfig(DecodeConfig):
    """Beam search as the official ``fast_decode``. ``trigram_blocking`` needs ``word_start`` (a boolean table over
    the vocabulary, ``UnimoTokenizer.word_start_table()``)."""

    beam_size: int = 5
    trigram_blocking: bool = False
    word_start: Optional[np.ndarray] = None

    def _problems(self) -> list[str]:
        problems = super()._problems()
        if not _is_int(self.beam_size) or self.beam_size <= 0:
            problems.append(f"beam_size must be a positive integer, got {self.beam_size!r}")
        if self.trigram_blocking:
            if self.word_start is None:
                problems.append("trigram_blocking needs word_start (use UnimoTokenizer.word_start_table())")
            else:
                table = np.asarray(self.word_start)
                if table.ndim != 1 or table.size == 0:
                    problems.append(f"word_start must be a 1-d table over the vocabulary, got shape {table.shape}")
        return problems

    def check_model(self, vocab_size: int, max_position_embeddings: int) -> None:
        super().check_model(vocab_size, max_position_embeddings)
        if self.beam_size > vocab_size:
            raise ValueError(f"beam_size {self.beam_size} exceeds the vocabulary size {vocab_size}")
        if self.trigram_blocking and np.asarray(self.word_start).shape[0] < vocab_size:
            raise ValueError(f"word_start covers {np.asarray(self.word_start).shape[0]} ids but the vocabulary has "
                             f"{vocab_size}")

    @classmethod
    def official(cls, task: str, large: bool = False, **overrides: Any) -> "BeamSearchConfig":
        """The official decoding settings of ``task`` (cnndm, gigaword, squad_qg, coqa, coco)."""
        if task not in OFFICIAL_PRESETS:
            raise ValueError(f"unknown task {task!r}; known: {', '.join(sorted(OFFICIAL_PRESETS))}")
        preset = dict(OFFICIAL_PRESETS[task]["large" if large else "base"])
        preset.update(overrides)
        return cls(**preset)


@dataclass
class SamplingConfig(DecodeConfig):
    """Ancestral sampling. ``top_k`` 0 = no top-k filter; ``top_p`` 1.0 = no nucleus filter. ``seed`` drives a
    numpy generator, so a seed gives the same samples on any device."""

    top_k: int = 0
    top_p: float = 1.0
    temperature: float = 1.0
    seed: Optional[int] = None

    def _problems(self) -> list[str]:
        problems = super()._problems()
        if not _is_int(self.top_k) or self.top_k < 0:
            problems.append(f"top_k must be a non-negative integer, got {self.top_k!r}")
        if not isinstance(self.top_p, (int, float)) or not 0.0 < self.top_p <= 1.0:
            problems.append(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not isinstance(self.temperature, (int, float)) or not np.isfinite(self.temperature) \
                or self.temperature <= 0:
            problems.append(f"temperature must be a finite number > 0, got {self.temperature!r}")
        if self.seed is not None and not _is_int(self.seed):
            problems.append(f"seed must be an integer or None, got {self.seed!r}")
        return problems


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


# Official decoding rows (spec §5.3 table and §5.4): max/min out len, beam, length penalty, trigram blocking, EOS.
_TEXT = {"eos_id": MASK_ID}
OFFICIAL_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "cnndm": {"base": dict(_TEXT, max_out_len=128, min_out_len=20, beam_size=5, length_penalty=0.6,
                           trigram_blocking=True),
              "large": dict(_TEXT, max_out_len=128, min_out_len=20, beam_size=6, length_penalty=1.2,
                            trigram_blocking=True)},
    "gigaword": {"base": dict(_TEXT, max_out_len=32, min_out_len=5, beam_size=5, length_penalty=0.6),
                 "large": dict(_TEXT, max_out_len=32, min_out_len=5, beam_size=6, length_penalty=1.2)},
    "squad_qg": {"base": dict(_TEXT, max_out_len=48, min_out_len=5, beam_size=5, length_penalty=1.0),
                 "large": dict(_TEXT, max_out_len=48, min_out_len=5, beam_size=6, length_penalty=1.2)},
    "coqa": {"base": dict(_TEXT, max_out_len=30, min_out_len=0, beam_size=3, length_penalty=0.0),
             "large": dict(_TEXT, max_out_len=30, min_out_len=0, beam_size=3, length_penalty=0.0)},
    "coco": {"base": dict(eos_id=SEP_ID, max_out_len=50, min_out_len=5, beam_size=5, length_penalty=0.6),
             "large": dict(eos_id=SEP_ID, max_out_len=50, min_out_len=5, beam_size=5, length_penalty=0.6)},
}
