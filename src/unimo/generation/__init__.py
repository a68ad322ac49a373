"""Decoding for UNIMO generation models: beam search with the official ``fast_decode`` semantics (GNMT length
penalty bookkeeping, min length, word-level trigram blocking), greedy search and sampling, all on the KV cache.

Typical use::

    from unimo.generation import BeamSearchConfig, beam_search, ids_to_text
    cfg = BeamSearchConfig.official("gigaword")
    for ids, score in beam_search(model, source, source_valid, cfg):
        print(ids_to_text(ids, tokenizer, strip=True), score)
"""
from .config import OFFICIAL_PRESETS, BeamSearchConfig, DecodeConfig, SamplingConfig
from .decoder import CachedDecoder, RecomputeDecoder, make_decoder, prepare_source
from .search import beam_search, greedy_search, length_penalty, sample, strip_hypothesis
from .text import ids_to_text
from .trigram import BLOCK_DELTA, block_deltas, group_words, has_repeated_trigram

__all__ = ["BLOCK_DELTA", "BeamSearchConfig", "CachedDecoder", "DecodeConfig", "OFFICIAL_PRESETS",
           "RecomputeDecoder", "SamplingConfig", "beam_search", "block_deltas", "greedy_search", "group_words",
           "has_repeated_trigram", "ids_to_text", "length_penalty", "make_decoder", "prepare_source", "sample",
           "strip_hypothesis"]
