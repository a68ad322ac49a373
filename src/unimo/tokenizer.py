"""UNIMO tokenizer: GPT-2 byte-level BPE, then mapped to model ids through the fairseq/RoBERTa dictionary.

The official ``GptBpeTokenizer`` turns text into GPT-2 BPE ids, writes them as decimal strings, and looks those
strings up in ``unimo_en.vocab.txt`` (line number = model id). We do the same with a precomputed array, so a
GPT-2 id maps to a model id in O(1).

Pure Python is slow at BPE, so the merge loop runs once per distinct pre-token and its result is cached
(natural text repeats words heavily; ``bench/bench_tokenizer.py`` reports the throughput).

Lowercasing: the official tokenizer accepts ``do_lower_case`` but ignores it, and no official reader lowercases
raw text (the released models were fed data lowercased offline). We default to ``do_lower_case=False`` so that
ids match the official code on the same text, and *honour* the flag when a user sets it.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np
import regex

CLS_ID, PAD_ID, SEP_ID, UNK_ID, MASK_ID = 0, 1, 2, 3, 50264
SPECIAL_TOKENS = {"[CLS]": CLS_ID, "[PAD]": PAD_ID, "[SEP]": SEP_ID, "[UNK]": UNK_ID, "[MASK]": MASK_ID}

ENCODER_FILE = "unimo_en.encoder.json"
BPE_FILE = "unimo_en.vocab.bpe"
VOCAB_FILE = "unimo_en.vocab.txt"

# GPT-2's pre-tokenisation pattern (contractions, letters, numbers, other symbols, whitespace runs).
_GPT2_PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode character table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


class UnimoTokenizer:
    """Byte-level BPE tokenizer with the UNIMO (fairseq RoBERTa) id space.

    ``encode`` returns model ids without special tokens; the ``build_*`` helpers add ``[CLS]``/``[SEP]`` and
    position ids exactly as the official readers do (positions start at 2).
    """

    cls_id, pad_id, sep_id, unk_id, mask_id = CLS_ID, PAD_ID, SEP_ID, UNK_ID, MASK_ID

    def __init__(self, encoder_file: str, bpe_file: str, vocab_file: str, do_lower_case: bool = False,
                 cache_size: int = 1 << 18):
        for path in (encoder_file, bpe_file, vocab_file):
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"tokenizer file not found: {path} (run `bash model_files/download_dict.sh` to fetch the vocabulary)")
        with open(encoder_file, encoding="utf-8") as f:
            self.encoder: dict[str, int] = json.load(f)
        self.decoder = {v: k for k, v in self.encoder.items()}
        with open(bpe_file, encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = [tuple(line.split()) for line in lines[1:] if line.strip()]  # first line is "#version: 0.2"
        self.bpe_ranks = {pair: i for i, pair in enumerate(merges)}
        self.byte_encoder = _bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        self.do_lower_case = do_lower_case

        # vocab.txt: line index = model id; a line is a GPT-2 id as a decimal string or a special token.
        self.vocab_tokens: list[str] = []
        with open(vocab_file, encoding="utf-8") as f:
            for line in f:
                line = line.rstrip("\n")
                self.vocab_tokens.append(line.split("\t")[0] if line else line)
        self.vocab_size = len(self.vocab_tokens)
        self._gpt2_to_model = np.full(len(self.encoder), UNK_ID, dtype=np.int64)
        self._model_to_gpt2 = np.full(self.vocab_size, -1, dtype=np.int64)
        for model_id, tok in enumerate(self.vocab_tokens):
            if tok.isdigit() and int(tok) < len(self.encoder):
                self._gpt2_to_model[int(tok)] = model_id
                self._model_to_gpt2[model_id] = int(tok)
        self._word_ids = lru_cache(maxsize=cache_size)(self._word_ids_uncached)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, path: str, **kwargs) -> "UnimoTokenizer":
        """Load from a directory holding the three official dictionary files."""
        return cls(os.path.join(path, ENCODER_FILE), os.path.join(path, BPE_FILE), os.path.join(path, VOCAB_FILE),
                   **kwargs)

    def __len__(self) -> int:
        return self.vocab_size

    # ------------------------------------------------------------------ BPE core
    def _bpe(self, token: str) -> list[str]:
        word = list(token)
        if len(word) == 1:
            return word
        ranks = self.bpe_ranks
        while True:
            best, best_rank = None, None
            for pair in zip(word, word[1:]):
                r = ranks.get(pair)
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = pair, r
            if best is None:
                return word
            first, second = best
            merged: list[str] = []
            i, n = 0, len(word)
            while i < n:
                if i < n - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
            if len(word) == 1:
                return word

    def _word_ids_uncached(self, piece: str) -> tuple[int, ...]:
        unicode_piece = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
        enc, g2m = self.encoder, self._gpt2_to_model
        return tuple(int(g2m[enc[t]]) for t in self._bpe(unicode_piece))

    # ------------------------------------------------------------------ public API
    def encode(self, text: str) -> list[int]:
        """Text -> model ids, no special tokens."""
        if self.do_lower_case:
            text = text.lower()
        ids: list[int] = []
        word_ids = self._word_ids
        for piece in _GPT2_PATTERN.findall(text):
            ids.extend(word_ids(piece))
        return ids

    def tokenize(self, text: str) -> list[str]:
        """Text -> byte-level BPE token strings (GPT-2 spelling, e.g. 'Ġthe')."""
        return [self.decoder[int(self._model_to_gpt2[i])] for i in self.encode(text)]

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        out = []
        for t in tokens:
            if t in SPECIAL_TOKENS:
                out.append(SPECIAL_TOKENS[t])
            elif t in self.encoder:
                out.append(int(self._gpt2_to_model[self.encoder[t]]))
            else:
                out.append(UNK_ID)
        return out

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        out = []
        for i in ids:
            g = int(self._model_to_gpt2[i]) if 0 <= i < self.vocab_size else -1
            out.append(self.decoder[g] if g >= 0 else self.vocab_tokens[i] if 0 <= i < self.vocab_size else "[UNK]")
        return out

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Model ids -> text. Special tokens are dropped (default) or written as their names."""
        out: list[str] = []
        buf = bytearray()
        for i in ids:
            i = int(i)
            g = int(self._model_to_gpt2[i]) if 0 <= i < self.vocab_size else -1
            if g >= 0:
                buf.extend(self.byte_decoder[c] for c in self.decoder[g])
            elif not skip_special_tokens:
                out.append(buf.decode("utf-8", errors="replace"))
                buf = bytearray()
                out.append(self.vocab_tokens[i] if 0 <= i < self.vocab_size else "[UNK]")
        out.append(buf.decode("utf-8", errors="replace"))
        return "".join(out)

    def is_word_start(self, token_id: int) -> bool:
        """True when the token begins a new word (its text starts with a space), as the official trigram
        blocking and whole-word masking decide. Special tokens count as word starts."""
        g = int(self._model_to_gpt2[token_id]) if 0 <= token_id < self.vocab_size else -1
        return g < 0 or self.decoder[g].startswith("\u0120")

    def word_start_table(self) -> np.ndarray:
        """Boolean array over the vocabulary: ``is_word_start`` for every id (used by vectorised callers)."""
        table = np.ones(self.vocab_size, dtype=bool)
        for model_id in range(self.vocab_size):
            g = int(self._model_to_gpt2[model_id])
            if g >= 0:
                table[model_id] = self.decoder[g].startswith("\u0120")
        return table

    # ------------------------------------------------------------------ model-input helpers
    @staticmethod
    def truncate_pair(a: list[int], b: list[int] | None, max_tokens: int) -> tuple[list[int], list[int] | None]:
        """Pop from the longer side until the pair fits (official classification reader)."""
        a = list(a)
        if b is None:
            return a[:max_tokens], None
        b = list(b)
        while len(a) + len(b) > max_tokens:
            (a if len(a) > len(b) else b).pop()
        return a, b

    def build_inputs(self, text_a: str | Sequence[int], text_b: str | Sequence[int] | None = None,
                     max_seq_len: int = 512) -> dict[str, list[int]]:
        """``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]`` with positions 2.. (official single-separator layout)."""
        a = self.encode(text_a) if isinstance(text_a, str) else list(text_a)
        b = None if text_b is None else (self.encode(text_b) if isinstance(text_b, str) else list(text_b))
        a, b = self.truncate_pair(a, b, max_seq_len - (3 if b is not None else 2))
        ids = [CLS_ID] + a + [SEP_ID] + ((b + [SEP_ID]) if b is not None else [])
        return {"input_ids": ids, "position_ids": list(range(2, 2 + len(ids)))}

    def batch_encode(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None,
                     max_seq_len: int = 512) -> dict[str, np.ndarray]:
        """Encode and pad a batch: ``input_ids``/``position_ids`` padded with [PAD]=1, ``lengths``."""
        records = [self.build_inputs(t, None if text_pairs is None else text_pairs[i], max_seq_len)
                   for i, t in enumerate(texts)]
        width = max(len(r["input_ids"]) for r in records)
        ids = np.full((len(records), width), PAD_ID, dtype=np.int64)
        pos = np.full((len(records), width), PAD_ID, dtype=np.int64)
        for i, r in enumerate(records):
            ids[i, :len(r["input_ids"])] = r["input_ids"]
            pos[i, :len(r["position_ids"])] = r["position_ids"]
        return {"input_ids": ids, "position_ids": pos,
                "lengths": np.array([len(r["input_ids"]) for r in records], dtype=np.int64)}

    def build_seq2seq_inputs(self, sources: str | Sequence[str | Sequence[int]], target: str | Sequence[int] | None,
                             max_src_len: int = 512, max_tgt_len: int = 128) -> dict[str, list[int]]:
        """Source and target records as the official seq2seq reader builds them.

        Source: ``[CLS]`` (position 2) then each segment as ``ids + [SEP]`` truncated to ``max_src_len - 1``
        keeping the final ``[SEP]``, positions restarting at 3 per segment (``continuous_position=False``).
        Target: ``[CLS]`` (position 2) + ids + the generation EOS ``[MASK]``, truncated to ``max_tgt_len``.
        """
        if isinstance(sources, str) or (sources and isinstance(sources[0], int)):
            sources = [sources]  # type: ignore[list-item]
        src_ids, src_pos = [CLS_ID], [2]
        for seg in sources:
            seg_ids = self.encode(seg) if isinstance(seg, str) else list(seg)
            seg_ids = seg_ids[:max_src_len - 2] + [SEP_ID]
            src_ids += seg_ids
            src_pos += list(range(3, 3 + len(seg_ids)))
        out = {"src_ids": src_ids, "src_pos": src_pos}
        if target is not None:
            tgt = self.encode(target) if isinstance(target, str) else list(target)
            if not tgt or tgt[-1] != SEP_ID:
                tgt = tgt + [SEP_ID]
            # Official: truncate to max_tgt_len - 1 without forcing an end; a surviving final [SEP] becomes the
            # generation EOS [MASK]. A truncated target therefore has no EOS, as in the official reader.
            tgt = tgt[:max_tgt_len - 1]
            if tgt[-1] == SEP_ID:
                tgt[-1] = MASK_ID
            tgt = [CLS_ID] + tgt
            out["tgt_ids"] = tgt
            out["tgt_pos"] = list(range(2, 2 + len(tgt)))
        return out
